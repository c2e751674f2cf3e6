"""Networks outside the zoos. Those the white-box analysis cannot freeze (LSTMs, GRUs, tanh
recurrences, attention, gates) fall back to black-box probes instead of being read as one linear
region; a ReLU recurrence is unrolled and read exactly; recurrent and attention TorchScript files
open; a recurrent owner's copy is found and an independent one is not, and so is a global-max-pooling
owner's."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from tafa import Fingerprint, Verdict, parse_domain
from tafa.bench.architectures import build
from tafa.models.open import open_model
from tafa.relu import NotPiecewiseLinear, check_head_on_top
from tafa.relu.linearise import first_switches, linearise
from tafa.training import TrainingData, fit


class Rows(nn.Module):
    """A digit read row by row (8 steps of 8 values) by a recurrent layer, then a linear head."""

    def __init__(self, seed: int, kind: str = "lstm", hidden: int = 24) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "rnn-tanh": nn.RNN}
        options = {"nonlinearity": "relu"} if kind == "rnn" else {}
        self.rnn = layers[kind](8, hidden, batch_first=True, **options)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class Attention(nn.Module):
    """Rows as tokens, one attention layer (the fused kernel), a ReLU, a linear head: no LayerNorm
    or GELU the analysis would name."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = nn.functional.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))
        return self.head(torch.relu(mixed).mean(1))


class Maximum(nn.Module):
    """A ReLU written as ``torch.maximum``: piecewise-linear, but not an operation the analysis freezes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.a(x.reshape(len(x), -1))
        return self.b(torch.maximum(hidden, torch.zeros_like(hidden)))


class Gate(nn.Module):
    """``h * sigmoid(g)`` then a layer: a sigmoid that is not a head on top."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.h, self.g, self.out = nn.Linear(64, 32), nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1)
        return self.out(torch.relu(self.h(x)) * torch.sigmoid(self.g(x)))


@pytest.mark.parametrize("make", [lambda: Rows(0, "lstm"), lambda: Rows(0, "gru"), lambda: Rows(0, "rnn-tanh"),
                                  Attention, Maximum, Gate],
                         ids=["lstm", "gru", "tanh-rnn", "attention", "maximum", "gate"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_operations_the_analysis_cannot_freeze_are_refused(make, dtype):
    module = make().to(dtype).eval()
    shape = (64,) if isinstance(module, (Maximum, Gate)) else (8, 8)
    with pytest.raises(NotPiecewiseLinear):
        check_head_on_top(module, np.random.default_rng(0).uniform(0, 1, shape))


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("lenet", (1, 28, 28)),
                                        ("resnet_zoo", (1, 28, 28))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_networks_pass_the_frozen_affine_check(name, shape, dtype):
    module = build(name, input_shape=shape, output_dim=10, seed=0).to(dtype).eval()
    check_head_on_top(module, np.random.default_rng(1).uniform(0, 1, shape))  # off by ~1e-7 in float32


class Cell(nn.Module):
    """A ReLU ``nn.RNNCell`` stepped over the rows in Python, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cell, self.head = nn.RNNCell(8, 12, nonlinearity="relu"), nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.zeros(len(x), 12, dtype=x.dtype)
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return self.head(state)


class Deep(nn.Module):
    """Two bidirectional ReLU recurrent layers, every step's states averaged, then a head."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(8, 12, num_layers=2, bidirectional=True, batch_first=True, nonlinearity="relu", bias=bias)
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0].mean(1))


@pytest.mark.parametrize("make", [lambda: Rows(0, "rnn"), Deep, lambda: Deep(bias=False), Cell],
                         ids=["relu-rnn", "two-bidirectional-layers", "no-bias", "cell"])
def test_a_relu_recurrence_is_unrolled_and_read_exactly(make):
    module = make().double().eval()
    x0 = np.random.default_rng(0).uniform(0, 1, (8, 8))
    check_head_on_top(module, x0)  # was refused: one fused call the analysis ran unfrozen
    piece = linearise(module, x0)
    point = torch.tensor(x0)
    jacobian = torch.autograd.functional.jacobian(lambda v: module(v.unsqueeze(0))[0], point).reshape(10, -1)
    np.testing.assert_allclose(piece.jacobian, jacobian.numpy(), atol=1e-12)
    np.testing.assert_allclose(piece.output, module(point.unsqueeze(0))[0].detach().numpy(), atol=1e-12)
    units = module.cell.hidden_size if isinstance(module, Cell) else module.rnn.hidden_size
    # one switch per unit and step (and layer and direction)
    assert piece.switch_values.shape == (units * 8 * (4 if isinstance(module, Deep) else 1),)
    # the first switches are the first step's units: they see the first row only
    values, gradients = first_switches(module, x0)
    assert gradients.shape[0] == units
    rows = np.abs(gradients.reshape(len(gradients), 8, 8)).max(axis=(0, 2))
    assert rows[0] > 0.01 and rows[1:].max() < 1e-12 * rows[0]


def test_a_relu_recurrence_in_training_mode_with_dropout_is_refused():
    module = nn.Sequential(nn.RNN(8, 12, num_layers=2, dropout=0.5, nonlinearity="relu", batch_first=True)).double()
    module.train()
    with pytest.raises(NotPiecewiseLinear, match="dropout"):
        linearise(_Last(module), np.random.default_rng(0).uniform(0, 1, (8, 8)))


