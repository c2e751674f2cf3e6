"""The published baselines as schemes (ModelDiff, IPGuard, SAC-m): the common battery on real
small models, what each probe strategy promises, and hand-computed reference values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tafa.baseline_schemes  # noqa: F401  (registers the schemes)
from tafa import Fingerprint, TorchModel
from tafa.attacks import permute_units, quantize
from tafa.bench.datasets import load_task
from tafa.decide.baseline_similarities import CorrelationL1, DDVCosine, MatchRate
from tafa.domain import parse_domain
from tafa.errors import InvalidParameter
from tafa.probes import IPGuardProbes, ModelDiffProbes
from tafa.probes.ipguard import boundary_loss
from tafa.scheme import SCHEMES
from tafa.signature.correlation import correlation_matrix
from tafa.signature.distance import decision_distances

BASELINES = ("modeldiff", "ipguard", "sac-m")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """The owner's own inputs (the data the baselines' papers start from)."""
    return load_task("digits").split("owner").x.numpy()


@pytest.fixture(scope="module", params=BASELINES)
def fingerprint(request, classifier, digits) -> Fingerprint:
    return Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                              scheme=request.param, data=digits, seed=0)


def _top2_gap(logits: np.ndarray) -> np.ndarray:
    ordered = np.sort(logits, axis=1)
    return ordered[:, -1] - ordered[:, -2]


# ---------------------------------------------------------------- the common battery
def test_registered_with_their_tasks():
    assert SCHEMES["modeldiff"].tasks == ("classification", "regression", "generation")
    assert SCHEMES["ipguard"].tasks == SCHEMES["sac-m"].tasks == ("classification",)


def test_owner_scores_the_maximum(fingerprint, classifier):
    assert fingerprint.score(classifier.owner).value == pytest.approx(1.0, abs=1e-9)


def test_permuted_copy_scores_like_the_owner(fingerprint, classifier):
    copy = permute_units(classifier.owner, seed=1)
    assert fingerprint.score(copy).value == pytest.approx(fingerprint.score(classifier.owner).value, abs=1e-6)


def test_same_seed_same_probes(fingerprint, classifier, digits):
    def probes(seed: int) -> dict[str, np.ndarray]:
        return Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                  scheme=fingerprint.scheme.name, data=digits, seed=seed).probes.arrays()

    again, other = probes(0), probes(1)
    for name, array in fingerprint.probes.arrays().items():
        np.testing.assert_array_equal(again[name], array)
    assert not np.array_equal(other["points"], fingerprint.probes.points)


def test_batch_size_does_not_change_the_score(fingerprint, classifier):
    small_batches = TorchModel(classifier.independent, classifier.input_shape, batch_size=7)
    assert fingerprint.score(small_batches).value == pytest.approx(
        fingerprint.score(classifier.independent).value, abs=1e-6)


def test_int8_copy_beats_the_independent_references(fingerprint, classifier):
    references = np.mean(fingerprint.scores(classifier.references))
    assert fingerprint.score(quantize(classifier.owner, 8)).value > references
    assert fingerprint.score(classifier.independent).value < fingerprint.score(quantize(classifier.owner, 8)).value


def test_queries_per_verification(fingerprint):
    expected = {"modeldiff": 600, "ipguard": 100, "sac-m": 100}[fingerprint.scheme.name]
    assert fingerprint.queries() == expected


@pytest.mark.parametrize("name", ["regressor", "generator"])
def test_modeldiff_works_for_every_task_kind(request, name):
    kind = request.getfixturevalue(name)
    fp = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, scheme="modeldiff", seed=0)
    assert fp.score(kind.owner).value == pytest.approx(1.0, abs=1e-9)
    assert fp.score(permute_units(kind.owner, seed=1)).value == pytest.approx(1.0, abs=1e-6)
    assert fp.score(quantize(kind.owner, 8)).value > np.mean(fp.scores(kind.references))


def test_fingerprint_file_roundtrip(fingerprint, classifier, tmp_path):
    loaded = Fingerprint.load(fingerprint.save(tmp_path / "fp.tafa"))
    assert loaded.score(classifier.independent).value == fingerprint.score(classifier.independent).value


# ---------------------------------------------------------------- what each strategy promises
@pytest.mark.parametrize("use_data, shrink", [(True, 0.05), (False, 0.25)])
def test_ipguard_points_sit_on_the_owners_boundary(classifier, digits, use_data, shrink):
    # From random starts several classes are close: a point often stops where its label i
    # just ties a third class, with j ahead of i by more than k; from data, at j - i = k.
    owner = TorchModel(classifier.owner, classifier.input_shape)
    domain = parse_domain(classifier.domain, classifier.input_shape)
    strategy = IPGuardProbes()
    data = digits if use_data else None
    starts, i, j, _ = strategy.starts(owner, domain, n=100, seed=0, data=data)
    probes = strategy.select(owner, domain, n=100, k=0, seed=0, data=data)
    before, after = _top2_gap(owner(starts)), _top2_gap(owner(probes.points))
    assert probes.info["reached"] > 0.9
    assert np.median(after) < shrink * np.median(before)
    assert np.quantile(after, 0.1) < 2 * strategy.margin
    reached = boundary_loss(torch.from_numpy(owner(probes.points)), torch.from_numpy(i), torch.from_numpy(j),
                            strategy.margin).numpy() <= strategy.tolerance
    np.testing.assert_array_equal(owner(probes.points).argmax(axis=1)[reached], j[reached])
    assert probes.points.min() >= 0.0 and probes.points.max() <= 1.0


def test_ipguard_refuses_a_regressor_and_a_black_box_owner(regressor, classifier):
    with pytest.raises(InvalidParameter, match="classifier"):
        Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape, scheme="ipguard")
    black_box = TorchModel(classifier.owner, classifier.input_shape, white_box=False)
    with pytest.raises(InvalidParameter, match="white-box"):
        Fingerprint.create(black_box, classifier.domain, scheme="ipguard")


@pytest.mark.parametrize("white_box", [True, False])
def test_modeldiff_pairs_stay_close_and_in_the_domain(classifier, digits, white_box):
    owner = TorchModel(classifier.owner, classifier.input_shape, white_box=white_box)
    domain = parse_domain(classifier.domain, classifier.input_shape)
    probes = ModelDiffProbes().select(owner, domain, n=50, k=0, seed=0, data=digits)
    step = np.abs(probes.extra["pair"] - probes.points)
    assert step.max() <= 0.1 + 1e-12 and step.max() > 0.05
    assert probes.extra["pair"].min() >= 0.0 and probes.extra["pair"].max() <= 1.0
    assert probes.info["analysis"].startswith("white-box" if white_box else "black-box")
    if white_box:  # the ascent moves the owner's decisions further apart than the random start does
        random = ModelDiffProbes(steps=0).select(owner, domain, n=50, k=0, seed=0, data=digits)
        crafted = decision_distances(owner(probes.points), owner(probes.extra["pair"]))
        assert crafted.mean() > 2 * decision_distances(owner(random.points), owner(random.extra["pair"])).mean()


def test_sacm_samples_are_data_with_one_pasted_box(digits):
    from tafa.probes import SACmProbes

    domain = parse_domain("box:0,1", (1, 8, 8))
    probes = SACmProbes().select(None, domain, n=100, k=0, seed=0, data=digits)
    nearest = np.abs(probes.points.reshape(100, 1, -1) - digits.reshape(1, len(digits), -1)).sum(axis=2)
    changed = (probes.points.reshape(100, 1, -1) != digits.reshape(1, len(digits), -1)).sum(axis=2)
    base = nearest.argmin(axis=1)
    assert changed[np.arange(100), base].max() <= 4  # a 2 x 2 box (0.2 of 8 pixels, rounded)
    assert (changed[np.arange(100), base] > 0).mean() > 0.5


# ---------------------------------------------------------------- reference values
def test_ddv_reference_values():
    assert decision_distances(np.array([[3.0, 4.0]]), np.array([[4.0, 3.0]]))[0] == pytest.approx(1 - 24 / 25)
    assert decision_distances(np.array([[2.0]]), np.array([[-1.0]]))[0] == pytest.approx(3.0)
    score = DDVCosine().compare({"ddv": np.array([1.0, 2.0, 2.0])}, {"ddv": np.array([2.0, 1.0, 2.0])})
    assert score.value == pytest.approx(8 / 9)
    assert score.per_point.mean() == pytest.approx(score.value)


def test_match_rate_reference_value():
    score = MatchRate().compare({"labels": np.array([0.0, 1, 2, 3, 4])}, {"labels": np.array([0.0, 1, 1, 3, 0])})
    assert score.value == pytest.approx(0.6)
    np.testing.assert_array_equal(score.per_point, [1, 1, 0, 1, 0])


def test_sac_l1_reference_value():
    owner = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, -0.5], [0.0, -0.5, 1.0]])
    suspect = np.array([[1.0, 0.2, 0.3], [0.2, 1.0, -0.5], [0.3, -0.5, 1.0]])
    score = CorrelationL1().compare({"correlation": owner}, {"correlation": suspect})
    assert score.value == pytest.approx(1 - 1.2 / 9)
    np.testing.assert_allclose(score.per_point, [0.8, 0.9, 0.9])


def test_sac_distance_is_twice_the_authors_code_distance():
    rng = np.random.default_rng(0)
    a, b = correlation_matrix(rng.normal(size=(6, 4))), correlation_matrix(rng.normal(size=(6, 4)))
    authors = np.abs((1 - a) / 2 - (1 - b) / 2).mean()  # their matrix is (1 - cos) / 2
    score = CorrelationL1().compare({"correlation": a}, {"correlation": b})
    assert (1 - score.value) / 2 == pytest.approx(authors)


def test_ipguard_loss_reference_values():
    logits = torch.tensor([[1.0, 0.5, 0.2], [0.2, 0.5, 0.9], [0.0, 0.02, -1.0]])
    i, j = torch.tensor([0, 0, 0]), torch.tensor([1, 1, 1])
    np.testing.assert_allclose(boundary_loss(logits, i, j, 0.01).numpy(), [0.51, 0.7, 0.0], atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (5, 3), elements=st.floats(-10, 10)).filter(lambda a: np.all(np.abs(a).sum(1) > 1e-3)),
       arrays(np.float64, (5,), elements=st.floats(0.1, 10)))
def test_correlation_ignores_the_scale_of_each_output(outputs, scales):
    owner = {"correlation": correlation_matrix(outputs)}
    suspect = {"correlation": correlation_matrix(outputs * scales[:, None])}
    assert CorrelationL1().compare(owner, suspect).value == pytest.approx(1.0, abs=1e-9)
