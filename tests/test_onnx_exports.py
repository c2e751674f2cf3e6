"""ONNX owners as third-party code exports them: torch's TorchScript-based export fixes the batch at 1
(and writes it into its reshapes), ``x.view(x.size(0), -1)`` with a dynamic batch computes the shape
from ``Shape`` and ``Gather``, and ``nn.RNN`` becomes an ``RNN`` node with its initial state made by
``ConstantOfShape`` or ``Expand``; the dynamo-based export (torch's default since 2.9) writes a global
average pooling as ``ReduceMean`` and reverses a sequence with a ``Slice`` of step -1; TensorFlow's
converters pad with ``auto_pad`` or at one end only. Each is read white-box, its analysis exact
against autograd; a graph whose batch cannot be read goes black-box with the reason, never a crash;
a shape read from a graph is bounded before anything is allocated."""

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


def _read_exactly(data: bytes, shape: tuple[int, ...], x0: np.ndarray | None = None,
                  source: nn.Module | None = None):
    """The graph in ``data`` imported, answering as onnxruntime runs it (alone and as a batch), in
    float64, and its frozen map at ``x0`` (a uniform draw by default), whose Jacobian must equal
    autograd's on ``source`` (the torch module it was exported from), or on the imported module
    itself, to 1e-10: the module and the map."""
    imported = import_onnx(onnx.load_from_string(data)).float()
    check_reproduces(imported, _runtime(data), shape)
    imported = imported.double()
    x0 = np.random.default_rng(0).uniform(0, 1, shape) if x0 is None else x0
    check_head_on_top(imported, x0)
    piece = linearise(imported, x0)
    truth = imported if source is None else source.double()
    jacobian = torch.autograd.functional.jacobian(lambda v: truth(v.unsqueeze(0))[0], torch.tensor(x0))
    np.testing.assert_allclose(piece.jacobian, jacobian.numpy().reshape(piece.jacobian.shape), atol=1e-10)
    assert np.abs(piece.jacobian).max() > 1e-3  # a network that reads its input
    return imported, piece


def _white_box(path: Path, domain: str, shape: tuple[int, ...]) -> None:
    fingerprint = Fingerprint.create(open_model(str(path)), parse_domain(domain, shape), second_stage=False)
    assert fingerprint.probes.info["analysis"] == "white-box"


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch-fixed-at-1", "dynamic-batch"])
@pytest.mark.parametrize("name", list(OWNERS))
def test_default_exports_are_imported_and_read_exactly(name, dynamic):
    make, shape = OWNERS[name]
    module = make().eval()
    data = _export(module, shape, dynamic)  # was refused (Shape, Gather, RNN) or crashed later
    # a chain of standard layers, which the weight evidence and the attacks of data-free references read
    assert isinstance(import_onnx(onnx.load_from_string(data)), nn.Sequential) == (name == "viewed-cnn")
    _, piece = _read_exactly(data, shape, source=module)
    point = torch.tensor(np.random.default_rng(0).uniform(0, 1, shape))
    np.testing.assert_allclose(piece.output, module.double()(point.unsqueeze(0))[0].detach().numpy(), atol=1e-10)


@pytest.mark.parametrize("name,shape", [("residual", (1, 8, 8)), ("bidirectional-rnn", (4, 8))])
def test_the_dynamo_exporters_graphs_are_read_white_box_and_exactly(name, shape):
    """What ``torch.onnx.export`` writes by default since torch 2.9 (``dynamo=True``; committed, as it
    needs ``onnxscript``: ``tests/fixtures/make_dynamo.py``): a residual network with BatchNorm whose
    global average pooling is a ``ReduceMean``, and a bidirectional ReLU RNN unrolled step by step,
    its sequence reversed by a ``Slice`` of step -1 and each step's ReLU applied to a ``[1, batch,
    hidden]`` slice (frozen along the batch's axis). Both went black-box ("ReduceMean ... outside
    the piecewise-linear set", "Slice with negative ... steps", then "not affine")."""
    path = DYNAMO / f"{name}.onnx"
    _, piece = _read_exactly(path.read_bytes(), shape)
    if name == "bidirectional-rnn":  # a switch per unit, step and direction
        assert piece.switch_values.shape == (12 * 4 * 2,)
    _white_box(path, "box:0,1", shape)


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
    _white_box(path, "box:0,1", (1, 8, 8))


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


