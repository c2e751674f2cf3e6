"""White-box analysis: exact local maps, region centres, the ONNX import."""

from __future__ import annotations

import copy
import io

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tafa.models.onnx_import import UnsupportedOperator, import_onnx
from tafa.relu import NotPiecewiseLinear, centre, check_head_on_top, linearise


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1))
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU6())
        self.head = nn.Sequential(nn.AvgPool2d(2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 3), nn.Softmax(dim=1))

    def forward(self, x):
        h = self.stem(x)
        return self.head(h + torch.nn.functional.hardtanh(self.block(h), -0.5, 2.0))


def _trained_ish(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    for buffer_name, buffer in module.named_buffers():
        if "running_var" in buffer_name:
            buffer.uniform_(0.5, 2.0)
    return module.double().eval()


@pytest.mark.parametrize("seed", range(3))
def test_linearisation_is_exact_through_every_supported_operation(seed):
    module = _trained_ish(Residual())
    x0 = np.random.default_rng(seed).uniform(0, 1, size=(1, 8, 8))
    lin = linearise(module, x0)
    pre_head = nn.Sequential(*list(module.head)[:-1])

    def logits(x):
        return pre_head(module.stem(x) + torch.nn.functional.hardtanh(module.block(module.stem(x)), -0.5, 2.0))

    jacobian = torch.autograd.functional.jacobian(lambda x: logits(x.unsqueeze(0))[0], torch.as_tensor(x0))
    np.testing.assert_allclose(lin.jacobian, jacobian.reshape(3, -1).numpy(), atol=1e-10)
    # switches: ReLU/LeakyReLU pre-activations, both sides of each clamp, pooling differences
    assert lin.switch_jacobian.shape[1] == 64 and lin.switch_values.shape[0] > 4 * 64


def test_centre_keeps_the_pattern_and_the_ball_inside_the_region():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)).double()
    rng = np.random.default_rng(0)
    for _ in range(5):
        x0 = rng.uniform(0, 1, size=6)
        lin = linearise(module, x0)
        moved = centre(lin, x0, np.zeros(6), np.ones(6), delta=0.2)
        assert moved.method == "lp" and moved.radius >= lin.radius() - 1e-12
        assert np.all(np.abs(moved.point - x0) <= 0.2 + 1e-9)
        pattern = lin.pattern()
        for direction in rng.normal(size=(20, 6)):
            step = 0.99 * moved.radius * direction / np.linalg.norm(direction)
            assert np.array_equal(linearise(module, moved.point + step).pattern(), pattern)


def test_head_inside_the_network_is_refused():
    module = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    with pytest.raises(NotPiecewiseLinear):
        check_head_on_top(module, np.zeros(4))
    check_head_on_top(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Tanh()).double(), np.zeros(4))


def test_smooth_activation_is_refused():
    with pytest.raises(NotPiecewiseLinear):
        linearise(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2)).double(), np.zeros(4))


