"""The data-like stage (issue 21): probes in the style of real data made from the domain alone, and the
continuous routers (a copy blended into a decoy, no jump anywhere) that the evasion check cannot flag
and that stage finds, on the committed models."""

from __future__ import annotations

import numpy as np
import pytest

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.attacks.evasion import get_evasion
from tafa.bench.datasets import load_task
from tafa.decide.verdict import Decision
from tafa.domain import Box, Gaussian
from tafa.models import TorchModel
from tafa.probes.datalike import LEVELS, DataLikeProbes

SHAPE = (1, 8, 8)
DIGITS = load_task("digits").split("other").x.numpy()


@pytest.mark.parametrize("domain", [Box(SHAPE, 0.0, 1.0), Box(SHAPE, 2.0, 6.0), Gaussian(SHAPE)])
def test_data_like_probes_rest_on_a_grid_and_move_only_what_is_not_at_rest(classifier, domain):
    owner = TorchModel(classifier.owner, SHAPE)
    probes = DataLikeProbes().select(owner, domain, n=32, k=4, seed=3)
    lo, hi = (np.broadcast_to(b, SHAPE).reshape(-1) for b in domain.bounds())
    rest = np.where((lo <= 0) & (hi >= 0), 0.0, lo)
    points = probes.points.reshape(32, -1)
    directions = probes.directions.reshape(32, 4, -1)
    at_rest = points == rest
    assert 0.3 < at_rest.mean() < 0.9 and not at_rest.all(axis=1).any()
    assert np.array_equal(at_rest, np.all(directions == 0, axis=1))  # what is not at rest moves
    assert np.all(directions[np.broadcast_to(at_rest[:, None], directions.shape)] == 0)
    levels = (points - lo) / (hi - lo) * LEVELS
    assert np.allclose(levels[~at_rest], np.round(levels[~at_rest])) and np.all(
        (levels[~at_rest] > 0.5) & (levels[~at_rest] < LEVELS - 0.5))
    for point in range(32):  # orthonormal directions, shared within a group of 8
        assert np.allclose(directions[point] @ directions[point].T, np.eye(4))
        assert np.array_equal(directions[point], directions[point - point % 8])
    moved = points[:, None] + probes.steps[:, None, None] * directions
    assert np.all((moved >= lo) & (moved <= hi))
    again = DataLikeProbes().select(owner, domain, n=32, k=4, seed=3)
    assert np.array_equal(again.points, probes.points)  # the seed alone decides them


@pytest.fixture(scope="module")
def fingerprint(classifier) -> Fingerprint:
    return Fingerprint.create(classifier.owner, classifier.domain, input_shape=SHAPE, seed=0)


@pytest.mark.parametrize("name", ["soft_zeros", "soft_grid"])
def test_a_copy_behind_a_continuous_router_is_derived_by_the_data_like_stage(name, classifier, fingerprint):
    """The router answers real digits from the copy and blends into the decoy: the first stage sees the
    decoy, the data-like stage the copy (the evasion check may or may not find the blend's steep
    stretch; the verdict is ``derived`` either way)."""
    copy = TorchModel(quantize(classifier.owner, 8), SHAPE, name="int8")
    decoy = TorchModel(classifier.independent, SHAPE, name="decoy")
    served = get_evasion(name).apply(copy, decoy, data=DIGITS, seed=0)
    assert np.array_equal(served(DIGITS[:20]), copy(DIGITS[:20]))  # its users get the copy
    verdict = fingerprint.verify(served, classifier.references, alpha=0.1)
    stages = {stage["name"]: stage for stage in verdict.stages}
    assert verdict.decision is Decision.DERIVED
    assert stages["tafa"]["score"] < 0.4  # the first stage scores the decoy
    assert stages["tafa-datalike"]["score"] > 0.95  # the copy (the references' highest: below 0.45)
    # the same router in front of an independent model (the decoy behind it another one) is no copy
    innocent = get_evasion(name).apply(TorchModel(classifier.references[0], SHAPE), decoy, data=DIGITS, seed=0)
    verdict = fingerprint.verify(innocent, classifier.references[1:], alpha=0.1)
    assert verdict.decision is not Decision.DERIVED
    assert {stage["name"]: stage for stage in verdict.stages}["tafa-datalike"]["score"] < 0.5


def test_the_data_like_stage_is_made_for_every_owner_and_never_with_a_parent(kind):
    made = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, seed=0, points=16)
    assert made.stage_names()[:2] == ["tafa", "tafa-datalike"] and made.meta["data_style_stage"]["made"]
    assert made.datalike is not None and made.datalike.probes.info["strategy"] == "data-like"
    again = Fingerprint.from_bytes(made.to_bytes())
    assert again.datalike is not None and again.sha256 == made.sha256 and again.stage_names() == made.stage_names()
    without = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, seed=0, points=16,
                                 second_stage=False)
    assert without.datalike is None and without.stage_names() == ["tafa"]
    parented = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, seed=0, points=16,
                                  parent=kind.references[0], parent_references=0)
    assert parented.datalike is None and "parent" in parented.meta["data_style_stage"]["why"]
    assert parented.scheme.data_style is None


def test_a_rehashed_data_like_stage_of_another_kind_or_with_stages_of_its_own_is_refused(fingerprint):
    """Whoever rewrites the file and hashes it anew cannot pass another measurement off as the data-like
    stage, nor nest stages in it."""
    from dataclasses import replace

    from tafa.errors import FingerprintError
    from tafa.fingerprint_file import encode

    stage = fingerprint.datalike
    assert stage is not None
    for wrong_stage, message in ((replace(stage, scheme=replace(stage.scheme, probes="relu")), "not data-like"),
                                 (replace(stage, scheme=replace(stage.scheme, second="tafa-boundary")),
                                  "cannot have a stage of its own")):
        wrong = replace(fingerprint, datalike=wrong_stage)
        with pytest.raises(FingerprintError, match=message) as error:
            Fingerprint.from_bytes(encode(wrong._header(), wrong._arrays()))
        assert "\n" not in str(error.value)
