"""The attack library on real small models: what each attack promises, and the registry."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from equivalence import assert_same_function, outputs

from tafa.attacks import (ATTACKS, FAMILIES, STANDARD_ATTACKS, Attack, AttackContext, add_weight_noise, combine,
                          distill, finetune, get_attack, magnitude_prune, mlp_student, permute_units, quantize,
                          register_attack, reinitialised, rescale_units, structured_prune, to_float16)
from tafa.bench.architectures import build
from tafa.bench.datasets import load_task
from tafa.errors import InvalidParameter
from tafa.training import TrainingData, accuracy, fit

INPUTS = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "lenet": (1, 28, 28), "decoder": (8,)}
OUTPUTS = {"mlp": 10, "cnn": 10, "lenet": 10, "decoder": 64}


def fresh(name: str, seed: int = 0) -> nn.Sequential:
    if name == "generic":
        return generic_net(seed)
    return build(name, input_shape=INPUTS.get(name, (1, 8, 8)), output_dim=OUTPUTS[name], seed=seed)


def generic_net(seed: int) -> nn.Sequential:
    """Every module kind the unit-level attacks must carry units through: BatchNorm before
    and after ReLU, average and max pooling, Dropout, LeakyReLU, Unflatten into a transposed
    convolution, a Tanh, and nested Sequentials; with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8), nn.MaxPool2d(2)),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 24), nn.BatchNorm1d(24), nn.LeakyReLU(0.1), nn.Dropout(0.1),
        nn.Linear(24, 4 * 2 * 2), nn.ReLU(), nn.Unflatten(1, (4, 2, 2)),
        nn.ConvTranspose2d(4, 5, 2, stride=2), nn.Tanh(), nn.Conv2d(5, 3, 3),
        nn.Flatten(), nn.Linear(3 * 2 * 2, 10))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.3)
    return net.eval()


def sample(name: str, n: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = INPUTS.get(name, (1, 8, 8))
    if name == "decoder":
        return torch.randn(n, *shape, generator=generator)
    return torch.rand(n, *shape, generator=generator)


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def digits():
    task = load_task("digits")
    return task.split("owner"), task.split("other")


@pytest.fixture(scope="module")
def owner(digits):
    """An MLP classifier trained on the owner's half of digits (about 1 s)."""
    own, _ = digits
    model = fit(fresh("mlp"), own, epochs=20, lr=1e-3, seed=0)
    assert accuracy(model, digits[1]) > 0.9
    return model


# --- pruning -------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_magnitude_pruning_zeroes_the_stated_fraction_of_each_layer(owner, fraction):
    before = snapshot(owner)
    pruned = magnitude_prune(owner, fraction)
    for original, weight in zip(weights(owner), weights(pruned)):
        zeros = weight == 0
        assert int(zeros.sum()) == round(fraction * weight.numel())
        # the zeroed weights are the smallest ones; the others are untouched
        assert original[zeros].abs().max() <= original[~zeros].abs().min()
        assert torch.equal(weight[~zeros], original[~zeros])
    assert torch.equal(pruned[1].bias, owner[1].bias)
    assert same_state(before, snapshot(owner))


def test_global_magnitude_pruning_ranks_all_weights_together(owner):
    pruned = magnitude_prune(owner, 0.5, scope="global")
    total = sum(w.numel() for w in weights(pruned))
    assert sum(int((w == 0).sum()) for w in weights(pruned)) == round(0.5 * total)
    per_layer = [float((w == 0).float().mean()) for w in weights(pruned)]
    assert max(per_layer) - min(per_layer) > 0.05  # not the per-layer split


def test_fine_tuning_a_pruned_model_keeps_its_zeros(owner, digits):
    pruned = magnitude_prune(owner, 0.5)
    tuned = finetune(pruned, digits[1], lr=1e-3, keep_zeros=True, epochs=3, seed=0)
    for before, after in zip(weights(pruned), weights(tuned)):
        assert torch.equal(after == 0, before == 0)
        assert not torch.equal(after, before)
    registered = get_attack("prune80_ft").apply(owner, AttackContext(digits[1], seed=0, epochs=2))
    for weight in weights(registered):
        assert int((weight == 0).sum()) >= round(0.8 * weight.numel())


@pytest.mark.parametrize("name", ["mlp", "cnn", "lenet", "decoder"])
def test_structured_pruning_removes_the_weakest_quarter_of_units(name):
    model = fresh(name)
    thin = structured_prune(model, 0.25)
    layers, thin_layers = weights(model), weights(thin)
    for layer, thin_layer in zip(layers[:-1], thin_layers[:-1]):
        units = layer.shape[0]
        assert thin_layer.shape[0] == units - int(0.25 * units + 0.5)
    assert thin_layers[-1].shape[0] == layers[-1].shape[0]
    # the shrunk network computes what the original computes with the weakest units silenced
    silenced = copy.deepcopy(model)
    for layer in [m for m in silenced.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][:-1]:
        norms = layer.weight.detach().abs().reshape(layer.weight.shape[0], -1).sum(dim=1)
        removed = torch.argsort(norms)[:int(0.25 * len(norms) + 0.5)]
        layer.register_forward_hook(lambda module, args, out, removed=removed: out.index_fill(1, removed, 0.0))
    x = sample(name)
    assert_same_function(silenced, thin, x)
    assert not torch.allclose(outputs(model, x), outputs(thin, x))


def test_structured_pruning_carries_units_through_batchnorm_flatten_and_unflatten():
    model = generic_net(0)
    thin = structured_prune(model, 0.25)
    assert [w.shape[0] for w in weights(thin)[:-1]] == [4, 6, 18, 12, 3, 2]
    assert thin[10].weight.shape[:2] == (3, 4)  # ConvTranspose2d: (in, out, ...)
    assert thin[9].unflattened_size == (3, 2, 2)
    assert thin[0][1].running_mean.shape == (4,) and thin[4].num_features == 18
    x = sample("generic")
    assert outputs(thin, x).shape == outputs(model, x).shape == (64, 10)


# --- obfuscation ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn", "lenet", "decoder", "generic"])
def test_permutation_and_rescaling_preserve_the_function(name):
    model = fresh(name)
    before = snapshot(model)
    x = sample(name)
    permuted, rescaled = permute_units(model, seed=1), rescale_units(model, seed=2)
    both = rescale_units(permute_units(model, seed=3), seed=4)
    for obfuscated in (permuted, rescaled, both):
        assert_same_function(model, obfuscated, x)
        assert not same_state(snapshot(obfuscated), before)
    assert not torch.equal(weights(permuted)[0], weights(model)[0])
    # a permutation only reorders the first layer's units
    first, moved = weights(model)[0].reshape(len(weights(model)[0]), -1), weights(permuted)[0]
    assert torch.equal(torch.sort(first, dim=0).values, torch.sort(moved.reshape(first.shape), dim=0).values)
    assert same_state(before, snapshot(model))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), name=st.sampled_from(["cnn", "generic"]))
