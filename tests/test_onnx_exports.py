"""ONNX owners as third-party code exports them: torch's TorchScript-based export fixes the batch at 1
(and writes it into its reshapes), ``x.view(x.size(0), -1)`` with a dynamic batch computes the shape
from ``Shape`` and ``Gather``, and ``nn.RNN`` becomes an ``RNN`` node with its initial state made by
``ConstantOfShape`` or ``Expand``; the dynamo-based export (torch's default since 2.9) writes a global
average pooling as ``ReduceMean`` and reverses a sequence with a ``Slice`` of step -1. Each is read white-box, its analysis exact against the torch
module it was exported from; a graph whose batch cannot be read goes black-box with the reason,
never a crash; a shape read from a graph is bounded before anything is allocated."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from tafa import Fingerprint, parse_domain
from tafa.models import open_model
from tafa.models.onnx_import import UnsupportedOperator, check_reproduces, import_onnx
from tafa.relu import NotPiecewiseLinear, check_head_on_top
from tafa.relu.linearise import linearise

pytestmark = pytest.mark.filterwarnings("ignore:Exporting a model to ONNX with a batch_size other than 1")


class Viewed(nn.Module):
    """A small CNN flattened with ``x.view(x.size(0), -1)``, the way much hand-written code does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.conv(x))
        return self.fc(hidden.view(hidden.size(0), -1))


