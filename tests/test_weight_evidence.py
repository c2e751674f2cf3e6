"""Weight evidence (tafa.weights): real small models, obfuscated and pruned copies, independent
models, other architectures, hostile weights, and the command line's --white-box."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
from safetensors.torch import save_file

from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.attacks.obfuscation import permute_units, rescale_units
from tafa.bench.architectures import build
from tafa.cli import main
from tafa.errors import ModelLoadError
from tafa.weights import compare, unit_layers
from tafa.weights.evidence import increasing_run, order_p_value


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_order_bound_is_a_valid_tail():
    # the bound C(m, k) / k! never falls below the exact chance for a small m (all 6! orders)
    import itertools

    runs = [increasing_run(list(order)) for order in itertools.permutations(range(6))]
    for k in range(1, 7):
        exact = sum(run >= k for run in runs) / len(runs)
        assert order_p_value(k, 6) >= exact * (1 - 1e-9)


def test_a_pruned_copy_has_a_tiny_exact_p_and_an_independent_model_does_not(classifier):
    owner = unit_layers(classifier.owner)
    pruned = compare(owner, unit_layers(magnitude_prune(classifier.owner, 0.8)))
    independent = compare(owner, unit_layers(classifier.independent))
    assert pruned.applicable and pruned.p_value < 1e-6
    assert independent.applicable and independent.p_value > 0.01


def test_a_permuted_rescaled_copy_aligns_exactly_and_stands_out_of_the_references(classifier):
    owner = unit_layers(classifier.owner)
    disguised = permute_units(rescale_units(classifier.owner, seed=3), seed=4)
    found = compare(owner, unit_layers(disguised))
    assert found.applicable and found.cosine > 0.999 and found.layers[1].cosine > 0.999
    references = [compare(owner, unit_layers(model)).statistic for model in classifier.references]
    references = [statistic for statistic in references if statistic is not None]  # CNN references: not applicable
    found.with_references(references)
    assert len(references) >= 10 and found.reference_p_value == pytest.approx(1 / (len(references) + 1))
    assert found.reference_moment_p is not None and found.reference_moment_p < 0.01
    independent = compare(owner, unit_layers(classifier.independent)).with_references(references)
    assert independent.reference_moment_p is not None and independent.reference_moment_p > 0.01


def test_another_architecture_is_not_applicable(classifier):
    cnn = build("cnn", input_shape=(1, 8, 8), output_dim=10, seed=0)
    found = compare(unit_layers(classifier.owner), unit_layers(cnn))
    assert not found.applicable and "another architecture" in found.reason and found.p_value is None


def test_a_resnet_first_convolution_and_its_batchnorm_are_compared():
    net = build("resnet18", input_shape=(3, 32, 32), output_dim=10, seed=0).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    layers = unit_layers(net)
    assert layers[0].kind == "conv" and layers[0].units == 64
    other = build("resnet18", input_shape=(3, 32, 32), output_dim=10, seed=1).eval()
    assert compare(layers, layers).p_value < 1e-6
    assert compare(layers, unit_layers(other)).p_value > 0.01


def test_nan_weights_are_refused_in_one_line(classifier):
    broken = build("mlp", input_shape=(1, 8, 8), output_dim=10, seed=0)
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(ModelLoadError, match="NaN or infinite weights"):
        unit_layers(broken)


def test_the_fingerprint_keeps_checked_owner_layers(classifier):
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2,
                                     weights=True)
    again = Fingerprint.from_bytes(fingerprint.to_bytes())
    shapes = [layer.vectors.shape for layer in fingerprint.owner_layers]
    assert shapes and [layer.vectors.shape for layer in again.owner_layers] == shapes
    assert again.weight_evidence(magnitude_prune(classifier.owner, 0.5)).p_value < 1e-6
    lean = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2)
    assert not lean.owner_layers and not lean.weight_evidence(classifier.owner).applicable
    assert lean.probe_sha256 == fingerprint.probe_sha256  # the commitment's reproducible hash ignores them


def _fingerprint_with_weights(classifier, tmp_path):
    """The classifier saved as safetensors beside a factory file, fingerprinted by the command
    line with ``--white-box keep``: (the factory file, the fingerprint's path)."""
    owner = tmp_path / "owner.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.owner.state_dict().items()}, str(owner))
    factory = tmp_path / "net.py"
    factory.write_text("from tafa.bench.architectures import build\n"
                       "def net():\n    return build('mlp', input_shape=(1, 8, 8), output_dim=10, seed=0)\n")
    out = tmp_path / "owner.tafa"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--quiet", "fingerprint", f"{factory}:net", "--weights", str(owner), "--input-shape", "1,8,8",
                     "--domain", "box:0,1", "--out", str(out), "--probes", "8", "--directions", "2",
                     "--white-box", "keep"]) == 0
    return factory, out