def test_any_seed_of_permute_and_rescale_preserves_the_function(seed, name):
    model = fresh(name, seed=seed % 7)
    obfuscated = rescale_units(permute_units(model, seed=seed), seed=seed + 1, max_factor=4.0)
    assert_same_function(model, obfuscated, sample(name, seed=seed))


def test_rescaling_never_crosses_a_non_homogeneous_activation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Sigmoid(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 2))
    rescaled = rescale_units(model, seed=0)
    assert torch.equal(rescaled[0].weight, model[0].weight)
    assert not torch.equal(rescaled[2].weight, model[2].weight)
    assert_same_function(model, rescaled, torch.randn(32, 5))
    with pytest.raises(InvalidParameter, match="rescale_units"):
        rescale_units(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2)))


def test_unit_level_attacks_refuse_what_they_cannot_walk():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    for attack in (permute_units, rescale_units, structured_prune):
        with pytest.raises(InvalidParameter, match="nn.Sequential"):
            attack(Custom())


# --- quantization and noise ----------------------------------------------------------------

@pytest.mark.parametrize("bits, levels", [(8, 256), (4, 16)])
def test_integer_quantization_leaves_few_levels_per_tensor(owner, bits, levels):
    rounded = quantize(owner, bits)
    for original, weight in zip(weights(owner), weights(rounded)):
        assert weight.dtype == torch.float32
        assert 0.5 * levels < len(torch.unique(weight)) <= levels
        step = original.abs().max() / (2 ** (bits - 1) - 1)
        assert (weight - original).abs().max() <= step / 2 + 1e-7
    assert torch.equal(rounded[-1].bias, owner[-1].bias)
    with_biases = quantize(owner, bits, biases=True)
    assert len(torch.unique(with_biases[1].bias)) <= levels
    assert not torch.equal(with_biases[1].bias, owner[1].bias)


def test_float16_round_trip_is_exactly_representable(owner):
    rounded = to_float16(owner)
    changed = False
    for tensor, original in zip(rounded.parameters(), owner.parameters()):
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor.half().float(), tensor)
        changed |= not torch.equal(tensor, original)
    assert changed


