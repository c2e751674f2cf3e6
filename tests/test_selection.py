"""Probes chosen by reference disagreement, and the extraction detector. Real small models:
the references that choose the probes are never the models scored."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tafa import Fingerprint, TorchModel
from tafa.attacks import add_weight_noise, magnitude_prune
from tafa.attacks.extraction import distill, mlp_student, reinitialised
from tafa.references import References
from tafa.bench.datasets import load_task
from tafa.domain import parse_domain
from tafa.errors import InvalidParameter
from tafa.probes.base import CandidateCache
from tafa.probes.relu import ReluProbes
from tafa.scheme import get_scheme


@pytest.fixture(scope="module")
def references(classifier) -> References:
    """Owner-made references: noisy and pruned copies; the owner's own retrainings."""
    owner = classifier.owner
    return References(positives=[add_weight_noise(owner, s, seed=i) for i, s in enumerate((0.05, 0.1, 0.2))]
                      + [magnitude_prune(owner, 0.5)],
                      negatives=classifier.references[:6])


def test_selected_probes_are_whole_direction_groups(classifier, references):
    domain = parse_domain(classifier.domain, classifier.input_shape)
    owner = TorchModel(classifier.owner, classifier.input_shape)
    plain = ReluProbes().select(owner, domain, n=32, k=4, seed=3)
    chosen = ReluProbes(select_from=4).select(owner, domain, n=32, k=4, seed=3, references=references)
    assert chosen.points.shape == plain.points.shape and chosen.directions.shape == plain.directions.shape
    groups = chosen.extra["group"].astype(int)
    assert sorted(np.unique(groups)) == [0, 1, 2, 3] and np.all(np.bincount(groups) == 8)
    for label in range(4):  # a group's probes share one set of directions
        members = chosen.directions[groups == label]
        assert np.allclose(members, members[0])
    assert chosen.info["selected"].startswith("4 of 16")
    assert chosen.info["selection_fisher_kept"] > chosen.info["selection_fisher_all"]
    # without references (or with select_from=1) nothing is selected
    again = ReluProbes(select_from=4).select(owner, domain, n=32, k=4, seed=3)
    assert "selected" not in again.info and again.points.shape == plain.points.shape


def test_selection_refuses_a_size_that_is_not_whole_groups(classifier, references):
    domain = parse_domain(classifier.domain, classifier.input_shape)
    with pytest.raises(InvalidParameter, match="multiple of the group size"):
        ReluProbes(select_from=2).select(TorchModel(classifier.owner, classifier.input_shape), domain, n=12, k=4,
                                         seed=0, references=references)
    with pytest.raises(InvalidParameter, match="select_from"):
        ReluProbes(select_from=0)


def test_a_candidate_cache_reuses_the_candidates_when_selecting_with_other_references(classifier, references):
    domain = parse_domain(classifier.domain, classifier.input_shape)
    owner = TorchModel(classifier.owner, classifier.input_shape)
    fewer = References(positives=references.positives[:2], negatives=references.negatives[:3])
    cache = CandidateCache()
    strategy = ReluProbes(select_from=2)
    strategy.candidate_cache = cache
    strategy.select(owner, domain, n=16, k=4, seed=1, references=references)
    cached = strategy.select(owner, domain, n=16, k=4, seed=1, references=fewer)
    assert cache.computed == 1  # the second selection reused the candidates (and their LPs)
    fresh = ReluProbes(select_from=2).select(owner, domain, n=16, k=4, seed=1, references=fewer)
    for name, array in fresh.arrays().items():  # the same probes as a selection with no cache
        assert np.array_equal(cached.arrays()[name], array), name
    strategy.select(owner, domain, n=16, k=4, seed=2, references=fewer)  # another seed: other candidates
    assert cache.computed == 2
    # handed over by the caller through the scheme, never saved with the fingerprint
    scheme = replace(get_scheme("tafa-select"), probe_params={"select_from": 2}, candidate_cache=CandidateCache())
    kwargs = dict(input_shape=classifier.input_shape, scheme=scheme, points=16, seed=0)
    Fingerprint.create(classifier.owner, classifier.domain, references=references, **kwargs)
    again = Fingerprint.create(classifier.owner, classifier.domain, references=fewer, **kwargs)
    assert scheme.candidate_cache is not None and scheme.candidate_cache.computed == 1
    uncached = Fingerprint.create(classifier.owner, classifier.domain, references=fewer,
                                  **{**kwargs, "scheme": replace(scheme, candidate_cache=None)})
    assert again.probe_sha256 == uncached.probe_sha256 and "candidate_cache" not in again.scheme.to_dict()


def test_selected_fingerprint_keeps_copies_above_independent_models(classifier, references):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     scheme="tafa-select", seed=0, references=references)
    scored_copy = magnitude_prune(add_weight_noise(classifier.owner, 0.05, seed=77), 0.3)
    copy_score = fingerprint.compare(fingerprint.measure(TorchModel(scored_copy, classifier.input_shape))).value
    independent = [fingerprint.compare(fingerprint.measure(TorchModel(m, classifier.input_shape))).value
                   for m in [classifier.independent, *classifier.references[6:]]]
    # with the coarse scale, and its 4 jittered steps and the data-free label stage (100 points, 8
    # directions each way) for a suspect it decides (tafa.signature.scales, tafa.label_stage)
    assert fingerprint.stage_queries() == [2 * 64 * 9]
    assert fingerprint.queries() == 2 * 64 * 9 + 64 + 4 * 2 * 64 * 4 + 2 * 100 * 8  # the jittered steps: centres once
    summary = fingerprint.describe()  # what `tafa info` shows
    assert summary["probes_selected"].startswith("8 of 32 direction groups")
    assert (summary["reference_positives"], summary["reference_negatives"]) == (4, 6)
    assert copy_score > max(independent) + 0.1


def test_the_extraction_detector_tells_a_distilled_student_from_an_independent_model(classifier):
    task = load_task("digits")
    inputs = task.split("other").x  # the attacker's data, labelled by querying the owner
    students = [distill(classifier.owner, reinitialised(classifier.owner, seed=5), inputs, epochs=30, lr=1e-3),
                distill(classifier.owner, mlp_student(classifier.input_shape, (10,), seed=6), inputs, epochs=30,
                        lr=1e-3)]
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     scheme="tafa-extract", seed=0)

    def score(model: torch.nn.Module) -> float:
        return fingerprint.compare(fingerprint.measure(TorchModel(model, classifier.input_shape))).value

    assert score(classifier.owner) == pytest.approx(1.0)
    independents = [score(m) for m in [classifier.independent, *classifier.references]]
    assert min(score(s) for s in students) > max(independents)
    assert fingerprint.queries() == 64