class GlobalMax(nn.Module):
    """Convolutions, then each filter's largest (or smallest) value over positions, written each
    way a network writes global max pooling, then a head."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.how = how
        two_d = how in ("adaptive2d", "amax2d")
        self.conv = nn.Conv2d(1, 6, 3) if two_d else nn.Conv1d(8, 12, 3, padding=1)
        self.head = nn.Linear(24 if how == "adaptive2d" else 6 if two_d else 12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.conv(x))
        pooled = {"max-dim": lambda: f.max(dim=2).values,
                  "max-keepdim": lambda: torch.max(f, 2, keepdim=True)[0].squeeze(-1),
                  "min": lambda: -torch.min(-f, -1).values,
                  "amax": lambda: torch.amax(f, dim=-1),
                  "adaptive1d": lambda: nn.AdaptiveMaxPool1d(2)(f).amax(-1),
                  "adaptive2d": lambda: nn.functional.adaptive_max_pool2d(f, (2, 2)).flatten(1),
                  "amax2d": lambda: f.amax(dim=(2, 3))}[self.how]()
        return self.head(pooled)


@pytest.mark.parametrize("how", ["max-dim", "max-keepdim", "min", "amax", "adaptive1d", "adaptive2d", "amax2d"])
def test_global_max_pooling_is_frozen_to_its_winners_and_read_exactly(how):
    module = _trained_ish(GlobalMax(how))
    shape = (1, 8, 8) if how.endswith("2d") else (8, 8)
    x0 = np.random.default_rng(0).uniform(0, 1, size=shape)
    check_head_on_top(module, x0)  # was refused: "operation 'max' is not piecewise-linear"
    lin = linearise(module, x0)
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x.unsqueeze(0))[0], torch.as_tensor(x0))
    np.testing.assert_allclose(lin.jacobian, jacobian.reshape(10, -1).numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.output, module(torch.as_tensor(x0).unsqueeze(0))[0].detach().numpy(), atol=1e-12)
    # a margin between each winner and every value it was chosen from, beside the ReLUs' switches
    units = {"adaptive2d": 6 * 36, "amax2d": 6 * 36}.get(how, 12 * 8)
    assert lin.switch_values.shape[0] >= 2 * units and np.all(lin.switch_values[units:] >= 0)


class Slopes(nn.Module):
    """PReLU (one slope per channel, then one for all), a one-sided clamp and a hard sigmoid: the
    piecewise-linear activations of face-recognition and mobile networks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.act = nn.Conv2d(1, 4, 3), nn.PReLU(4, init=0.2)
        self.hidden, self.act2, self.head = nn.Linear(144, 32), nn.PReLU(init=-0.3), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act2(self.hidden(self.act(self.conv(x)).flatten(1)))
        return self.head(h.clamp_min(-0.2) + torch.clamp_max(h, 0.5) + nn.functional.hardsigmoid(h))


def test_prelu_one_sided_clamps_and_hard_sigmoid_are_frozen_and_read_exactly():
    module = _trained_ish(Slopes())
    x0 = np.random.default_rng(0).uniform(0, 1, size=(1, 8, 8))
    check_head_on_top(module, x0)  # was refused: not affine once frozen (prelu ran unfrozen)
    lin = linearise(module, x0)
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x.unsqueeze(0))[0], torch.as_tensor(x0))
    # (torch's hard sigmoid differentiates with 1/6 rounded to float32: 5e-9 off in float64)
    np.testing.assert_allclose(lin.jacobian, jacobian.reshape(10, -1).numpy(), atol=1e-7)
    # PReLU's 144 + 32 switches, the clamps' 32 + 32, the hard sigmoid's 2 x 32
    assert lin.switch_values.shape[0] == 144 + 32 * 5
    graph = _export(module, (1, 8, 8))  # (in float32: the module's weights are rounded to it)
    assert "PRelu" in {node.op_type for node in graph.graph.node}
    imported, module = import_onnx(graph).double(), module.double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(imported(x), module(x))
    # (the import writes a PReLU as relu(x) - slope relu(-x): each of its switches twice, one region)
    a, b = linearise(imported, x0), linearise(module, x0)
    np.testing.assert_allclose(a.jacobian, b.jacobian, atol=1e-7)  # ONNX keeps the hard sigmoid's 1/6 in float32


@pytest.mark.parametrize("shape,pool", [((1, 9, 9), nn.MaxPool2d(3, 2, ceil_mode=True)),
                                        ((1, 10, 10), nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
                                        ((1, 11, 8), nn.MaxPool2d((3, 2), (2, 3), ceil_mode=True)),
                                        ((4, 9), nn.MaxPool1d(3, 2, ceil_mode=True))],
                         ids=["squeezenet", "padded", "uneven", "1d"])
def test_max_pooling_with_ceil_mode_is_read_exactly(shape, pool):
    """SqueezeNet, GoogLeNet and Caffe ports pool with ``ceil_mode``: the last window runs past the end."""
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3, padding=1) if len(shape) == 3 else nn.Conv1d(4, 3, 3, padding=1)
    features = nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten()).double()
    width = features(torch.zeros(1, *shape, dtype=torch.float64)).shape[1]
    module = nn.Sequential(features, nn.Linear(width, 5)).double().eval()
    x0 = np.random.default_rng(0).uniform(0, 1, shape)
    check_head_on_top(module, x0)  # was refused: "max pooling with ceil_mode is not supported"
    lin = linearise(module, x0)
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x.unsqueeze(0))[0], torch.as_tensor(x0))
    np.testing.assert_allclose(lin.jacobian, jacobian.reshape(5, -1).numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.output, module(torch.as_tensor(x0).unsqueeze(0))[0].detach().numpy(), atol=1e-12)
    if len(shape) == 3:
        imported = import_onnx(_export(copy.deepcopy(module), shape)).double()
        x = torch.rand(3, *shape, dtype=torch.float64)
        torch.testing.assert_close(imported(x), module.float().double()(x))