@pytest.mark.parametrize("scale", [0.01, 0.05, 0.1])
def test_weight_noise_has_the_stated_relative_scale(owner, scale):
    noisy = add_weight_noise(owner, scale, seed=3)
    for original, weight in zip(weights(owner), weights(noisy)):
        relative = (weight - original).detach().std() / original.detach().std()
        assert abs(float(relative) / scale - 1) < 0.15
    assert torch.equal(noisy[1].bias, owner[1].bias)
    assert same_state(snapshot(noisy), snapshot(add_weight_noise(owner, scale, seed=3)))
    assert not torch.equal(weights(noisy)[0], weights(add_weight_noise(owner, scale, seed=4))[0])


# --- fine-tuning and distillation ----------------------------------------------------------

@pytest.mark.parametrize("layers, reinitialise", [("last", False), ("all", False), ("last", True), ("all", True)])
def test_fine_tuning_moves_the_asked_layers_and_keeps_accuracy(owner, digits, layers, reinitialise):
    own, other = digits
    tuned = finetune(owner, other, lr=1e-3, layers=layers, reinitialise_last=reinitialise, epochs=10, seed=0)
    moved = [not torch.equal(a, b) for a, b in zip(weights(owner), weights(tuned))]
    assert moved == ([False, False, True] if layers == "last" else [True, True, True])
    if layers == "last":
        assert same_state({k: v for k, v in snapshot(owner).items() if not k.startswith("5.")},
                          {k: v for k, v in snapshot(tuned).items() if not k.startswith("5.")})
    assert accuracy(tuned, own) > 0.85
    assert not tuned.training


def test_last_layer_fine_tuning_leaves_batchnorm_statistics_alone():
    model = generic_net(0)
    x = torch.rand(128, 1, 8, 8)
    data = TrainingData(x, outputs(model, x).argmax(dim=1), "classify")
    tuned = finetune(model, data, lr=1e-2, layers="last", epochs=2, seed=0)
    changed = [k for k in snapshot(model) if not torch.equal(snapshot(model)[k], snapshot(tuned)[k])]
    assert changed and all(k.startswith("14.") for k in changed if "num_batches" not in k)


def test_fine_tuning_a_regressor_and_a_decoder():
    task = load_task("diabetes")
    own, other = task.split("owner"), task.split("other")
    regressor = fit(build("mlp", input_shape=(10,), output_dim=1, seed=0), own, epochs=30, lr=1e-3, seed=0)
    tuned = finetune(regressor, other, lr=1e-3, epochs=10, seed=0)
    assert accuracy(tuned, own) > 0.2
    decoder = fresh("decoder")
    images = TrainingData(load_task("digits").split("other").x[:256], None, "vae")
    tuned_decoder = finetune(decoder, images, lr=1e-3, layers="last", reinitialise_last=True, epochs=1, seed=0)
    assert not torch.equal(weights(tuned_decoder)[-1], weights(decoder)[-1])
    assert torch.equal(weights(tuned_decoder)[0], weights(decoder)[0])


@pytest.mark.parametrize("same", [True, False])
def test_distilled_students_agree_with_the_teacher(owner, digits, same):
    own, other = digits
    student = reinitialised(owner, seed=5) if same else mlp_student((1, 8, 8), (10,), seed=5)
    untouched = snapshot(student)
    distilled = distill(owner, student, other.x, epochs=30, lr=1e-3, seed=0)
    agreement = (outputs(distilled, own.x).argmax(1) == outputs(owner, own.x).argmax(1)).float().mean()
    assert agreement > 0.9
    assert same_state(untouched, snapshot(student))
    assert not any(torch.equal(a, b) for a, b in zip(weights(owner), weights(distilled)) if a.shape == b.shape)


# --- the registry --------------------------------------------------------------------------

STANDARD = {
    "finetune": [f"ft_{form}_{lr}" for form in ("last", "all", "reinit_last", "reinit_all")
                 for lr in ("small", "large")],
    "pruning": ["prune20", "prune20_ft", "prune50", "prune50_ft", "prune80", "prune80_ft", "struct25", "struct25_ft"],
    "quantization": ["fp16", "int8", "int4"],
    "noise": ["noise1", "noise5", "noise10"],
    "obfuscation": ["permute", "rescale", "permute_rescale"],
    "combination": ["prune50_ft_int8"],
    "extraction": ["distill_same", "distill_other"],
}


