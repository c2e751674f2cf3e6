"""Scaling the white-box analysis: subspace linearisation, chunking, the slice LP, and the
time budget's shortcuts (recorded, reproducible, and still recognising a copy)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tafa import Fingerprint
from tafa.attacks import add_weight_noise, quantize
from tafa.cli import main
from tafa.commitment import Commitment
from tafa.domain import parse_domain
from tafa.models.base import TorchModel
from tafa.probes.relu import ReluProbes
from tafa.relu import centre, linearise, slice_radius


def _cnn(side: int = 20, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * (((side + 1) // 2 - 2) // 2) ** 2, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def _basis(d: int, q: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, q)))[0]


@pytest.mark.parametrize("seed", range(2))
def test_subspace_linearisation_is_the_full_one_restricted_to_the_slice(seed):
    module = _cnn().double()
    x0 = np.random.default_rng(seed).uniform(0, 1, size=(1, 20, 20))
    basis = _basis(400, 7, seed)
    full, sliced = linearise(module, x0), linearise(module, x0, basis)
    np.testing.assert_array_equal(full.switch_values, sliced.switch_values)
    np.testing.assert_allclose(sliced.switch_jacobian, full.switch_jacobian @ basis, atol=1e-10)
    np.testing.assert_allclose(sliced.jacobian, full.jacobian @ basis, atol=1e-10)
    np.testing.assert_allclose(sliced.output, full.output, atol=1e-12)


def test_padded_max_pooling_is_linearised_exactly():
    module = _cnn().double()
    x0 = np.random.default_rng(3).uniform(0, 1, size=(1, 20, 20))
    lin = linearise(module, x0)
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x.unsqueeze(0))[0], torch.as_tensor(x0))
    np.testing.assert_allclose(lin.jacobian, jacobian.reshape(3, -1).numpy(), atol=1e-10)
    assert np.all(np.isfinite(lin.switch_jacobian)) and np.all(np.isfinite(lin.switch_values))


@pytest.mark.parametrize("chunk_rows", [2, 3, 9])
def test_chunked_linearisation_equals_one_pass(chunk_rows):
    module = _cnn().double()
    x0 = np.random.default_rng(4).uniform(0, 1, size=(1, 20, 20))
    basis = _basis(400, 12, 4)
    whole, chunked = linearise(module, x0, basis), linearise(module, x0, basis, chunk_rows=chunk_rows)
    np.testing.assert_allclose(chunked.switch_jacobian, whole.switch_jacobian, atol=1e-12)
    np.testing.assert_allclose(chunked.jacobian, whole.jacobian, atol=1e-12)


def test_memory_bounded_chunking_gives_the_same_probes():
    owner = TorchModel(_cnn(), (1, 20, 20))
    domain = parse_domain("box:0,1", (1, 20, 20))
    one_pass = ReluProbes().select(owner, domain, n=8, k=2, seed=0)
    chunked = ReluProbes(chunk_rows=2).select(owner, domain, n=8, k=2, seed=0)
    np.testing.assert_allclose(chunked.points, one_pass.points, atol=1e-9)
    np.testing.assert_allclose(chunked.steps, one_pass.steps, rtol=1e-6)
    np.testing.assert_array_equal(chunked.directions, one_pass.directions)


def test_slice_lp_centre_keeps_its_ball_inside_the_region_the_domain_and_the_move_box():
    module = _cnn().double()
    rng = np.random.default_rng(5)
    lo, hi, delta = np.zeros((1, 20, 20)), np.ones((1, 20, 20)), 0.1
    for trial in range(3):
        x0 = rng.uniform(0, 1, size=(1, 20, 20))
        basis = _basis(400, 6, trial)
        lin = linearise(module, x0, basis)
        moved = centre(lin, x0, lo, hi, delta, basis)
        assert moved.method == "lp" and moved.radius >= slice_radius(lin, x0, lo, hi) - 1e-12
        assert np.all(np.abs(moved.point - x0) <= delta + 1e-9)
        pattern = lin.pattern()
        for direction in rng.normal(size=(10, 6)):
            step = (basis @ direction / np.linalg.norm(direction)).reshape(x0.shape) * 0.99 * moved.radius
            inside = moved.point + step
            assert np.all(inside >= lo) and np.all(inside <= hi)
            assert np.array_equal(linearise(module, inside).pattern(), pattern)


def test_a_tiny_budget_takes_recorded_shortcuts_and_still_recognises_a_copy(classifier):
    owner = classifier.owner
    fingerprint = Fingerprint.create(owner, classifier.domain, input_shape=classifier.input_shape, time_budget=1e-6)
    shortcuts = fingerprint.meta["shortcuts"]
    assert shortcuts and fingerprint.meta["cost_estimate_seconds"] > 1e-6
    assert fingerprint.meta["time_budget_seconds"] == 1e-6
    assert fingerprint.scheme.probe_params, "the plan's parameters are part of the scheme"
    # the stages whose inputs are searched for on the owner's gradients are left out, and say why
    assert fingerprint.labels is None and fingerprint.extraction is None and fingerprint.scheme.extraction is None
    assert fingerprint.meta["free_label_stage"]["why"].startswith("its boundary points were not searched for: about")
    assert "over the 1e-06 s time budget" in fingerprint.meta["extraction_stage"]["why"]
    exact = Fingerprint.create(owner, classifier.domain, input_shape=classifier.input_shape, time_budget=None)
    assert exact.meta["shortcuts"] == [] and exact.scheme.probe_params == {}
    assert exact.labels is not None and exact.extraction is not None
    copy_score = fingerprint.score(quantize(copy.deepcopy(owner), 8)).value
    noisy_score = fingerprint.score(add_weight_noise(owner, 0.05, seed=3)).value
    independent = [fingerprint.score(model).value for model in [*classifier.references, classifier.independent]]
    assert min(copy_score, noisy_score) > max(independent) + 0.1


def test_a_budgeted_fingerprint_is_reproduced_from_its_commitment(classifier, tmp_path):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     time_budget=1e-6)
    path = tmp_path / "owner.tafa"
    fingerprint.save(path)
    loaded = Fingerprint.load(path)
    assert loaded.meta["shortcuts"] == fingerprint.meta["shortcuts"]
    again = Commitment.of(loaded).reproduce(classifier.owner)
    assert again.probe_sha256 == fingerprint.probe_sha256


def test_a_generous_budget_changes_nothing(classifier):
    exact = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                               time_budget=None)
    budgeted = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                  time_budget=3600.0)
    assert budgeted.meta["shortcuts"] == [] and budgeted.probe_sha256 == exact.probe_sha256


def test_cli_time_budget(files_root, capsys):
    owner, out = files_root
    assert main(["--quiet", "fingerprint", str(owner), "--domain", "box:0,1", "--out", str(out.with_suffix(".a")),
                 "--time-budget", "0.000001"]) == 0
    printed = capsys.readouterr().out
    assert "shortcuts" in printed and "none (the exact" not in printed
    assert main(["--quiet", "fingerprint", str(owner), "--domain", "box:0,1", "--out", str(out.with_suffix(".b")),
                 "--time-budget", "none"]) == 0
    assert "none (the exact analysis" in capsys.readouterr().out
    for bad in ("0", "-3", "soon", "nan"):
        with pytest.raises(SystemExit) as exited:
            main(["--quiet", "fingerprint", str(owner), "--domain", "box:0,1", "--out", str(out),
                  "--time-budget", bad])
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--time-budget" in err and "seconds" in err


def test_cli_default_budget_is_the_library_default():
    from tafa.cli.options import DEFAULT_TIME_BUDGET
    from tafa.fingerprint import DEFAULT_TIME_BUDGET as LIBRARY

    assert DEFAULT_TIME_BUDGET == LIBRARY


@pytest.fixture
def files_root(classifier, tmp_path):
    path = tmp_path / "owner.onnx"
    model = copy.deepcopy(classifier.owner).float().eval()
    torch.onnx.export(model, (torch.zeros(1, *classifier.input_shape),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path, tmp_path / "owner.tafa"


@pytest.mark.parametrize("chunk_bytes", [1, 10_000, 64 << 20])
def test_derivative_inputs_are_the_float64_ones_rounded_once_whatever_the_chunk(monkeypatch, chunk_bytes):
    from tafa.functional import stepped_inputs
    from tafa.probes.base import Probes
    from tafa.signature import derivatives

    monkeypatch.setattr(derivatives, "INPUT_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(0)
    probes = Probes(rng.uniform(size=(10, 3, 5, 5)), rng.normal(size=(10, 4, 3, 5, 5)), rng.uniform(1e-3, 0.05, 10))
    float64 = np.concatenate([probes.points, stepped_inputs(probes.points, probes.directions, probes.steps)])
    inputs = derivatives.Derivatives().inputs(probes)
    assert inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs, float64.astype(np.float32))