@pytest.mark.parametrize("pool", [lambda f: torch.max(f, f.flip(-1)), lambda f: f.max(), lambda f: f.amax(dim=0),
                                  lambda f: nn.AdaptiveMaxPool1d(3)(f).flatten(1)],
                         ids=["element-wise", "everything", "over-the-batch", "uneven-windows"])
def test_maxima_the_analysis_cannot_freeze_are_refused(pool):
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return pool(torch.relu(self.conv(x))).reshape(len(x), -1)[:, :1]

    with pytest.raises(NotPiecewiseLinear):
        linearise(Pooled().double(), np.random.default_rng(0).uniform(0, 1, size=(8, 8)))


def _export(module: nn.Module, shape) -> onnx.ModelProto:
    buffer = io.BytesIO()
    torch.onnx.export(module.float(), (torch.zeros(1, *shape),), buffer, dynamo=False)
    return onnx.load_model_from_string(buffer.getvalue())


def test_onnx_import_reproduces_the_network_and_its_regions(classifier):
    imported = import_onnx(_export(copy.deepcopy(classifier.owner), (1, 8, 8))).double()
    reference = copy.deepcopy(classifier.owner).double()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(imported(x), reference(x))
    x0 = x[0].numpy()
    a, b = linearise(imported, x0), linearise(reference, x0)
    np.testing.assert_array_equal(a.pattern(), b.pattern())
    np.testing.assert_allclose(a.jacobian, b.jacobian, atol=1e-10)


def test_onnx_import_of_a_cnn_with_batchnorm_and_residual():
    module = _trained_ish(Residual()).float()
    imported = import_onnx(_export(module, (1, 8, 8))).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(imported(x), module.double()(x))


@pytest.mark.parametrize("how", ["max-dim", "min", "amax2d"])
def test_onnx_import_of_global_max_pooling(how):
    module = _trained_ish(GlobalMax(how)).float()
    shape = (1, 8, 8) if how.endswith("2d") else (8, 8)
    graph = _export(module, shape)
    assert {"ReduceMax", "ReduceMin"} & {node.op_type for node in graph.graph.node}
    imported = import_onnx(graph).double()
    x = torch.rand(3, *shape, dtype=torch.float64)
    torch.testing.assert_close(imported(x), module.double()(x))
    x0 = x[0].numpy()
    a, b = linearise(imported, x0), linearise(module, x0)
    np.testing.assert_array_equal(a.pattern(), b.pattern())
    np.testing.assert_allclose(a.jacobian, b.jacobian, atol=1e-10)


def test_onnx_import_of_a_global_max_pool_node():
    """``GlobalMaxPool`` (what Keras and TensorFlow converters write): the graph built by hand."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight, head = rng.normal(size=(4, 1, 3, 3)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalMaxPool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "h"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "global-max",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(head, "h")])
    imported = import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    conv = torch.relu(torch.nn.functional.conv2d(x, torch.as_tensor(weight, dtype=torch.float64)))
    torch.testing.assert_close(imported(x), conv.amax(dim=(2, 3)) @ torch.as_tensor(head, dtype=torch.float64).T)
    check_head_on_top(imported, x[0].numpy())


def test_onnx_import_refuses_unknown_operators():
    with pytest.raises(UnsupportedOperator, match="Gelu|Erf"):
        import_onnx(_export(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2)), (4,)))


@pytest.mark.parametrize("build_net", [
    lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)),
    lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10)),
    lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8))),
])
def test_onnx_chains_import_as_plain_sequentials(build_net):
    torch.manual_seed(0)
    net = build_net().eval()
    shape = (8,) if isinstance(net[0], nn.Linear) else (1, 8, 8)
    imported = import_onnx(_export(copy.deepcopy(net), shape))
    assert isinstance(imported, nn.Sequential)
    assert {type(m) for m in imported} <= {nn.Flatten, nn.Linear, nn.ReLU, nn.Conv2d, nn.MaxPool2d, nn.Sigmoid,
                                           nn.Unflatten}
    x = torch.rand(4, *shape)
    torch.testing.assert_close(imported(x), net(x))
