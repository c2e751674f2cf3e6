"""Verdicts that hold up: the bound printed is the bound the references support.

The command-line cases of issue 13 each give the honest answer: too few references for the
alpha asked -> undecided, with the bound they do support and the references alpha needs; the
weaker bound asked for explicitly -> decided; duplicated reference files count once; the
suspect or the owner among the references -> refused; references that score like copies of
the owner -> left out, with a note. The library gives the same answers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tafa import Fingerprint, TorchModel
from tafa.attacks import magnitude_prune, quantize
from tafa.bench.architectures import build
from tafa.cli import main
from tafa.decide import BoundMethod, Calibration, Decision, calibrate
from tafa.errors import RefusedReference
from tafa.scanning import scan

SHAPE = (1, 8, 8)
FACTORY = "tests.factories:digits_mlp"
WEIGHTS_ONLY = ("--factory", FACTORY, "--input-shape", "1,8,8")
EXPORT = dict(dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})


def _onnx(model: torch.nn.Module, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, *SHAPE),), str(path), **EXPORT)
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def world(classifier, tmp_path_factory):
    """An owner fingerprinted from ONNX, a pirated copy, an independent model, two reference
    folders (two models; four models in 80 files) and the files to put among them."""
    root = tmp_path_factory.mktemp("calibration")
    files = {"owner": _onnx(classifier.owner, root / "owner.onnx"),
             "pirate": _onnx(magnitude_prune(classifier.owner, 0.5), root / "pirate.onnx"),
             "independent": _onnx(classifier.independent, root / "independent.onnx")}
    distinct = [_onnx(model, root / "distinct" / f"ref{i}.onnx") for i, model in enumerate(classifier.references[:4])]
    two = root / "two"
    two.mkdir()
    for source in distinct[:2]:
        shutil.copy(source, two)
    many = root / "many"  # weights-only files (quick to open) of four models of the owner's architecture
    many.mkdir()
    for i, model in enumerate(classifier.references[0:12:3]):
        save_file(model.state_dict(), str(root / f"mlp{i}.safetensors"))
    for i in range(80):
        shutil.copy(root / f"mlp{i % 4}.safetensors", many / f"copy{i:03d}.safetensors")
    fingerprint = root / "owner.tafa"
    assert main(["--quiet", "fingerprint", files["owner"], "--domain", "box:0,1", "--out", str(fingerprint),
                 "--probes", "16", "--directions", "2"]) == 0
    return {"root": root, "files": files, "two": str(two), "four": str(root / "distinct"), "many": str(many),
            "fingerprint": str(fingerprint)}


def _verify(capsys, world, suspect: str, references: str, *options: str) -> tuple[int, dict, str]:
    code, out, err = _run(capsys, "verify", world["fingerprint"], world["files"][suspect], "--references",
                          references, "--json", *options)
    return code, (json.loads(out) if code == 0 else {}), err


def test_two_references_at_alpha_001_are_undecided_with_the_bound_they_support(world, capsys):
    for suspect in ("pirate", "independent"):
        code, verdict, _ = _verify(capsys, world, suspect, world["two"])
        assert code == 0 and verdict["decision"] == "undecided"
        assert verdict["alpha_requested"] == 0.01 and verdict["bound"] == pytest.approx(1 / 3)
        assert verdict["bound_method"] == "rank" and verdict["n_references"] == 2
        note = verdict["bound_note"]
        assert "support a false-positive bound of 0.333" in note and "at least 99 references" in note
        assert note in verdict["notes"]
    code, out, _ = _run(capsys, "verify", world["fingerprint"], world["files"]["pirate"], "--references", world["two"])
    assert code == 0 and "UNDECIDED" in out and "at least 99 references" in out and "0.01 was asked for" in out


def test_the_weaker_bound_asked_for_explicitly_decides(world, capsys):
    code, pirate, _ = _verify(capsys, world, "pirate", world["two"], "--alpha", "0.34")
    assert code == 0 and pirate["decision"] == "derived"
    assert pirate["alpha_requested"] == 0.34 and pirate["bound"] == pytest.approx(1 / 3)
    assert pirate["bound_note"] is None and pirate["threshold"] == pytest.approx(max(pirate["reference_scores"]))
    # the suggestion in the note is itself an alpha the two references support
    code, undecided, _ = _verify(capsys, world, "pirate", world["two"])
    suggested = undecided["bound_note"].split("--alpha ")[1].split(",")[0]
    code, again, _ = _verify(capsys, world, "pirate", world["two"], "--alpha", suggested)
    assert code == 0 and again["decision"] == "derived"


def test_a_parametric_tail_is_asked_for_and_labelled(world, capsys):
    code, verdict, _ = _verify(capsys, world, "pirate", world["four"], "--parametric")
    # the owner is an MLP classifier: four stages (first, data-like, geometry, extraction), each a
    # parametric tail at a quarter of alpha
    assert code == 0 and verdict["decision"] == "derived"
    assert verdict["bound_method"] == "bonferroni:parametric+parametric+parametric+parametric"
    assert [stage["bound_method"] for stage in verdict["stages"]] == ["parametric"] * 4
    assert verdict["bound"] == pytest.approx(0.01) and verdict["rank_bound"] == pytest.approx(1 / 5)
    assert "parametric" in verdict["bound_note"] and "0.2" in verdict["bound_note"]


@pytest.mark.slow
def test_80_files_of_4_distinct_models_give_the_bound_of_4(world, capsys):
    code, verdict, _ = _verify(capsys, world, "pirate", world["many"], *WEIGHTS_ONLY)
    assert code == 0 and verdict["n_references"] == 4 and len(verdict["reference_scores"]) == 4
    assert verdict["decision"] == "undecided" and verdict["bound"] == pytest.approx(0.2)
    assert "4 distinct references support a false-positive bound of 0.2" in verdict["bound_note"]
    assert any("80 references are 4 distinct models" in note for note in verdict["notes"])
    code, verdict, _ = _verify(capsys, world, "pirate", world["many"], "--alpha", "0.2", *WEIGHTS_ONLY)
    assert code == 0 and verdict["decision"] == "derived" and verdict["bound"] == pytest.approx(0.2)


@pytest.mark.parametrize("intruder", ["pirate", "owner"])
def test_the_suspect_or_the_owner_among_the_references_is_refused(world, capsys, intruder, tmp_path):
    references = tmp_path / "refs"
    shutil.copytree(world["two"], references)
    shutil.copy(world["files"][intruder], references / "innocent-looking.onnx")
    code, out, err = _run(capsys, "verify", world["fingerprint"], world["files"]["pirate"], "--references",
                          str(references), "--alpha", "0.3")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "innocent-looking.onnx" in err
    assert ("the suspect being verified" if intruder == "pirate" else "the owner model") in err


def test_registry_add_and_scan_say_what_bound_two_references_support(world, capsys, tmp_path):
    registry = str(tmp_path / "registry.sqlite")
    code, out, _ = _run(capsys, "registry", "add", world["fingerprint"], "--name", "owner", "--references",
                        world["two"], "--registry", registry)
    assert code == 0 and "false-positive bound 0.333 (rank; 0.01 asked for)" in out and "at least 99" in out
    suspects = [world["files"]["pirate"], world["files"]["independent"]]
    # the default control, family-wise at 0.05, decides over the null panel (the same two models): it says so
    family = scan(suspects, registry=registry, workers=0)
    assert {f.decision for o in family.outcomes for f in o.findings} == {"undecided"}
    assert "needs a null panel of at least 19 models; this one has 2" in family.render()
    # each fingerprint's calibration decides: its report says what the two references support
    report = scan(suspects, registry=registry, workers=0, control="per-fingerprint")
    assert {f.decision for o in report.outcomes for f in o.findings} == {"undecided"}
    assert report.bounds["owner"]["supports_alpha"] is False
    assert report.bounds["owner"]["bound"] == pytest.approx(1 / 3)
    markdown = report.to_markdown()
    assert "at least 99 references" in markdown and "0.333 (rank)" in markdown
    for source in (world["files"]["pirate"], world["files"]["independent"]):  # every suspect, matched or not
        assert Path(source).name in markdown and Path(source).name in report.to_html()
    assert "at least 99 references" in report.render()


def test_a_random_untrained_owner_with_two_references_decides_nothing(classifier):
    """The Python API case of issue 13: an independent model was judged derived from a random,
    untrained owner (score above the maximum of two references) at the default alpha."""
    owner = build("mlp", input_shape=SHAPE, output_dim=10, seed=0)
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=SHAPE, points=16, directions=2)
    verdict = fingerprint.verify(classifier.independent, classifier.references[:2])
    assert verdict.decision is Decision.UNDECIDED and verdict.alpha_requested == 0.01
    assert verdict.bound == pytest.approx(1 / 3) and "at least 99 references" in verdict.to_dict()["bound_note"]


def test_library_refuses_the_owner_and_the_suspect_and_merges_duplicates(classifier):
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=16, directions=2)
    references = classifier.references[:3]
    with pytest.raises(RefusedReference, match="the owner model"):
        fingerprint.calibrate([*references, classifier.owner], alpha=0.25)
    with pytest.raises(RefusedReference, match="the suspect"):
        fingerprint.verify(classifier.independent, [*references, classifier.independent], alpha=0.25)
    doubled = fingerprint.calibrate([*references, *references, TorchModel(references[0], SHAPE)], alpha=0.25)
    assert doubled.n_references == 3 and doubled.notes[0] == ("7 references are 3 distinct models (by content hash): "
                                                              "calibrated on 3")
    # three references are too few for two stages at 0.25 (each at 0.125 needs 7): the first decides alone
    assert len(fingerprint.stage_names()) == 4 and "the first stage decides alone" in doubled.notes[1]


def test_references_that_score_like_copies_of_the_owner_are_left_out(classifier):
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=16, directions=2)
    copy_score = fingerprint.meta["owner_int8_score"]
    honest = fingerprint.scores(classifier.references[:4])
    line = fingerprint.copy_line()
    assert max(honest) < line < copy_score < 1.0 and 1 - line == pytest.approx(2 * (1 - copy_score))
    disguised = quantize(classifier.owner, 8, biases=True)  # another file, but a copy of the owner
    assert line <= fingerprint.score(disguised).value < 1.0
    calibration = fingerprint.calibrate([*classifier.references[:4], disguised], alpha=0.2)
    kept = calibration.stages[0].reference_scores
    assert calibration.n_references == 4 and sorted(kept) == pytest.approx(sorted(honest))
    assert "probable copies of the owner" in calibration.notes[0]
    verdict = fingerprint.verify(magnitude_prune(classifier.owner, 0.5), [*classifier.references[:4], disguised],
                                 alpha=0.2)
    assert verdict.decision is Decision.DERIVED and any("probable copies" in note for note in verdict.notes)
    with pytest.raises(RefusedReference, match="Every reference scores like a copy of the owner"):
        fingerprint.calibrate([disguised, quantize(classifier.owner, 8)], alpha=0.4)


@pytest.mark.parametrize("n", [1, 2, 4, 18, 19, 98, 99, 100, 299])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 1 / 19, 0.2, 1 / 3, 0.34])
def test_rank_bound_is_exact_and_never_claims_more_than_the_references_give(n, alpha):
    scores = np.random.default_rng(n).normal(size=n)
    cal = calibrate(scores, alpha)
    k = int(np.ceil((n + 1) * (1 - alpha) - 1e-9))
    assert cal.method is BoundMethod.RANK and cal.n_references == n
    if n >= cal.references_needed:
        assert cal.supports_alpha and cal.bound == pytest.approx((n + 1 - k) / (n + 1)) and cal.bound <= alpha + 1e-12
        assert cal.threshold == np.sort(scores)[k - 1] and cal.note() is None
    else:
        assert not cal.supports_alpha and cal.bound == pytest.approx(1 / (n + 1)) and cal.bound > alpha
        assert cal.threshold == scores.max() and f"at least {cal.references_needed} references" in cal.note()
    assert cal.references_needed == int(np.ceil(1 / alpha - 1 - 1e-9))


def test_calibration_round_trips_and_reads_rows_older_versions_stored():
    cal = calibrate([0.1, 0.2, 0.25, 0.3], 0.01, parametric=True)
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal and again.method is BoundMethod.PARAMETRIC and again.supports_alpha
    old = {k: v for k, v in cal.to_dict().items() if k not in ("alpha_requested", "notes")}
    old.update(alpha=0.01, method="rank", bound=0.2, threshold=0.3)  # what a short rank calibration stored
    legacy = Calibration.from_dict(old)
    assert legacy.alpha_requested == 0.01 and not legacy.supports_alpha and legacy.notes == []


def test_verdict_json_names_the_bound_honestly(classifier):
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=16, directions=2)
    verdict = fingerprint.verify(classifier.owner, classifier.references, alpha=1 / 19)
    data = json.loads(verdict.to_json())
    assert data["decision"] == "derived" and "alpha" not in data
    assert data["alpha_requested"] == pytest.approx(1 / 19) and data["bound"] == pytest.approx(1 / 19)
    # 18 references: one bound for all stages together (max-T), not a share of 1/19 each
    assert data["bound_method"] == "max-t" and data["bound_note"] is None
    assert isinstance(verdict.decision, str) and verdict.decision == "derived"  # a StrEnum: stored as its value
