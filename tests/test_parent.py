"""Shared public parents: a fingerprint relative to the parent the owner fine-tuned, its file,
its command line, and the benchmark's parent zoos.

The models are trained here in seconds: a digits MLP pretrained on the classes 0-4 (the public
parent), the owner's fine-tune of it on the owner's half, and a sibling's fine-tune of it on
the other half. Decisions are asserted only where the margin is exact (the parent's own
measurement subtracted from itself is zero) or wide.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.bench.architectures import build
from tafa.bench.datasets import load_task
from tafa.bench.parents import pretraining_data
from tafa.bench.scenarios import FULL, PARENT_ZOOS
from tafa.bench.zoo import recipe_key, recipes
from tafa.cli import main
from tafa.errors import FingerprintError, ShapeMismatch
from tafa.fingerprint import PARENT_REFERENCE_SCORES
from tafa.models import module_hash
from tafa.training import fit

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def family():
    """parent, owner (its fine-tune on the owner's half), sibling (its fine-tune on the other half),
    refit (the owner's own other fine-tune of the parent: a reference an owner can make)."""
    task = load_task("digits")
    parent = fit(build("mlp", input_shape=SHAPE, output_dim=10, seed=0), pretraining_data("digits-0-4", False),
                 epochs=8, lr=1e-3, seed=0)
    owner = fit(copy.deepcopy(parent), task.split("owner"), epochs=4, lr=1e-3, seed=1)
    sibling = fit(copy.deepcopy(parent), task.split("other"), epochs=4, lr=1e-3, seed=2)
    refit = fit(copy.deepcopy(parent), task.split("owner"), epochs=4, lr=2e-3, seed=3)
    return {"parent": parent, "owner": owner, "sibling": sibling, "refit": refit}


@pytest.fixture(scope="module")
def aware(family):
    return Fingerprint.create(family["owner"], "box:0,1", input_shape=SHAPE, points=16, directions=2,
                              parent=family["parent"], parent_references=4)


def test_the_parent_aware_score_subtracts_the_parent(family, aware):
    plain = Fingerprint.create(family["owner"], "box:0,1", input_shape=SHAPE, points=16, directions=2)
    # the parent relative to itself changed nothing: exactly no evidence, whatever the training gave
    assert aware.score(family["parent"]).value == 0.0
    assert abs(aware.compare(aware.parent_signature | {"group": aware.owner_signature["group"]}).value) < 1e-12
    # the plain fingerprint sees the parent's local maps in its fine-tune (the owner)
    assert plain.score(family["parent"]).value > 0.2
    # the owner and its int8 copy still match their own change
    assert aware.score(family["owner"]).value == pytest.approx(1.0)
    assert aware.score(quantize(family["owner"], 8)).value > 0.9
    assert aware.meta["parent_sha256"] == module_hash(family["parent"])
    # the parent's measurement is the parent's signature at the owner's probes
    measured = aware.measure(family["parent"])
    for key in ("outputs", "derivatives"):
        np.testing.assert_array_equal(aware.parent_signature[key], measured[key])


def test_the_parent_as_suspect_is_independent_with_a_note(family, aware):
    scores = aware.meta[PARENT_REFERENCE_SCORES]
    assert len(scores) == 5 and scores[0] == 0.0  # the parent itself, then 4 data-free fine-tunes
    # without references no decision: the stored data-free references are evidence, not a bound
    verdict = aware.verify(family["parent"])
    assert verdict.decision.value == "undecided"
    assert any("is the declared parent" in note for note in verdict.notes)
    assert any("above 0 of the 5 data-free references" in note for note in verdict.notes)
    # asked for, they calibrate (the parent's own 0 is the lowest of them: no false accusation)
    verdict = aware.verify(family["parent"], calibration=aware.parent_calibration(0.2))
    assert verdict.decision.value == "independent"
    assert any("not against siblings" in note for note in verdict.notes)


def test_the_file_keeps_the_parents_measurement(family, aware, tmp_path):
    path = aware.save(tmp_path / "owner.tafa")
    loaded = Fingerprint.load(path)
    assert loaded.sha256 == aware.sha256 and loaded.meta["parent_sha256"] == aware.meta["parent_sha256"]
    assert set(loaded.parent_signature) == {"outputs", "derivatives"}
    for key, value in aware.parent_signature.items():
        np.testing.assert_array_equal(loaded.parent_signature[key], value)
    # verification needs no parent file: the loaded fingerprint scores as the one in memory
    for name in ("owner", "sibling", "parent"):
        assert loaded.score(family[name]).value == aware.score(family[name]).value
    # a parent measurement that does not fit the owner's, or bad stored scores, is refused
    cut = replace(aware, parent_signature={"outputs": aware.parent_signature["outputs"][:3],
                                           "derivatives": aware.parent_signature["derivatives"]})
    with pytest.raises(FingerprintError, match="parent signature"):
        Fingerprint.from_bytes(cut.to_bytes())
    scores = replace(aware, meta={**aware.meta, PARENT_REFERENCE_SCORES: ["nan"]})
    with pytest.raises(FingerprintError, match=PARENT_REFERENCE_SCORES):
        Fingerprint.from_bytes(scores.to_bytes())


def test_a_parent_of_another_shape_is_refused(family):
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ShapeMismatch, match="parent"):
        Fingerprint.create(family["owner"], "box:0,1", input_shape=SHAPE, points=8, directions=2, parent=other)
    with pytest.raises(ShapeMismatch, match="parent"):
        Fingerprint.create(family["owner"], "box:0,1", input_shape=SHAPE, points=8, directions=2,
                           parent=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)))