def test_the_standard_recipes_are_registered_by_family():
    assert set(FAMILIES) == set(STANDARD)
    for family, names in STANDARD.items():
        for name in names:
            assert get_attack(name).family == family


@pytest.mark.parametrize("name", sorted(STANDARD_ATTACKS))  # the BatchNorm ones: tests/test_residual.py
def test_every_attack_is_a_deterministic_pure_function(owner, digits, name):
    context = AttackContext(data=digits[1], seed=1, epochs=3)
    before = snapshot(owner)
    derived = ATTACKS[name].apply(owner, context)
    again = ATTACKS[name].apply(owner, context)
    assert same_state(before, snapshot(owner)) and not owner.training
    assert derived is not owner and not derived.training
    assert same_state(snapshot(derived), snapshot(again))
    x = digits[0].x[:50]
    assert outputs(derived, x).shape == outputs(owner, x).shape
    assert not same_state(snapshot(derived), before)


@pytest.mark.parametrize("name", sorted(STANDARD_ATTACKS))
def test_every_attack_runs_on_a_decoder_with_vae_data(name):
    decoder = fresh("decoder")  # in train mode, as built: an attack must leave the mode alone too
    before = snapshot(decoder)
    context = AttackContext(TrainingData(load_task("digits").split("other").x[:128], None, "vae"), epochs=1)
    derived = ATTACKS[name].apply(decoder, context)
    assert decoder.training and same_state(before, snapshot(decoder))
    assert outputs(derived, sample("decoder", n=16)).shape == (16, 1, 8, 8)


def test_seeds_change_what_seeded_attacks_do(owner, digits):
    for name in ("ft_all_small", "noise5", "permute", "rescale", "distill_same"):
        first = ATTACKS[name].apply(owner, AttackContext(digits[1], seed=0, epochs=1))
        second = ATTACKS[name].apply(owner, AttackContext(digits[1], seed=1, epochs=1))
        assert not same_state(snapshot(first), snapshot(second)), name


def test_distillation_uses_the_student_factory_and_copies_labelled_by_the_owner(owner, digits):
    x = digits[1].x[:300]
    labelled = TrainingData(x, outputs(owner, x), "match")
    context = AttackContext(labelled, seed=0, epochs=5,
                            student_factory=lambda seed: mlp_student((1, 8, 8), (10,), seed=seed, hidden=(32,)))
    student = get_attack("distill_other").apply(owner, context)
    assert [w.shape[0] for w in weights(student)] == [32, 10]
    assert outputs(get_attack("ft_all_small").apply(owner, context), x).shape == (300, 10)


def test_a_distillation_trains_for_its_own_epochs_where_given(owner, digits):
    """``distill_epochs`` is a student's budget alone: the fine-tuning budget ``epochs`` does not cut it."""
    context = AttackContext(digits[1], seed=0, epochs=1, distill_epochs=3)
    distilled = get_attack("distill_same").apply(owner, context)
    assert same_state(snapshot(distilled), snapshot(get_attack("distill_same").apply(
        owner, AttackContext(digits[1], seed=0, epochs=3))))
    assert not same_state(snapshot(distilled), snapshot(get_attack("distill_same").apply(
        owner, AttackContext(digits[1], seed=0, epochs=1))))
    tuned = get_attack("ft_all_small").apply(owner, context)  # fine-tuning keeps ``epochs``
    assert same_state(snapshot(tuned), snapshot(get_attack("ft_all_small").apply(
        owner, AttackContext(digits[1], seed=0, epochs=1))))
    with pytest.raises(InvalidParameter, match="distill_epochs"):
        AttackContext(digits[1], distill_epochs=-1)


def test_registering_and_combining_attacks():
    halve = Attack("halve_test", "noise", lambda model, context: quantize(model, 2))
    assert register_attack(halve) is halve
    try:
        with pytest.raises(InvalidParameter, match="attack.name"):
            register_attack(halve)
        register_attack(halve, replace=True)
        combo = combine("int8_then_halve", "int8", halve)
        assert combo.family == "combination" and combo.description == "int8 then halve_test"
        model = build("mlp", input_shape=(4,), output_dim=2, seed=0)
        context = AttackContext(TrainingData(torch.zeros(4, 4), torch.zeros(4, dtype=torch.long), "classify"))
        assert len(torch.unique(combo.apply(model, context)[1].weight)) <= 3
    finally:
        ATTACKS.pop("halve_test")
    with pytest.raises(InvalidParameter, match="one of"):
        register_attack(Attack("x", "theft", lambda model, context: model))
    with pytest.raises(InvalidParameter, match="'name' parameter of get_attack"):
        get_attack("no_such_attack")