def test_cli_verify_reports_weights_on_their_own_line_and_off_computes_nothing(classifier, tmp_path, capsys):
    copy = tmp_path / "copy.safetensors"
    pruned = magnitude_prune(classifier.owner, 0.5)
    save_file({k: v.contiguous() for k, v in pruned.state_dict().items()}, str(copy))
    factory, out = _fingerprint_with_weights(classifier, tmp_path)
    common = ["verify", str(out), str(copy), "--factory", f"{factory}:net", "--input-shape", "1,8,8"]
    code, text, _ = _run(capsys, *common)
    assert code == 0 and "weights: p = " in text and "first-layer units matched" in text
    code, text, _ = _run(capsys, *common, "--json")
    weights = json.loads(text)["weights"]
    assert code == 0 and weights["applicable"] and weights["p_value"] < 1e-6
    code, text, _ = _run(capsys, *common, "--json", "--white-box", "off")
    assert code == 0 and json.loads(text)["weights"] is None
    code, text, _ = _run(capsys, *common, "--white-box", "off")
    assert "weights:" not in text
    with pytest.raises(SystemExit) as refused:
        main(["--quiet", *common, "--white-box", "maybe"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and "--white-box" in err


def test_cli_hostile_suspect_files_give_one_line(classifier, tmp_path, capsys):
    factory, out = _fingerprint_with_weights(classifier, tmp_path)
    state = {k: v.clone().contiguous() for k, v in classifier.owner.state_dict().items()}
    state["1.weight"][3, 5] = float("nan")
    poisoned = tmp_path / "nan.safetensors"
    save_file(state, str(poisoned))
    huge = tmp_path / "huge.safetensors"
    header = json.dumps({"1.weight": {"dtype": "F32", "shape": [1 << 40, 1 << 20], "data_offsets": [0, 16]}}).encode()
    huge.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))
    for suspect in (poisoned, huge):
        code, text, err = _run(capsys, "verify", str(out), str(suspect), "--factory", f"{factory}:net",
                               "--input-shape", "1,8,8")
        assert code == 2 and text == "" and err.count("\n") == 1 and str(suspect.name) in err


def test_a_fingerprint_whose_owner_layers_do_not_fit_their_description_is_refused(classifier, tmp_path, capsys):
    from tafa.fingerprint_file import decode, encode

    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2,
                                     weights=True)
    header, arrays = decode(fingerprint.to_bytes(), source="test")
    header.pop("content_sha256")
    header["meta"]["weight_layers"][0]["units"] = 7  # the array holds 128
    forged = tmp_path / "forged.tafa"
    forged.write_bytes(encode(header, arrays))
    code, _, err = _run(capsys, "info", str(forged))
    assert code == 2 and err.count("\n") == 1 and "owner weight layer 0" in err


def test_an_onnx_suspect_file_is_read_through_the_safe_loader(classifier, tmp_path):
    from tafa.models import open_model

    path = tmp_path / "copy.onnx"
    torch.onnx.export(magnitude_prune(classifier.owner, 0.5), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2,
                                     weights=True)
    suspect = open_model(path)
    try:
        found = fingerprint.weight_evidence(suspect)
    finally:
        suspect.close()
    assert found.applicable and found.p_value < 1e-6 and found.layers[0].matched == 128


@pytest.mark.parametrize("shape", [(6, 6), (7, 12), (12, 7), (64, 64), (100, 128)])
def test_the_assignment_solver_finds_what_scipy_finds(shape):
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    from tafa.weights.align import assignment

    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        scores = rng.normal(size=shape)
        rows, cols = assignment(scores)
        expected = linear_sum_assignment(scores, maximize=True)
        assert len(set(cols.tolist())) == len(cols) == min(shape) and list(rows) == sorted(rows)
        assert scores[rows, cols].sum() == pytest.approx(scores[expected].sum(), rel=1e-12)


# -- the weight test as a stage of the decision (issue 22, item 5) ---------------------------------

def test_the_weight_stage_takes_only_the_alpha_the_rank_bounds_leave():
    from tafa.decide.rule import EXACT_SHARE, Rule

    scores = [0.01 * i for i in range(20)]  # 20 references at 0.05: rank bound 1/21, slack 0.05 - 1/21
    rule = Rule.calibrate([scores], ["tafa"], 0.05).with_exact("weights")
    assert rule.names == ["tafa", "weights"] and rule.bound <= 0.05 + 1e-12
    assert rule.stages[1].alpha_requested == pytest.approx(0.05 - 1 / 21)
    assert rule.decide([0.0, 3.0]).value == "derived" and rule.decide([0.0, 1.0]).value == "independent"
    assert rule.p_value([0.0, 300.0]) < 1e-290
    exact_fit = Rule.calibrate([scores[:19]], ["tafa"], 0.05)  # 19 references: 1/20 = 0.05, no slack
    assert exact_fit.with_exact("weights").names == ["tafa"]
    assert "no share of alpha" in exact_fit.with_exact("weights").notes[-1]
    roomy = Rule.calibrate([[0.01 * i for i in range(40)]] * 2, ["a", "b"], 0.05).with_exact("weights")
    assert roomy.bound <= 0.05 + 1e-12 and roomy.fractions[2] > EXACT_SHARE
    assert roomy.at(0.1).bound <= 0.1 + 1e-12 and roomy.at(0.1).names == roomy.names