class _Last(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -1]


def _digit_rows() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor((x / 16.0).astype(np.float32)).reshape(-1, 8, 8), torch.tensor(y)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int, lr: float) -> nn.Module:
    return fit(model, TrainingData(x, y, "classify"), epochs=epochs, lr=lr, seed=seed, batch_size=128)


def _verdicts(make: Callable[[int], nn.Module], epochs: int) -> tuple[Fingerprint, Verdict, Verdict]:
    """An owner ``make(4)`` trained on the digits' rows, its fingerprint, and its verdicts at alpha
    0.05 against 19 references ``make(204 + k)`` on a copy fine-tuned for an epoch at lr 1e-3 and on
    an independent model ``make(104)``."""
    torch.set_num_threads(1)
    x, y = _digit_rows()
    owner = _fit(make(4), x, y, 4, epochs, 1e-2)
    pirated = _fit(copy.deepcopy(owner), x, y, 5, 1, 1e-3)
    independent = _fit(make(104), x, y, 104, epochs, 1e-2)
    references = [_fit(make(204 + k), x, y, 204 + k, epochs, 1e-2) for k in range(19)]
    fingerprint = Fingerprint.create(owner, parse_domain("box:0,1", (8, 8)), input_shape=(8, 8))
    return (fingerprint, fingerprint.verify(pirated, references, alpha=0.05),
            fingerprint.verify(independent, references, alpha=0.05))


def test_a_recurrent_owner_is_fingerprinted_black_box_and_its_copy_found():
    fingerprint, copy_verdict, other_verdict = _verdicts(Rows, 6)
    assert fingerprint.probes.info["analysis"].startswith("black-box (the network is not affine")
    # measured: the copy's first stage 0.97 against a threshold of 0.45; the independent model's
    # stages 0.15 / 0.20 / 0.65 against 0.45 / 0.50 / 0.77 (p = 0.75)
    assert copy_verdict.decision == "derived" and copy_verdict.score > copy_verdict.threshold + 0.3
    assert other_verdict.decision == "independent" and other_verdict.p_value > 0.3


def test_recurrent_and_attention_torchscript_files_open_and_answer_like_the_module(tmp_path):
    inputs = torch.rand(5, 8, 8)
    for name, module in [("lstm", Rows(0, "lstm")), ("gru", Rows(0, "gru")), ("attention", Attention())]:
        module.eval()
        path = tmp_path / f"{name}.pt"
        torch.jit.save(torch.jit.trace(module, torch.zeros(2, 8, 8)), str(path))
        opened = open_model(str(path), input_shape=(8, 8), allow_torchscript=True)
        with torch.no_grad():
            expected = module(inputs).numpy()
        np.testing.assert_allclose(opened(inputs.numpy()), expected, rtol=1e-5, atol=1e-5)


def test_an_onnx_recurrent_owner_says_why_it_is_fingerprinted_black_box(tmp_path):
    path = tmp_path / "lstm.onnx"
    torch.onnx.export(Rows(0).eval(), (torch.zeros(1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    owner = open_model(str(path))
    fingerprint = Fingerprint.create(owner, parse_domain("box:0,1", (8, 8)), second_stage=False)
    analysis = fingerprint.probes.info["analysis"]
    assert analysis.startswith("black-box (the white-box import failed: ONNX operators") and "LSTM" in analysis
    notes = fingerprint.verify(owner, check_evasion=False).notes
    assert f"fingerprint made {analysis}" in notes  # said once, not "black-box: black-box (...)"


def test_a_relu_recurrent_owner_is_fingerprinted_white_box_and_its_copy_found():
    fingerprint, copy_verdict, other_verdict = _verdicts(lambda seed: Rows(seed, "rnn"), 6)
    assert fingerprint.probes.info["analysis"] == "white-box"
    assert "tafa-boundary" in fingerprint.stage_names()  # the first step's units are hyperplanes to aim at
    # measured: the copy's first stage 0.92 against a threshold of 0.26; the independent model's
    # stages 0.10 / 0.03 / 0.40 / 0.61 (p = 0.70)
    assert copy_verdict.decision == "derived" and copy_verdict.score > copy_verdict.threshold + 0.3
    assert other_verdict.decision == "independent" and other_verdict.p_value > 0.3


class OverTime(nn.Module):
    """A digit's 8 rows as 8 channels over 8 steps: a 1-D convolution, each filter's largest value
    over time (a text or audio CNN's global max pooling), a head."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv, self.head = nn.Conv1d(8, 32, 3), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).max(dim=2).values)


def test_an_owner_with_global_max_pooling_is_fingerprinted_white_box_and_its_copy_found():
    fingerprint, copy_verdict, other_verdict = _verdicts(OverTime, 10)
    assert fingerprint.probes.info["analysis"] == "white-box"  # was black-box: "operation 'max' is not ..."
    assert "tafa-boundary" in fingerprint.stage_names()
    # measured: the copy's first stage 1.000 against a threshold of 0.45; the independent model's
    # stages 0.35 / 0.30 / 0.58 / 0.70 (p = 0.65)
    assert copy_verdict.decision == "derived" and copy_verdict.score > copy_verdict.threshold + 0.3
    assert other_verdict.decision == "independent" and other_verdict.p_value > 0.3
