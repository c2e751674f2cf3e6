"""Boundary geometry: kinks located from outputs, their orientation compared with the owner's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tafa import Fingerprint
from tafa.attacks import add_weight_noise, quantize
from tafa.models.base import Model, TorchModel
from tafa.scheme import get_scheme
from tafa.signature.kinks import Kinks


def _resolution(probes) -> float:
    """How well a kink's position is known: half the bracket the bisection ends with, plus the
    finite-difference step (a central difference straddling the kink blurs it by that much)."""
    kinks = Kinks()
    return float(probes.extra["window"].max()) / kinks.cells / 2 ** kinks.bisections + float(probes.steps.max())


def _one_hidden_layer(seed: int = 0, d: int = 6, hidden: int = 12, m: int = 3) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, m))


@pytest.fixture(scope="module")
def small_net() -> torch.nn.Sequential:
    return _one_hidden_layer()


@pytest.fixture(scope="module")
def small_fingerprint(small_net) -> Fingerprint:
    # a window of a quarter of the box each way: few other units' kinks on a line
    scheme = replace(get_scheme("tafa-boundary"), probe_params={"window": 0.25})
    return Fingerprint.create(small_net, "box:-1,1", input_shape=(6,), scheme=scheme, points=10, directions=4)


class Counting(Model):
    """A wrapper that counts every input it is sent (whatever the wrapped model counts)."""

    def __init__(self, inner: Model) -> None:
        super().__init__(inner.input_shape, inner.output_shape, name="counting")
        self.inner = inner
        self.sent = 0

    def _forward(self, x: np.ndarray) -> np.ndarray:
        self.sent += len(x)
        return self.inner(x)


class Hostile(Model):
    """Answers NaN, a constant, or fresh noise at every query."""

    def __init__(self, how: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        super().__init__(input_shape, output_shape, name=f"hostile-{how}")
        self.how = how
        self.rng = np.random.default_rng(0)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        shape = (len(x), *self.output_shape)
        if self.how == "nan":
            return np.full(shape, np.nan)
        if self.how == "constant":
            return np.full(shape, 0.5)
        return self.rng.normal(size=shape)


def _kink_positions(net: torch.nn.Sequential, probes) -> np.ndarray:
    """Exact geometry of a one-hidden-layer net along each line ``p + t u``: where each unit's
    kink lies, ``t_j = -(w_j . p + b_j) / (w_j . u)``, ``(N, units)``."""
    weight = net[0].weight.detach().double().numpy()
    bias = net[0].bias.detach().double().numpy()
    points = probes.points.reshape(len(probes), -1)
    lines = probes.extra["line"].reshape(len(probes), -1)
    return -(points @ weight.T + bias) / (lines @ weight.T)


def _located_units(net: torch.nn.Sequential, probes, signature) -> tuple[np.ndarray, np.ndarray]:
    """Per line, the unit whose exact kink is nearest the located one, and how far it is."""
    gap = np.abs(_kink_positions(net, probes) - signature["position"][:, None])
    unit = gap.argmin(axis=1)
    return unit, gap[np.arange(len(unit)), unit]


def _jump_cosines(net: torch.nn.Sequential, probes, signature, units: np.ndarray) -> np.ndarray:
    """|cos| between each measured jump and the unit's weights in the measured directions."""
    weight = net[0].weight.detach().double().numpy()
    directions = probes.directions.reshape(len(probes), probes.directions.shape[1], -1)
    projected = np.einsum("nkd,nd->nk", directions, weight[units])
    return np.abs(np.einsum("nk,nk->n", projected, signature["jump"])) / np.linalg.norm(projected, axis=1)


def test_kinks_are_located_where_the_geometry_puts_them(small_net, small_fingerprint):
    probes, owner = small_fingerprint.probes, small_fingerprint.owner_signature
    weight = small_net[0].weight.detach().double().numpy()
    bias = small_net[0].bias.detach().double().numpy()
    points = probes.points.reshape(len(probes), -1)
    normals = probes.directions[:, 0].reshape(len(probes), -1)
    # each crossing point lies on one first-layer hyperplane, whose unit normal is the first direction
    values = np.abs(points @ weight.T + bias) / np.linalg.norm(weight, axis=1)
    units = values.argmin(axis=1)
    assert values.min(axis=1).max() < 1e-9
    assert np.abs(np.abs(np.einsum("nd,nd->n", normals, weight[units])) / np.linalg.norm(weight[units], axis=1)
                  - 1).max() < 1e-9
    # every located kink is one of the net's, where its weights put it (to the last bracket) ...
    assert owner["found"].all()
    located, gap = _located_units(small_net, probes, owner)
    assert gap.max() <= _resolution(probes)
    # ... its measured jump is that unit's normal in the measured directions (|cos| ~ 1) ...
    assert _jump_cosines(small_net, probes, owner, located).min() > 0.999
    # ... and on most lines it is the owner's own unit, at the crossing
    assert (located == units).mean() >= 0.7
    assert small_fingerprint.score(small_net).value > 0.999