@pytest.mark.parametrize("call, parameter", [
    (lambda m: magnitude_prune(m, 1.5), "fraction"),
    (lambda m: structured_prune(m, 1.0), "fraction"),
    (lambda m: quantize(m, 1), "bits"),
    (lambda m: add_weight_noise(m, -0.1), "scale"),
    (lambda m: rescale_units(m, max_factor=0.5), "max_factor"),
    (lambda m: finetune(m, None, lr=1e-3), "data"),
    (lambda m: finetune(m, load_task("digits").split("other"), lr=0), "lr"),
    (lambda m: get_attack("int8").apply(m, None), "context"),
])
def test_bad_parameters_are_named(call, parameter):
    with pytest.raises(InvalidParameter, match=f"'{parameter}' parameter"):
        call(build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0))


# --- data-free references (made by the owner from its model and domain alone) ----------------

_TRAINED = ("ft_all_small", "ft_all_large", "ft_last_large", "ft_reinit_last_small", "prune50_ft")


@pytest.mark.parametrize("kind_name", ["classifier", "regressor", "generator"])
def test_data_free_fine_tunes_move_away_from_the_owner_and_keep_its_job(kind_name, request):
    from tafa.attacks.references import data_free_references
    from tafa.domain import parse_domain

    kind = request.getfixturevalue(kind_name)
    domain = parse_domain(kind.domain, kind.input_shape)
    refs = data_free_references(kind.owner, domain, seed=0, n_synthetic=500, lookalikes=1, epochs=2,
                                positives=("int8", *_TRAINED))
    records = {r["name"]: r for r in refs.provenance}
    assert set(records) == {*refs.positive_names, *refs.negative_names}
    x = torch.as_tensor(domain.sample(64, 5), dtype=torch.float32)
    for name, model in zip(refs.positive_names, refs.positives):
        if name.split()[-1] not in _TRAINED:
            continue
        # a "fine-tuned" reference that equals the owner (zero gradient) fails here
        change = records[name]["relative_weight_change"]
        assert change is not None and change > 1e-3, (name, records[name])
        assert not torch.allclose(outputs(model, x), outputs(kind.owner, x), atol=1e-5), name
    # the large learning rate moves all layers further than the small one
    assert records["data-free ft_all_large"]["relative_weight_change"] > \
        records["data-free ft_all_small"]["relative_weight_change"]
    # still a working copy of the owner on its synthetic inputs (utility 1 = identical answers)
    assert records["data-free int8"]["utility"] > 0.9
    assert records["data-free ft_all_small"]["utility"] > 0.5, records


def test_synthetic_targets_are_not_the_owners_outputs(classifier, regressor):
    from tafa.attacks.references import LABEL_FLIP, synthetic_data
    from tafa.domain import parse_domain

    data = synthetic_data(classifier.owner, parse_domain("box:0,1", (1, 8, 8)), 1000, seed=3)
    labels = outputs(classifier.owner, data.x).argmax(dim=1)
    assert data.objective == "classify"
    flipped = float((data.y != labels).double().mean())
    assert abs(flipped - LABEL_FLIP) < 0.05, flipped  # the runner-up class, never the owner's answer
    data = synthetic_data(regressor.owner, parse_domain("box:-2,2", (10,)), 1000, seed=3)
    answers = outputs(regressor.owner, data.x)
    assert data.objective == "match" and not torch.allclose(data.y, answers)
    again = synthetic_data(regressor.owner, parse_domain("box:-2,2", (10,)), 1000, seed=3)
    assert torch.equal(again.y, data.y)  # seeded


def test_the_fingerprint_records_how_its_data_free_references_moved(regressor, tmp_path):
    from tafa import Fingerprint
    from tafa.attacks.references import data_free_references
    from tafa.domain import parse_domain

    domain = parse_domain(regressor.domain, regressor.input_shape)
    refs = data_free_references(regressor.owner, domain, seed=0, n_synthetic=300, lookalikes=2, epochs=2,
                                positives=("int8", "ft_all_small"))
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape,
                                     scheme="tafa-free", seed=0, references=refs)
    recorded = fingerprint.describe()["references"]
    assert [r["name"] for r in recorded] == ["data-free int8", "data-free ft_all_small", "look-alike 0",
                                             "look-alike 1"]
    assert all(r["relative_weight_change"] > 0 for r in recorded if "ft_" in r["name"])
    assert Fingerprint.load(fingerprint.save(tmp_path / "free.tafa")).describe()["references"] == recorded