@pytest.mark.parametrize("op", ["ConvTranspose", "Resize", "Pad", "Conv"])
def test_an_upsampling_or_padding_by_a_hostile_factor_is_refused_before_it_is_allocated(op, tmp_path):
    """A transposed convolution's stride of 10^5 (torch 2.13's ``conv_transpose1d`` kills the process
    with a segmentation fault at some such strides), a scale of 10^9, a pad of 10^9 on an 8-value
    input: the interpreter refuses the node before torch runs it."""
    reshape = onnx.numpy_helper.from_array(np.array([-1, 1, 8], dtype=np.int64), "r")
    one = onnx.numpy_helper.from_array(np.ones((1, 1, 3), np.float32), "k")
    made = {"ConvTranspose": helper.make_node("ConvTranspose", ["h", "k"], ["c"], kernel_shape=[3], strides=[100000]),
            "Resize": helper.make_node("Resize", ["h", "", "s"], ["c"]),
            "Pad": helper.make_node("Pad", ["h", "p"], ["c"]),
            "Conv": helper.make_node("Conv", ["h", "k"], ["c"], kernel_shape=[3], pads=[10 ** 9, 10 ** 9])}[op]
    extra = {"ConvTranspose": one, "Resize": onnx.numpy_helper.from_array(np.array([1, 1, 1e9], np.float32), "s"),
             "Pad": onnx.numpy_helper.from_array(np.array([0, 0, 10 ** 9, 0, 0, 10 ** 9], np.int64), "p"),
             "Conv": one}[op]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Reshape", ["x", "r"], ["h"]), made]
    imported = import_onnx(onnx.load_model(str(_graph_file(tmp_path / "huge.onnx", nodes, [_weight(), reshape, extra],
                                                           opset=13))))
    with pytest.raises(UnsupportedOperator, match="refused"):
        imported(torch.rand(2, 8))


def _tensorflow_style(path: Path) -> Path:
    """A small CNN for 8x8 one-channel inputs padded the ways TensorFlow's converters write: a
    convolution with ``auto_pad=SAME_UPPER`` and stride 2 (one row and column of padding, at the
    end), a max pooling with ``SAME_LOWER`` (at the start), a convolution with explicit pads at the
    end only, then a linear head."""
    rng = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2],
                              auto_pad="SAME_UPPER"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_LOWER"),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "tf", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 10])],
                              [weight("w1", 4, 1, 3, 3), weight("b1", 4), weight("w2", 4, 4, 2, 2),
                               weight("w3", 10, 4 * 4 * 4)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_convolutions_and_poolings_padded_at_one_end_are_read_exactly(tmp_path):
    """``auto_pad`` and asymmetric pads were refused ("asymmetric padding is not supported"): such an
    owner went black-box. Padded here (zeros before a convolution, -inf before a max pooling), the
    graph answers as onnxruntime does, and its frozen map is exact."""
    path = _tensorflow_style(tmp_path / "tf.onnx")
    assert not isinstance(import_onnx(onnx.load_model(str(path))), nn.Sequential)  # a Conv2d pads both ends alike
    _read_exactly(path.read_bytes(), (1, 8, 8), x0=np.random.default_rng(1).uniform(0, 1, (1, 8, 8)))
    _white_box(path, "box:0,1", (1, 8, 8))


def _generator(path: Path) -> Path:
    """A decoder from a 4-value latent to an 8x8 image: a linear layer, an upsampling
    ``ConvTranspose`` (stride 2), a ReLU, a reflection ``Pad``, a convolution, the answer clamped to
    [0, 1] with ``Min`` and ``Max`` (as converters write a clip) and a skip added with ``Sum``."""
    rng = np.random.default_rng(0)

    def tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
        return onnx.numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)

    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Reshape", ["h", "shape"], ["g"]),
             helper.make_node("ConvTranspose", ["g", "w2", "b2"], ["u"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], output_padding=[1, 1]),
             helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("Pad", ["r", "pads"], ["p"], mode="reflect"),
             helper.make_node("Conv", ["p", "w3"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Min", ["c", "one"], ["low"]),
             helper.make_node("Max", ["low", "zero"], ["clamped"]),
             helper.make_node("Flatten", ["clamped"], ["f"]),
             helper.make_node("Flatten", ["u"], ["skip"]),
             helper.make_node("Gemm", ["skip", "w4"], ["s"], transB=1),
             helper.make_node("Sum", ["f", "s"], ["y"])]
    initializers = [tensor("w1", rng.normal(0, 0.5, (64, 4))), tensor("b1", rng.normal(0, 0.1, 64)),
                    onnx.numpy_helper.from_array(np.array([-1, 4, 4, 4], dtype=np.int64), "shape"),
                    tensor("w2", rng.normal(0, 0.3, (4, 2, 3, 3))), tensor("b2", rng.normal(0, 0.1, 2)),
                    onnx.numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"),
                    tensor("w3", rng.normal(0, 0.3, (1, 2, 3, 3))), tensor("one", [1.0]), tensor("zero", [0.0]),
                    tensor("w4", rng.normal(0, 0.05, (64, 2 * 8 * 8)))]
    graph = helper.make_graph(nodes, "decoder", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 64])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_a_generator_with_transposed_convolutions_padding_and_elementwise_extremes_is_read_exactly(tmp_path):
    """``ConvTranspose`` (how generators and decoders upsample), ``Pad``, ``Max``/``Min`` and ``Sum``
    were outside the interpreter's set: such an owner went black-box. ``Max`` and ``Min`` are read as
    the ReLU they are (``max(a, b) = b + relu(a - b)``), whose switch the analysis freezes."""
    path = _generator(tmp_path / "decoder.onnx")
    _read_exactly(path.read_bytes(), (4,), x0=np.random.default_rng(2).normal(0, 1, 4))
    _white_box(path, "gaussian:0,1", (4,))


