"""Residual networks: the attacks and obfuscations on a tiny ResNet, the zoo's files, the
white-box analysis, and the residual zoo's place in the full benchmark."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from equivalence import assert_same_function as same_function
from equivalence import outputs

from tafa.attacks import (ATTACKS, BATCHNORM_ATTACKS, STANDARD_ATTACKS, AttackContext, fold_batchnorm,
                          permute_units, rescale_units, structured_prune)
from tafa.bench.architectures import ResNet, build
from tafa.bench.datasets import load_task
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import load_model, save_model
from tafa.errors import InvalidParameter
from tafa.fingerprint import Fingerprint
from tafa.models.base import TorchModel
from tafa.relu.linearise import linearise
from tafa.scheme import get_scheme
from tafa.training import TrainingData


def with_batchnorm_statistics(net: nn.Module, seed: int) -> nn.Module:
    """``net`` in eval mode with non-trivial BatchNorm statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, _BatchNorm):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.3)
    return net.eval()


def tiny_resnet(seed: int = 0) -> ResNet:
    """Widths (4, 8), one block per stage (the second with a projection shortcut), max-pooled stem."""
    torch.manual_seed(seed)
    return with_batchnorm_statistics(ResNet((1, 8, 8), 10, (1, 1), (4, 8), stem="pooled"), seed)


def assert_same_function(original: nn.Module, copy_: nn.Module, x: torch.Tensor) -> None:
    same_function(original, copy_, x, tolerance=1e-5)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


X = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(5))


# --- BatchNorm folding ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batchnorm_folding_preserves_a_resnets_function(seed):
    owner = tiny_resnet(seed)
    before = snapshot(owner)
    folded = fold_batchnorm(owner)
    assert same_state(before, snapshot(owner))  # the owner is untouched
    assert batchnorms(owner) and not batchnorms(folded)  # stem, both blocks, the projection shortcut
    assert all(conv.bias is not None for conv in folded.modules() if isinstance(conv, nn.Conv2d))
    assert not torch.equal(folded.stem[0].weight, owner.stem[0].weight)
    assert_same_function(owner, folded, X)


def test_batchnorm_folding_of_a_sequential_folds_only_what_follows_a_layer_directly():
    torch.manual_seed(0)
    net = with_batchnorm_statistics(nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4),  # after the ReLU: not foldable
        nn.Flatten(), nn.Linear(4 * 6 * 6, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)), 0)
    folded = fold_batchnorm(net)
    assert [type(m).__name__ for m in folded] == ["Conv2d", "Identity", "ReLU", "Conv2d", "ReLU", "BatchNorm2d",
                                                  "Flatten", "Linear", "Identity", "ReLU", "Linear"]
    assert_same_function(net, folded, X)
    with pytest.raises(InvalidParameter, match="BatchNorm"):
        fold_batchnorm(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))


# --- channels within residual blocks ------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_channel_permutation_and_rescaling_within_blocks_preserve_the_function(seed):
    owner = tiny_resnet()
    permuted = permute_units(owner, seed=seed)
    assert_same_function(owner, permuted, X)
    assert_same_function(owner, rescale_units(owner, seed=seed), X)
    assert_same_function(owner, ATTACKS["permute_fold_bn"].apply(owner, AttackContext(_data(), seed=seed)), X)
    # the inner channels moved; the residual stream (stem, shortcuts, block outputs) did not
    block = owner.stages[1]
    moved = permuted.stages[1]
    assert not torch.equal(moved.conv1.weight, block.conv1.weight)
    assert torch.allclose(moved.conv1.weight.sum(0), block.conv1.weight.sum(0), atol=1e-6)
    assert torch.equal(permuted.stem[0].weight, owner.stem[0].weight)
    assert torch.equal(moved.shortcut[0].weight, block.shortcut[0].weight)
    assert torch.allclose(moved.conv2.weight.sum(1), block.conv2.weight.sum(1), atol=1e-6)