def test_verify_decides_with_the_weight_stage_a_copy_derived_and_an_independent_model_not(classifier):
    owner = classifier.owner
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2, seed=0,
                                     weights=True, second_stage=False)
    references = classifier.references  # 18 at 0.1: rank bound 1/19, the rest is the weight stage's
    copy = magnitude_prune(owner, 0.5)
    verdict = fingerprint.verify(copy, references, alpha=0.1, check_evasion=False)
    names = [stage["name"] for stage in verdict.stages]
    assert names == ["tafa", "weights"] and verdict.decision.value == "derived"
    assert verdict.calibration.bound <= 0.1 + 1e-12 and verdict.to_dict()["weights"]["p_value"] < 1e-6
    assert "weights: exact p-value" in verdict.render()
    independent = fingerprint.verify(classifier.independent, references, alpha=0.1, check_evasion=False)
    weight_row = independent.to_dict()["stages"][1]
    assert weight_row["name"] == "weights" and weight_row["p_value"] > 0.01
    off = fingerprint.verify(copy, references, alpha=0.1, check_evasion=False, weights=False)
    assert off.weights is None and [stage["name"] for stage in off.stages] == []


# -- which units are hidden: their order free, as the order test needs -----------------------------

class _TwoHeads(torch.nn.Module):
    """A trunk and two heads (a multi-task network); ``skip``: the trunk's units are also
    returned beside the heads' outputs."""

    def __init__(self, seed: int, skip: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 60), torch.nn.ReLU())
        self.a, self.b, self.skip = torch.nn.Linear(60, 10), torch.nn.Linear(60, 10), skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(x)
        heads = [self.a(hidden), self.b(hidden)]
        return torch.cat([*heads, hidden] if self.skip else heads, 1)


def _two_heads(seed: int, part: str) -> torch.nn.Module:
    """Both heads trained on the digits' labels (seconds)."""
    from tafa.bench.datasets import load_task

    model, data = _TwoHeads(seed), load_task("digits").split(part)
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(150):
        index = torch.randint(0, len(data.x), (128,), generator=generator)
        out = model(data.x[index])
        loss = (torch.nn.functional.cross_entropy(out[:, :10], data.y[index])
                + torch.nn.functional.cross_entropy(out[:, 10:], data.y[index]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def test_a_second_head_is_not_hidden_so_independent_multi_task_models_are_not_flagged():
    """Session 30: the module-order reading called every layer but the last hidden, so the first
    of two heads (its units the task's classes, in the task's order) was order-tested: every
    independently trained two-head model got p = 5.5e-7 "exact" against the owner."""
    owner = _two_heads(0, "owner")
    layers = unit_layers(owner)
    assert [(layer.name, layer.hidden) for layer in layers] == [("trunk.1", True), ("a", False), ("b", False)]
    for seed in (1, 2):
        found = compare(layers, unit_layers(_two_heads(seed, "other")))
        assert found.applicable and found.p_value > 0.01
        assert found.layers[1].order_p < 1e-5  # the head's classes do match in order: that is why it must not count
    assert compare(layers, unit_layers(magnitude_prune(owner, 0.5))).p_value < 1e-20


def test_units_that_reach_the_output_by_a_skip_are_not_hidden_and_untraceable_modules_have_none():
    skip = _TwoHeads(0, skip=True)
    assert [layer.hidden for layer in unit_layers(skip)] == [False, False, False]

    class Branching(torch.nn.Module):  # control flow on values: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = torch.relu(self.first(x))
            return self.second(hidden) if hidden.sum() > 0 else -self.second(hidden)

    branching = Branching()
    assert [layer.hidden for layer in unit_layers(branching)] == [False, False]
    itself = compare(unit_layers(branching), unit_layers(branching))  # the very same weights: still no order test
    assert itself.p_value == 1.0 and "no order test" in itself.render()


def test_layers_stored_by_an_earlier_rule_are_not_trusted_hidden_past_the_first():
    import numpy as np

    from tafa.weights.layers import layers_from_arrays

    owner = _TwoHeads(0)
    layers = unit_layers(owner)
    arrays = {str(i): layer.vectors for i, layer in enumerate(layers)}
    now = [layer.describe() for layer in layers]
    earlier = [{**row, "hidden": index < 2} for index, row in enumerate(now)]  # the module-order rule's flags
    for row in earlier:
        row.pop("hidden_by")
    assert [layer.hidden for layer in layers_from_arrays(arrays, now)] == [True, False, False]
    assert [layer.hidden for layer in layers_from_arrays(arrays, earlier)] == [True, False, False]
    assert all(np.array_equal(a.vectors, b.vectors) for a, b in zip(layers_from_arrays(arrays, earlier), layers))
