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