def test_structured_pruning_removes_a_quarter_of_each_blocks_inner_channels():
    owner = tiny_resnet()
    thin = structured_prune(owner, 0.25)
    assert [(b.conv1.out_channels, b.bn1.num_features, b.conv2.in_channels) for b in thin.stages] == [(3, 3, 3),
                                                                                                      (6, 6, 6)]
    assert [b.conv2.out_channels for b in thin.stages] == [4, 8]
    assert outputs(thin, X).shape == (32, 10)


# --- every attack, and the zoo's files ----------------------------------------------------------

def _data() -> TrainingData:
    split = load_task("digits").split("other")
    return TrainingData(split.x[:192], split.y[:192], "classify")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_runs_on_a_tiny_resnet_and_its_copy_survives_the_zoo_files(name, tmp_path):
    owner = tiny_resnet()
    context = AttackContext(_data(), seed=1, epochs=1)
    before = snapshot(owner)
    derived = ATTACKS[name].apply(owner, context)
    again = ATTACKS[name].apply(owner, context)
    assert same_state(before, snapshot(owner)) and not owner.training
    assert not derived.training and same_state(snapshot(derived), snapshot(again))
    assert not same_state(snapshot(derived), before)
    assert outputs(derived, X).shape == (32, 10)
    save_model(derived, tmp_path / "copy")
    assert torch.equal(outputs(load_model(tmp_path / "copy"), X), outputs(derived, X))


# --- the white-box analysis -------------------------------------------------------------------

def test_the_white_box_analysis_reads_a_resnets_local_affine_map_exactly():
    owner = tiny_resnet().double()
    x0 = np.random.default_rng(0).uniform(0, 1, (1, 8, 8))
    piece = linearise(owner, x0)
    jacobian = torch.autograd.functional.jacobian(lambda x: owner(x.unsqueeze(0))[0], torch.as_tensor(x0))
    assert piece.switch_values.size > 0  # ReLUs and max-pooling windows
    np.testing.assert_allclose(piece.jacobian, jacobian.reshape(10, -1).numpy(), atol=1e-9)
    np.testing.assert_allclose(piece.output, outputs(owner, torch.as_tensor(x0)[None])[0].numpy(), atol=1e-9)


def test_the_default_scheme_fingerprints_a_resnet_and_sees_through_its_obfuscations():
    owner = tiny_resnet()
    scheme = replace(get_scheme("tafa"), points=8)
    fingerprint = Fingerprint.create(TorchModel(owner, (1, 8, 8), name="owner"), "box:0,1", scheme=scheme, seed=0)
    assert fingerprint.probes.info["analysis"] == "white-box"  # region-centred: BatchNorm, additions, pooling read
    obfuscated = ATTACKS["permute_fold_bn"].apply(owner, AttackContext(_data(), seed=3))
    for model in (owner, obfuscated):
        assert fingerprint.compare(fingerprint.measure(TorchModel(model, (1, 8, 8)))).value > 0.999


# --- the zoo in the benchmark -------------------------------------------------------------------

def test_the_residual_zoo_is_in_the_full_benchmark():
    zoos = {spec.name: spec for spec in FULL}
    spec = zoos["mnist-resnet"]
    assert spec.scenario == "classification" and spec.task == "mnist"
    owner = build(spec.owner_arch, input_shape=(1, 28, 28), output_dim=10, seed=0)  # MNIST's shapes
    kinds = {type(m) for m in owner.modules()}
    assert isinstance(owner, ResNet) and {nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d} <= kinds
    assert set(spec.attacks) == set(STANDARD_ATTACKS) | set(BATCHNORM_ATTACKS)
    assert any(isinstance(build(arch, input_shape=(1, 28, 28), output_dim=10, seed=0), ResNet)
               for arch in spec.other_archs)  # independents of another width
    # the BatchNorm-only attacks stay out of the other zoos (their recipes, and cache, unchanged)
    assert all(not set(BATCHNORM_ATTACKS) & set(other.attacks) for other in FULL if other is not spec)