@pytest.mark.parametrize("name", list(OWNERS))
def test_torchscript_owners_of_these_shapes_are_fingerprinted_white_box(name, tmp_path):
    """A TorchScript owner is exported to ONNX in its worker, for a batch of one: the viewed CNN's
    export made ``Fingerprint.create`` fail with a RuntimeError (mat1 and mat2 shapes cannot be
    multiplied), and the recurrent ones went black-box (the ``RNN`` node)."""
    make, shape = OWNERS[name]
    path = tmp_path / f"{name}.pt"
    torch.jit.trace(make().eval(), torch.rand(2, *shape)).save(str(path))
    owner = open_model(str(path), input_shape=shape, allow_torchscript=True)
    fingerprint = Fingerprint.create(owner, parse_domain("box:0,1", shape), second_stage=False)
    assert fingerprint.probes.info["analysis"] == "white-box"


class Upsampled(nn.Module):
    """A convolution, an ``nn.Upsample`` by 2 (exported as ``Resize``), a convolution, a head."""

    def __init__(self, mode: str, corners: bool | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode=mode, align_corners=corners)
        self.conv2, self.head = nn.Conv2d(2, 1, 3, padding=1), nn.Linear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv2(self.up(torch.relu(self.conv(x))))).flatten(1))


@pytest.mark.parametrize("mode,corners", [("nearest", None), ("bilinear", False), ("bilinear", True)])
def test_an_upsampling_resize_is_read_exactly(mode, corners):
    """``Resize`` (a U-Net's, a generator's upsampling) was outside the interpreter's set."""
    _read_exactly(_export(Upsampled(mode, corners), (1, 8, 8), False), (1, 8, 8))


class Shuffled(nn.Module):
    """A ShuffleNet-style unit: channels split in two (``Split``), one half convolved, the halves
    concatenated and shuffled (reshape, transpose, reshape), global average pooling, a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.branch = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, worked = torch.relu(self.stem(x)).chunk(2, dim=1)
        mixed = torch.cat([kept, torch.relu(self.branch(worked))], dim=1)
        batch, channels, height, width = mixed.shape
        mixed = mixed.view(batch, 2, channels // 2, height, width).transpose(1, 2)
        mixed = mixed.reshape(batch, channels, height, width)
        return self.head(mixed.mean(dim=(2, 3)))


@pytest.mark.parametrize("dynamic", [False, True], ids=["batch-fixed-at-1", "dynamic-batch"])
def test_a_channel_split_and_shuffle_is_read_exactly(dynamic):
    """``Split`` (``torch.chunk``) was outside the interpreter's set; the shuffle's reshapes name the
    batch (fixed at 1, or read from ``Shape``), and halve a channel count with an integer ``Div``
    (true division in torch: the count came out a float, and its ``Cast`` was refused)."""
    _read_exactly(_export(Shuffled(), (1, 8, 8), dynamic), (1, 8, 8))
