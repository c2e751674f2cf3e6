"""MetaV: inputs learned jointly with a meta-verifier, then the verifier refitted on the
references' black-box signatures. Real small models throughout; every verifier is trained
on one set of models and scores another, disjoint one."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tafa.attacks import SMALL_LR, add_weight_noise, finetune, magnitude_prune, quantize
from tafa.references import References
from tafa.bench.architectures import build
from tafa.bench.datasets import load_task
from tafa.decide.metav import MetaVerifier
from tafa.domain import Box, parse_domain
from tafa.errors import InvalidParameter, ShapeMismatch
from tafa.fingerprint import Fingerprint
from tafa.models import TorchModel
from tafa.probes.learned import MetaVProbes
from tafa.scheme import get_scheme
from tafa.signature.outputs import Outputs


def _learn(kind_owner, shape, domain, train: References, *, steps: int, n: int = 64, seed: int = 0, data=None):
    """Probes learned on ``train``, a measuring function, and the verifier fitted on ``train``."""
    probes = MetaVProbes(steps=steps).select(TorchModel(kind_owner, shape), domain, n=n, k=0, seed=seed,
                                             data=data, references=train)

    def measure(module):
        return Outputs().measure(TorchModel(module, shape), probes)

    verifier = MetaVerifier()
    verifier.fit(measure(kind_owner), [measure(m) for m in train.positives], [measure(m) for m in train.negatives],
                 seed=seed)
    return probes, measure, verifier


def _disjoint(train: References, *tests: list) -> None:
    seen = {id(m) for m in [*train.positives, *train.negatives]}
    assert not seen & {id(m) for group in tests for m in group}


def test_learns_a_separable_toy_case():
    owner = build("mlp", input_shape=(4,), output_dim=3, seed=0)
    copies = [add_weight_noise(owner, 0.02, seed=i) for i in range(1, 9)]
    others = [build("mlp", input_shape=(4,), output_dim=3, seed=100 + i) for i in range(8)]
    train = References(copies[:5], others[:5])
    _disjoint(train, copies[5:], others[5:])
    probes, measure, verifier = _learn(owner, (4,), Box((4,), 0, 1), train, steps=150, n=8)
    assert probes.info["train_accuracy"] == 1.0 and probes.info["final_loss"] < 0.05
    start = np.random.default_rng(0).uniform(0, 1, size=(8, 4))
    assert not np.allclose(probes.points, start)  # the inputs were learned, not kept
    assert np.all((probes.points >= 0) & (probes.points <= 1))
    own = measure(owner)
    assert verifier.compare(own, own).value > 0.99
    assert min(verifier.compare(own, measure(m)).value for m in copies[5:]) > 0.5
    assert max(verifier.compare(own, measure(m)).value for m in others[5:]) < 0.5


@pytest.fixture(scope="module")
def digits(classifier):
    """Positives made by eight recipes, four to train and four held out; the independent
    references split half and half (each half mixes architectures and data halves)."""
    owner, other = classifier.owner, load_task("digits").split("other")
    train_positives = [quantize(owner, 8), magnitude_prune(owner, 0.5), add_weight_noise(owner, 0.05, seed=1),
                       finetune(owner, other, lr=SMALL_LR, epochs=1, seed=1)]
    test_positives = [quantize(owner, 4), magnitude_prune(owner, 0.7), add_weight_noise(owner, 0.1, seed=2),
                      finetune(owner, other, lr=SMALL_LR, layers="last", epochs=2, seed=2)]
    train = References(train_positives, classifier.references[:9])
    test_negatives = [*classifier.references[9:], classifier.independent]
    _disjoint(train, test_positives, test_negatives)
    return train, test_positives, test_negatives


def test_held_out_copies_outscore_held_out_independents_on_digits(classifier, digits):
    train, test_positives, test_negatives = digits
    data = np.asarray(load_task("digits").split("owner").x)
    probes, measure, verifier = _learn(classifier.owner, classifier.input_shape,
                                       parse_domain(classifier.domain, classifier.input_shape), train, steps=300,
                                       data=data)
    assert probes.info["source"] == "data" and probes.info["positives"] == 5 and probes.info["negatives"] == 9
    own = measure(classifier.owner)
    copies = [verifier.compare(own, measure(m)).value for m in test_positives]
    independent = [verifier.compare(own, measure(m)).value for m in test_negatives]
    assert min(copies) > max(independent), (copies, independent)
    assert min(copies) > 0.5 > np.median(independent)  # a probability, not only a ranking


@pytest.mark.parametrize("name", ["regressor", "generator"])
def test_other_task_kinds(name, request, held_out):
    kind = request.getfixturevalue(name)
    owner = kind.owner
    train, test_positives, test_negatives = held_out(kind, 6)
    domain = parse_domain(kind.domain, kind.input_shape)
    probes, measure, verifier = _learn(owner, kind.input_shape, domain, train, steps=40, n=32)
    lo, hi = domain.bounds()
    assert np.all((probes.points >= lo) & (probes.points <= hi))
    own = measure(owner)
    copies = [verifier.compare(own, measure(m)).value for m in test_positives]
    independent = [verifier.compare(own, measure(m)).value for m in test_negatives]
    assert min(copies) > max(independent), (copies, independent)


def test_same_seed_same_probes_and_scores_and_the_state_round_trips(classifier, digits):
    train, test_positives, test_negatives = digits
    shape, domain = classifier.input_shape, parse_domain(classifier.domain, classifier.input_shape)
    first = _learn(classifier.owner, shape, domain, train, steps=30, n=16, seed=3)
    second = _learn(classifier.owner, shape, domain, train, steps=30, n=16, seed=3)
    other = _learn(classifier.owner, shape, domain, train, steps=30, n=16, seed=4)
    assert np.array_equal(first[0].points, second[0].points)
    assert not np.array_equal(first[0].points, other[0].points)
    suspects = [*test_positives, *test_negatives]
    scores = [first[2].compare(first[1](classifier.owner), first[1](m)).value for m in suspects]
    assert scores == [second[2].compare(second[1](classifier.owner), second[1](m)).value for m in suspects]

    state = first[2].state()
    assert all(value.dtype == np.float64 for value in state.values())
    reloaded = MetaVerifier()
    reloaded.load_state({key: np.array(value) for key, value in state.items()})
    assert reloaded.fitted
    assert scores == [reloaded.compare(first[1](classifier.owner), first[1](m)).value for m in suspects]
    for key, value in reloaded.state().items():
        assert np.array_equal(value, state[key])


def test_refuses_what_it_cannot_learn_from(classifier):
    owner = TorchModel(classifier.owner, classifier.input_shape)
    domain = parse_domain(classifier.domain, classifier.input_shape)
    with pytest.raises(InvalidParameter, match="reference models"):
        MetaVProbes().select(owner, domain, n=8, k=0, seed=0)
    with pytest.raises(InvalidParameter, match="reference models"):
        MetaVProbes().select(owner, domain, n=8, k=0, seed=0, references=References([classifier.owner], []))
    with pytest.raises(ShapeMismatch, match="output shape"):
        MetaVProbes(steps=1).select(owner, domain, n=4, k=0, seed=0, references=References(
            [classifier.owner], [build("mlp", input_shape=classifier.input_shape, output_dim=3, seed=0)]))
    signature = {"outputs": np.zeros((4, 10))}
    verifier = MetaVerifier()
    with pytest.raises(InvalidParameter, match="not been fitted"):
        verifier.compare(signature, signature)
    with pytest.raises(InvalidParameter, match="at least 1 positive and 1 negative"):
        verifier.fit(signature, [signature], [], seed=0)
    verifier.fit(signature, [{"outputs": np.ones((4, 10))}], [{"outputs": -np.ones((4, 10))}], seed=0)
    with pytest.raises(ShapeMismatch):
        verifier.compare(signature, {"outputs": np.zeros((3, 10))})
    with pytest.raises(InvalidParameter, match="'hidden'"):
        MetaVerifier(hidden=0)


def test_the_scheme_is_registered():
    scheme = get_scheme("metav")
    assert (scheme.probes, scheme.signature, scheme.similarity) == ("metav", "outputs", "meta-verifier")
    assert scheme.references == "data" and scheme.points == 64
    assert scheme.tasks == ("classification", "regression", "generation")


@pytest.mark.skipif("references" not in inspect.signature(Fingerprint.create).parameters,
                    reason="Fingerprint.create does not take references yet")
def test_end_to_end_through_the_fingerprint_file(classifier, digits, tmp_path):
    train, test_positives, test_negatives = digits
    data = np.asarray(load_task("digits").split("owner").x)
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, scheme="metav", references=train,
                                     input_shape=classifier.input_shape, points=32, seed=0, data=data)
    assert fingerprint.queries() == 32
    scores = [fingerprint.score(m).value for m in [*test_positives, *test_negatives]]
    copies, independent = scores[:len(test_positives)], scores[len(test_positives):]
    assert min(copies) > max(independent), (copies, independent)
    loaded = Fingerprint.load(fingerprint.save(tmp_path / "metav.tafa"))
    assert [loaded.score(m).value for m in [*test_positives, *test_negatives]] == scores
    again = Fingerprint.create(classifier.owner, classifier.domain, scheme="metav", references=train,
                               input_shape=classifier.input_shape, points=32, seed=0, data=data)
    assert np.array_equal(again.probes.points, fingerprint.probes.points)
    assert [again.score(m).value for m in [*test_positives, *test_negatives]] == scores
