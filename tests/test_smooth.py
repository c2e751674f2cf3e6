"""Networks outside the ReLU family: the GELU MLP and the small transformer of the benchmark, the
attacks on them, their zoo files, and the black-box fallback of tafa's probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from equivalence import assert_same_function

from tafa.attacks import (RESCALING_ATTACKS, SMOOTH_ATTACKS, STANDARD_ATTACKS, AttackContext, get_attack,
                          permute_units, rescale_units, structured_prune)
from tafa.bench.architectures import EncoderBlock, Transformer, build
from tafa.bench.run import interface_rows
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import load_model, recipes, save_model
from tafa.errors import InvalidParameter
from tafa.fingerprint import Fingerprint
from tafa.models.base import TorchModel
from tafa.probes.base import Analysis
from tafa.training import TrainingData

SMOOTH = ("mlp_gelu", "mlp_gelu_wide", "transformer", "transformer_wide")


def _build(arch: str, seed: int = 0) -> nn.Module:
    return build(arch, input_shape=(1, 8, 8), output_dim=10, seed=seed).eval()


def _data(n: int = 64) -> TrainingData:
    generator = torch.Generator().manual_seed(0)
    return TrainingData(torch.rand(n, 1, 8, 8, generator=generator), torch.randint(0, 10, (n,), generator=generator),
                        "classify")


@pytest.mark.parametrize("arch", SMOOTH)
def test_smooth_networks_build_seeded_with_the_digits_shapes(arch):
    net, again, other = _build(arch), _build(arch), _build(arch, seed=1)
    assert net(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert any(isinstance(m, nn.GELU) for m in net.modules())
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    state, same, different = net.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(state[key], same[key]) for key in state)  # same seed, same weights
    assert not all(torch.equal(state[key], different[key]) for key in state)
    if arch.startswith("transformer"):
        assert isinstance(net, Transformer) and len(net.blocks) == 2 and net.position.weight.shape[0] == 16


def test_the_encoder_block_computes_what_torchs_pre_norm_encoder_layer_computes():
    torch.manual_seed(0)
    block = EncoderBlock(32, 4, 64).eval()
    reference = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True).eval()
    attention = block.attention
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(torch.cat([attention.q.weight, attention.k.weight,
                                                            attention.v.weight]))
        reference.self_attn.in_proj_bias.copy_(torch.cat([attention.q.bias, attention.k.bias, attention.v.bias]))
        reference.self_attn.out_proj.load_state_dict(attention.out.state_dict())
        for mine, theirs in ((block.fc1, reference.linear1), (block.fc2, reference.linear2),
                             (block.norm1, reference.norm1), (block.norm2, reference.norm2)):
            theirs.load_state_dict(mine.state_dict())
        x = torch.randn(5, 16, 32)
        assert torch.allclose(block(x), reference(x), atol=1e-5)


@pytest.mark.parametrize("arch", ("mlp_gelu", "transformer"))
def test_every_smooth_attack_applies_and_the_copies_round_trip_through_the_zoo_files(arch, tmp_path):
    owner = _build(arch)
    context = AttackContext(data=_data(), seed=1, epochs=1, student_factory=lambda seed: _build(arch, seed))
    x = torch.rand(8, 1, 8, 8)
    for name in SMOOTH_ATTACKS:
        copy_ = get_attack(name).apply(owner, context)
        save_model(copy_, tmp_path / name)
        back = load_model(tmp_path / name)
        assert torch.equal(back(x), copy_(x)), name
    # permuting hidden units is exact for any elementwise activation (the transformer: its feed-forward units)
    assert_same_function(owner, permute_units(owner, seed=3), x, tolerance=1e-5)
    thin = structured_prune(owner, 0.25)
    widths = [m.out_features for m in thin.modules() if isinstance(m, nn.Linear)]
    assert (96 in widths) if arch == "mlp_gelu" else (48 in widths)  # 128 or the feed-forward's 64, less a quarter
    # rescaling across GELU would change the function: the library refuses, and the zoos leave it out
    for name in RESCALING_ATTACKS:
        with pytest.raises(InvalidParameter, match="ReLU-like"):
            get_attack(name).apply(owner, context)
    with pytest.raises(InvalidParameter):
        rescale_units(owner)


def test_the_smooth_zoos_are_in_the_full_benchmark_without_the_rescaling_recipes():
    zoos = {spec.name: spec for spec in FULL}
    for name, owner in (("digits-mlp-gelu", "mlp_gelu"), ("digits-attention", "transformer")):
        spec = zoos[name]
        assert spec.owner_arch == owner and spec.scenario == "classification" and spec.domain == "box:0,1"
        assert set(spec.attacks) == set(STANDARD_ATTACKS) - set(RESCALING_ATTACKS) == set(SMOOTH_ATTACKS)
        assert not set(RESCALING_ATTACKS) & {*spec.training_positives, *spec.free_positives}
        assert "permute" in spec.training_positives and "permute" in spec.free_positives  # permute_rescale's part
        assert not interface_rows(spec)
        assert {r.attack for r in recipes(spec) if r.attack} <= set(SMOOTH_ATTACKS)
    # the other zoos keep every recipe (their references, and cache, unchanged)
    assert all(set(RESCALING_ATTACKS) <= set(spec.attacks) and "permute_rescale" in spec.training_positives
               for spec in FULL if spec.name not in ("digits-mlp-gelu", "digits-attention"))


@pytest.mark.parametrize("arch,operation", (("transformer", "layer_norm"), ("mlp_gelu", "gelu")))
def test_a_smooth_owner_is_fingerprinted_black_box_with_a_notice(arch, operation):
    owner = TorchModel(_build(arch), (1, 8, 8), name="owner")
    fingerprint = Fingerprint.create(owner, "box:0,1", seed=0, second_stage=False)
    assert fingerprint.probes.analysis is Analysis.BLACK_BOX
    assert operation in fingerprint.probes.info["analysis"] and fingerprint.second is None
    notes = fingerprint.verify(TorchModel(_build(arch, seed=1), (1, 8, 8))).notes
    assert any(note.startswith("fingerprint made black-box") for note in notes)
    assert np.isfinite(fingerprint.compare(fingerprint.measure(owner)).value)


def test_the_default_scheme_records_why_a_transformer_gets_no_second_stage():
    owner = TorchModel(_build("transformer"), (1, 8, 8), name="owner")
    fingerprint = Fingerprint.create(owner, "box:0,1", seed=0)  # the default scheme, second stage where it applies
    assert fingerprint.second is None and fingerprint.probes.analysis is Analysis.BLACK_BOX
    assert "white-box" in fingerprint.meta["second_stage"]["why"]
    with pytest.raises(InvalidParameter, match="No second stage"):
        Fingerprint.create(owner, "box:0,1", seed=0, second_stage=True)


def test_an_outputs_only_scheme_on_a_smooth_owner_needs_no_linearity_ladder():
    from tafa.scheme import get_scheme

    owner = TorchModel(_build("mlp_gelu"), (1, 8, 8), name="owner")
    fingerprint = Fingerprint.create(owner, "box:0,1", scheme=get_scheme("tafa-extract"), seed=0)  # no directions
    assert fingerprint.probes.analysis is Analysis.BLACK_BOX and fingerprint.queries() == 64
    assert fingerprint.compare(fingerprint.measure(owner)).value == pytest.approx(1.0)