def _onnx(model: torch.nn.Module, path: Path, shape=SHAPE) -> Path:
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_fingerprint_with_parent(family, capsys, tmp_path):
    owner = _onnx(family["owner"], tmp_path / "owner.onnx")
    parent = _onnx(family["parent"], tmp_path / "parent.onnx")
    out = tmp_path / "owner.tafa"
    code, printed, _ = _run(capsys, "fingerprint", str(owner), "--domain", "box:0,1", "--out", str(out),
                            "--parent", str(parent), "--parent-references", "4", "--probes", "16",
                            "--directions", "2", "--json")
    assert code == 0
    summary = json.loads(printed)
    assert len(summary["parent_sha256"]) == 64 and len(summary[PARENT_REFERENCE_SCORES]) == 5
    # the parent as a suspect scores exactly 0 (no change); calibrated on a sibling and the owner's own
    # re-fine-tune of the parent (--references), it is independent
    references = tmp_path / "references"
    references.mkdir()
    _onnx(family["sibling"], references / "sibling.onnx")
    _onnx(family["refit"], references / "refit.onnx")
    code, printed, _ = _run(capsys, "verify", str(out), str(parent), "--references", str(references),
                            "--alpha", "0.34", "--json")
    verdict = json.loads(printed)
    assert code == 0 and verdict["decision"] == "independent" and verdict["score"] == 0.0


def test_cli_bad_parents_give_one_line_and_exit_2(family, capsys, tmp_path):
    owner = _onnx(family["owner"], tmp_path / "owner.onnx")
    wrong_out = _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), tmp_path / "three.onnx")
    wrong_in = _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)), tmp_path / "in.onnx",
                     (1, 4, 4))
    out = tmp_path / "never.tafa"
    for parent, needle in ((tmp_path / "missing.onnx", "--parent"), (wrong_out, "--parent"),
                           (wrong_in, "--parent"), (tmp_path, "--parent")):
        code, _, err = _run(capsys, "fingerprint", str(owner), "--domain", "box:0,1", "--out", str(out),
                            "--parent", str(parent))
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("tafa: error:"), err
        assert needle in lines[0]
    assert not out.exists()


def test_parent_zoos_have_siblings_as_negatives_and_the_parent_scored():
    assert {spec.scenario for spec in PARENT_ZOOS} == {"classification", "regression", "generation"}
    assert set(PARENT_ZOOS) <= set(FULL)
    for spec in PARENT_ZOOS:
        rows = recipes(spec)
        scored = [r for r in rows if r.role == "scored"]
        calibration = [r for r in rows if r.role == "calibration"]
        siblings = [r for r in scored if r.family == "sibling"]
        assert len(siblings) >= 50 and len(calibration) >= 19
        assert {r.family for r in scored if r.label == 0} == {"sibling", "parent"}
        assert {r.family for r in calibration} == {"sibling"}
        assert sum(r.label == 1 and r.family != "extraction" for r in scored) >= 20
        assert not any(r.role == "shared-init" for r in rows)
        # every sibling is a fine-tune of the same parent, by one of several recipes
        assert all(r.tuning is not None and r.part == "other" for r in siblings + calibration)
        assert len({r.tuning for r in siblings}) >= 4
        keys = [recipe_key(spec, r) for r in rows]
        assert len(set(keys)) == len(keys)
        # the parent's recipe decides the keys of everything fine-tuned from it
        other = replace(spec, parent=replace(spec.parent, epochs=spec.parent.epochs + 1))
        assert recipe_key(other, rows[0]) != keys[0]