def test_moved_hyperplanes_are_located_where_they_moved(small_net, small_fingerprint):
    """Every first-layer unit moved by ``shift`` along its normal: the kinks move with them,
    to positions known exactly, and are located there to the last bracket."""
    probes = small_fingerprint.probes
    moved = _one_hidden_layer()
    with torch.no_grad():
        moved[0].bias -= 0.05 * moved[0].weight.norm(dim=1)
    signature = small_fingerprint.measure(moved)
    assert signature["found"].all()
    located, gap = _located_units(moved, probes, signature)
    assert gap.max() <= _resolution(probes)
    assert _jump_cosines(moved, probes, signature, located).min() > 0.999
    weight = small_net[0].weight.detach().double().numpy()
    bias = small_net[0].bias.detach().double().numpy()
    crossing_units = np.abs(probes.points.reshape(len(probes), -1) @ weight.T + bias).argmin(axis=1)
    owner_units, _ = _located_units(small_net, probes, small_fingerprint.owner_signature)
    same = (located == crossing_units) & (owner_units == crossing_units)
    assert same.mean() >= 0.7
    # the same units' kinks moved by 0.05 / cos(line, normal) = 0.05 along the normal lines
    shift = np.abs(signature["position"] - small_fingerprint.owner_signature["position"])[same]
    assert np.abs(shift - 0.05).max() <= 2 * _resolution(probes)
    assert small_fingerprint.compare(signature).value > 0.99


def test_copies_match_the_orientation_and_an_independent_model_does_not(classifier):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     scheme="tafa-boundary")
    copies = [quantize(classifier.owner, 8), add_weight_noise(classifier.owner, 0.01, seed=1)]
    copy_scores = [fingerprint.score(model).value for model in copies]
    independent_scores = fingerprint.scores([classifier.independent, *classifier.references[:5]])
    assert min(copy_scores) > 0.97
    assert max(independent_scores) < 0.93
    # per located boundary, a copy's kink has the owner's orientation (|cos| near 1)
    assert fingerprint.score(copies[0]).parts["orientation"] > 0.95


@pytest.mark.parametrize("budget", [37, 400])
def test_the_query_budget_is_respected(small_net, small_fingerprint, budget):
    counting = Counting(TorchModel(small_net, (6,)))
    signature = Kinks(budget=budget).measure(counting, small_fingerprint.probes)
    assert counting.sent <= budget
    assert counting.sent == counting.queries
    full = Counting(TorchModel(small_net, (6,)))
    Kinks().measure(full, small_fingerprint.probes)
    assert full.sent <= small_fingerprint.queries()
    # a smaller budget finds fewer kinks, never more
    assert signature["found"].sum() <= small_fingerprint.owner_signature["found"].sum()


@pytest.mark.parametrize("how", ["nan", "constant", "noise"])
def test_hostile_suspects_show_no_kink(small_fingerprint, how):
    suspect = Hostile(how, (6,), (3,))
    signature = small_fingerprint.measure(suspect)
    assert signature["found"].sum() == 0
    assert suspect.queries <= small_fingerprint.queries()
    assert small_fingerprint.compare(signature).value == 0.0


def test_boundary_fingerprint_file_roundtrip(small_fingerprint, small_net, tmp_path):
    path = small_fingerprint.save(tmp_path / "boundary.tafa")
    loaded = Fingerprint.load(path)
    assert loaded.probe_sha256 == small_fingerprint.probe_sha256
    assert loaded.score(small_net).value == pytest.approx(small_fingerprint.score(small_net).value)


def test_black_box_owner_is_its_own_reference(small_net):
    owner = TorchModel(small_net, (6,), white_box=False)
    fingerprint = Fingerprint.create(owner, "box:-1,1", scheme="tafa-boundary", points=10, directions=4)
    assert fingerprint.probes.info["analysis"].startswith("black-box")
    assert "normal" not in fingerprint.owner_signature
    assert fingerprint.owner_signature["found"].sum() >= 5
    assert fingerprint.score(small_net).value == pytest.approx(fingerprint.owner_signature["found"].mean())


def test_adaptive_signature_has_no_fixed_input_list(small_fingerprint):
    from tafa.errors import InvalidParameter

    with pytest.raises(InvalidParameter, match="adaptive"):
        Kinks().inputs(small_fingerprint.probes)


def test_a_scan_panel_refuses_an_adaptive_fingerprint_in_one_line(small_fingerprint):
    from tafa.errors import InvalidParameter
    from tafa.scanning.panel import Panel

    with pytest.raises(InvalidParameter, match="tafa verify"):
        Panel.from_fingerprints({"boundary": small_fingerprint})