class Recurrent(nn.Module):
    """A digit's rows read by a ReLU ``nn.RNN`` (``layers``, ``bidirectional``), the last step's state
    to a head; ``tanh``: the default nonlinearity, which the analysis refuses."""

    def __init__(self, layers: int = 1, bidirectional: bool = False, tanh: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(8, 12, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                          nonlinearity="tanh" if tanh else "relu")
        self.head = nn.Linear(24 if bidirectional else 12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


DYNAMO = Path(__file__).resolve().parent / "fixtures" / "dynamo"

OWNERS = {"viewed-cnn": (Viewed, (1, 8, 8)), "relu-rnn": (Recurrent, (8, 8)),
          "two-bidirectional-layers": (lambda: Recurrent(2, True), (8, 8))}


def _export(module: nn.Module, shape: tuple[int, ...], dynamic: bool) -> bytes:
    buffer = io.BytesIO()
    axes = {"dynamic_axes": {"x": {0: "batch"}, "y": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(module.eval(), (torch.zeros(1, *shape),), buffer, dynamo=False, input_names=["x"],
                      output_names=["y"], **axes)
    return buffer.getvalue()


def _runtime(data: bytes):
    """The file as onnxruntime runs it, one input at a time (a fixed-batch file takes no other)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda x: np.concatenate([session.run(None, {"x": row[None].astype(np.float32)})[0] for row in x])


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch-fixed-at-1", "dynamic-batch"])
@pytest.mark.parametrize("name", list(OWNERS))
def test_default_exports_are_imported_and_read_exactly(name, dynamic):
    make, shape = OWNERS[name]
    module = make().eval()
    data = _export(module, shape, dynamic)
    imported = import_onnx(onnx.load_from_string(data)).float()
    # a chain of standard layers, which the weight evidence and the attacks of data-free references read
    assert isinstance(imported, nn.Sequential) == (name == "viewed-cnn")
    check_reproduces(imported, _runtime(data), shape)  # was refused (Shape, Gather, RNN) or crashed later
    imported, module = imported.double(), module.double()
    x0 = np.random.default_rng(0).uniform(0, 1, shape)
    check_head_on_top(imported, x0)
    piece = linearise(imported, x0)
    point = torch.tensor(x0)
    jacobian = torch.autograd.functional.jacobian(lambda v: module(v.unsqueeze(0))[0], point).reshape(10, -1)
    np.testing.assert_allclose(piece.jacobian, jacobian.numpy(), atol=1e-10)
    np.testing.assert_allclose(piece.output, module(point.unsqueeze(0))[0].detach().numpy(), atol=1e-10)


def _dynamo(name: str, shape: tuple[int, ...]) -> tuple[Path, torch.nn.Module]:
    """A committed file the dynamo exporter wrote, imported, checked against onnxruntime, in float64."""
    path = DYNAMO / f"{name}.onnx"
    data = path.read_bytes()
    imported = import_onnx(onnx.load_from_string(data)).float()
    check_reproduces(imported, _runtime(data), shape)
    return path, imported.double()


def test_the_dynamo_exporters_residual_network_is_read_white_box_and_exactly():
    """What ``torch.onnx.export`` writes by default since torch 2.9 (``dynamo=True``; committed, as it
    needs ``onnxscript``: ``tests/fixtures/make_dynamo.py``): a residual network with BatchNorm
    whose global average pooling is a ``ReduceMean``, which sent such owners black-box."""
    path, imported = _dynamo("residual", (1, 8, 8))
    x0 = np.random.default_rng(0).uniform(0, 1, (1, 8, 8))
    check_head_on_top(imported, x0)
    piece = linearise(imported, x0)
    point = torch.tensor(x0)
    jacobian = torch.autograd.functional.jacobian(lambda v: imported(v.unsqueeze(0))[0], point).reshape(10, -1)
    np.testing.assert_allclose(piece.jacobian, jacobian.numpy(), atol=1e-10)
    assert np.abs(piece.jacobian).max() > 1e-3  # a network that reads its input
    fingerprint = Fingerprint.create(open_model(str(path)), parse_domain("box:0,1", (1, 8, 8)), second_stage=False)
    assert fingerprint.probes.info["analysis"] == "white-box"


def test_the_dynamo_exporters_recurrence_is_imported_and_goes_black_box_with_the_reason():
    """The same exporter unrolls a bidirectional ReLU RNN, reversing the sequence with a ``Slice`` of
    step -1 (the import refused it), and applies each step's ReLU to a ``[1, batch, hidden]`` slice:
    the analysis freezes a switch by the first row of its first axis, which is not the batch there,
    so the check that the frozen network is affine refuses it: black-box, with why."""
    path, imported = _dynamo("bidirectional-rnn", (4, 8))
    with pytest.raises(NotPiecewiseLinear, match="not affine"):
        check_head_on_top(imported, np.random.default_rng(0).uniform(0, 1, (4, 8)))
    fingerprint = Fingerprint.create(open_model(str(path)), parse_domain("box:0,1", (4, 8)), second_stage=False)
    assert fingerprint.probes.info["analysis"].startswith("black-box (the network is not affine")


def test_a_tanh_recurrence_exported_to_onnx_is_imported_but_refused_by_the_analysis():
    data = _export(Recurrent(tanh=True), (8, 8), True)
    imported = import_onnx(onnx.load_from_string(data)).float()
    check_reproduces(imported, _runtime(data), (8, 8))
    with pytest.raises(NotPiecewiseLinear):
        check_head_on_top(imported.double(), np.random.default_rng(0).uniform(0, 1, (8, 8)))


def test_an_owner_exported_with_its_batch_fixed_at_one_is_fingerprinted_white_box(tmp_path):
    """torch's default export (no dynamic axes) reshapes to ``[1, -1]``: the analysis's batches made
    ``Fingerprint.create`` fail with a RuntimeError (mat1 and mat2 shapes cannot be multiplied)."""
    path = tmp_path / "owner.onnx"
    path.write_bytes(_export(Viewed(), (1, 8, 8), False))
    fingerprint = Fingerprint.create(open_model(str(path)), parse_domain("box:0,1", (1, 8, 8)), second_stage=False)
    assert fingerprint.probes.info["analysis"] == "white-box"


def _graph_file(path: Path, nodes: list, initializers: list, batch: int | str = "b", opset: int = 13) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 10])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _weight() -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32), "w")


def test_a_graph_that_mixes_its_batch_is_analysed_black_box_with_the_reason(tmp_path):
    """A fixed-batch graph that reshapes ``[1, 8]`` to ``[8, -1]`` and back runs at any batch in
    tafa's interpreter but mixes the inputs of a batch: black-box, with why."""
    shape = onnx.numpy_helper.from_array(np.array([8, -1], dtype=np.int64), "s")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]), helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             helper.make_node("MatMul", ["t", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    path = _graph_file(tmp_path / "mixed.onnx", nodes, [_weight(), shape], batch=1)
    fingerprint = Fingerprint.create(open_model(str(path)), parse_domain("box:0,1", (8,)), second_stage=False)
    analysis = fingerprint.probes.info["analysis"]
    assert analysis.startswith("black-box") and "does not answer a batch as it answers each" in analysis, analysis


def test_squeeze_and_unsqueeze_keep_the_axes_they_are_given(tmp_path):
    """``Squeeze`` with axes squeezed every axis of size 1, the batch of a single input included."""
    axes = onnx.numpy_helper.from_array(np.array([1, 3], dtype=np.int64), "a")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Unsqueeze", ["m", "a"], ["u"]),
             helper.make_node("Squeeze", ["u", "a"], ["y"])]
    path = _graph_file(tmp_path / "axes.onnx", nodes, [_weight(), axes])
    imported = import_onnx(onnx.load_model(str(path)))
    x = torch.rand(1, 8)
    assert imported(x).shape == (1, 10)  # was (10,)
    assert imported.forward(torch.rand(3, 8)).shape == (3, 10)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand"])
def test_a_shape_read_from_the_graph_is_bounded_before_it_is_allocated(op, tmp_path):
    """A graph asking for 2^40 (2^33) values is refused by the interpreter before any allocation."""
    sizes = [1 << 20, 1 << 20] if op == "ConstantOfShape" else [1 << 30, 1, 8]  # Expand: broadcast against [2, 8]
    huge = onnx.numpy_helper.from_array(np.array(sizes, dtype=np.int64), "s")
    made = (helper.make_node("ConstantOfShape", ["s"], ["c"]) if op == "ConstantOfShape"
            else helper.make_node("Expand", ["x", "s"], ["c"]))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), made]
    imported = import_onnx(onnx.load_model(str(_graph_file(tmp_path / "huge.onnx", nodes, [_weight(), huge]))))
    with pytest.raises(UnsupportedOperator, match="refused"):
        imported(torch.rand(2, 8))