def test_a_registry_scan_scores_a_parent_aware_fingerprint_relative_to_its_parent(family, aware, tmp_path):
    from tafa.registry import Registry
    from tafa.scanning import scan

    path = aware.save(tmp_path / "owner.tafa")
    with Registry(tmp_path / "registry.sqlite") as registry:
        registry.add(path, "owner")
    suspects = {name: _onnx(family[name], tmp_path / f"{name}.onnx") for name in ("parent", "sibling")}
    report = scan([str(p) for p in suspects.values()], registry=tmp_path / "registry.sqlite", workers=0,
                  control="per-fingerprint")
    scores = {Path(o.source).stem: o.findings[0].score for o in report.outcomes}
    # the scan subtracts the parent as verify does: the ONNX parent differs from the torch one only by
    # rounding, whose relative cosine is noise around 0 (the plain score of the parent is above 0.2)
    assert abs(scores["parent"]) < 0.1
    assert scores["sibling"] == pytest.approx(aware.score(family["sibling"]).value, abs=1e-3)


def test_the_commitment_covers_the_parents_measurement(family, aware):
    from tafa.commitment import Commitment
    from tafa.errors import TamperedFingerprint

    commitment = Commitment.of(aware)
    again = commitment.reproduce(family["owner"], input_shape=SHAPE, parent=family["parent"])
    assert again.probe_sha256 == aware.probe_sha256
    with pytest.raises(TamperedFingerprint):  # without the parent, or with another one, it is not the same
        commitment.reproduce(family["owner"], input_shape=SHAPE, parent=family["sibling"])


def test_the_bench_scores_a_parent_zoo_plain_and_parent_aware(tmp_path):
    from tafa.bench.run import evaluate_scheme, parent_variants
    from tafa.bench.zoo import build_zoos

    spec = replace(PARENT_ZOOS[0], attacks=("int8", "permute"), independent=3, calibration=2, epochs=2,
                   parent=replace(PARENT_ZOOS[0].parent, epochs=3), training_positives=(), training_negatives=0,
                   free_positives=(), free_negatives=0)
    assert parent_variants("tafa", spec) == [("tafa", False), ("tafa+parent", True)]
    assert parent_variants("ipguard", spec) == [("ipguard", False)]  # labels: nothing to take relative
    zoo = build_zoos([spec], tmp_path / "cache", jobs=1, progress=False, roles=["scored", "calibration"])[0]
    # the owner and the siblings are fine-tunes of the zoo's parent: near its weights (a network of the same
    # architecture trained from another initialisation is about sqrt(2) away, relatively)
    from tafa.attacks.references import relative_weight_change

    changes = [relative_weight_change(zoo.models["parent"], model) for name, model in zoo.models.items()
               if zoo.recipes[name].tuning is not None]
    assert len(changes) == 1 + 3 + 2 and all(0 < change < 0.5 for change in changes)
    plain, aware = (evaluate_scheme(zoo, "tafa", parent_aware=flag)["rows"] for flag in (False, True))
    assert [(r.model, r.family, r.role) for r in plain] == [(r.model, r.family, r.role) for r in aware]
    assert {r.family for r in aware if r.label == 0} == {"sibling", "parent"}
    # plain: two stages (a dense owner), the first stage's own score; parent-aware: one stage
    parent_plain, parent_aware = (next(r.stages[0] if r.stages else r.score for r in rows if r.family == "parent")
                                  for rows in (plain, aware))
    assert parent_aware == 0.0 and parent_plain > 0.2
    assert [r.score for r in aware if r.model == "permute"] == [pytest.approx(1.0)]
