"""``tafa references``: independent references trained from the user's factory and data file,
written where ``--references`` reads them, resumable, parallel, and every bad file one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tafa import Fingerprint
from tafa.cli import main
from tafa.make_references import MANIFEST, load_data, make_references

ARCH = '''
import torch.nn as nn


def mlp(width=24):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A factory file and a small digits data file (300 samples), as a user would have them."""
    root = tmp_path_factory.mktemp("references")
    (root / "arch.py").write_text(ARCH)
    digits = load_digits()
    np.savez(root / "digits.npz", x=(digits.images[:300] / 16).reshape(-1, 1, 8, 8).astype(np.float32),
             y=digits.target[:300])
    return root


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _references(workspace: Path, out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "references", "--factory", str(workspace / "arch.py:mlp"), "--factory",
                str(workspace / "arch.py:cnn"), "--data", str(workspace / "digits.npz"), "--out", str(out),
                "--epochs", "1", "--widths", "16,32", *extra)


@pytest.fixture(scope="module")
def made(workspace, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("made") / "refs"
    code = main(["--quiet", "references", "--factory", str(workspace / "arch.py:mlp"), "--factory",
                 str(workspace / "arch.py:cnn"), "--data", str(workspace / "digits.npz"), "--out", str(out),
                 "--epochs", "1", "--widths", "16,32", "--count", "3"])
    assert code == 0
    return out


def test_makes_count_loadable_references(made):
    files = sorted(p.name for p in made.glob("*.onnx"))
    assert files == ["ref-000-mlp-w16.onnx", "ref-001-cnn.onnx", "ref-002-mlp-w32.onnx"]
    from tafa.models import open_models

    models = open_models(str(made))
    assert len(models) == 3
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    assert all(model(x).shape == (5, 10) for model in models)
    manifest = json.loads((made / MANIFEST).read_text())
    assert manifest["settings"]["task"] == "classification"  # inferred: class numbers, 10 scores
    seeds = [record["seed"] for record in manifest["references"].values()]
    assert len(set(seeds)) == 3 and min(seeds) > 1000  # distinct, and none an owner's habitual 0, 1, 42
    assert all(record["train_samples"] == 240 and record["held_out_samples"] == 60
               for record in manifest["references"].values())


def test_rerun_skips_what_is_there_and_adds_what_is_missing(workspace, made, capsys, tmp_path):
    out = tmp_path / "refs"
    out.mkdir()
    for path in made.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")}
    code, printed, _ = _references(workspace, out, capsys, "--count", "3")
    assert code == 0 and "0 made" in printed and "3 already there" in printed
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx")} == before
    code, printed, _ = _references(workspace, out, capsys, "--count", "4", "--json")
    result = json.loads(printed)
    assert code == 0 and result["made"] == ["ref-003-cnn.onnx"] and len(result["skipped"]) == 3
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.onnx") if p.name in before} == before
    assert len(json.loads((out / MANIFEST).read_text())["references"]) == 4


def test_rerun_with_other_settings_is_refused(workspace, made, capsys, tmp_path):
    out = tmp_path / "refs"
    out.mkdir()
    for path in made.iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    code, printed, err = _references(workspace, out, capsys, "--count", "3", "--lr", "0.01")
    assert code == 2 and printed == "" and err.count("\n") == 1 and "other settings" in err and "lr" in err
    (out / MANIFEST).unlink()  # model files tafa did not (knowingly) make: not mixed with new ones
    code, _, err = _references(workspace, out, capsys, "--count", "3")
    assert code == 2 and err.count("\n") == 1 and "did not make" in err


def test_parallel_jobs_write_the_same_references(workspace, made, tmp_path):
    """Each reference depends on its seed alone: two worker processes write byte-identical files."""
    data = load_data(workspace / "digits.npz")
    factories = [str(workspace / "arch.py:mlp"), str(workspace / "arch.py:cnn")]
    result = make_references(factories, data, tmp_path / "parallel", count=2, epochs=1, widths=(16, 32), jobs=2)
    assert sorted(result.made) == ["ref-000-mlp-w16.onnx", "ref-001-cnn.onnx"]
    for name in result.made:
        assert (tmp_path / "parallel" / name).read_bytes() == (made / name).read_bytes()


def test_regression_targets_are_inferred(workspace, tmp_path, capsys):
    (tmp_path / "reg.py").write_text("import torch.nn as nn\n\ndef net():\n    return nn.Sequential(nn.Linear(3, 8), "
                                     "nn.ReLU(), nn.Linear(8, 1))\n")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    np.savetxt(tmp_path / "data.csv", np.c_[x, x @ [1.0, -2.0, 0.5]], delimiter=",", header="a,b,c,target",
               comments="")
    code, printed, _ = _run(capsys, "references", "--factory", f"{tmp_path / 'reg.py'}:net", "--data",
                            str(tmp_path / "data.csv"), "--out", str(tmp_path / "out"), "--count", "1", "--epochs",
                            "1", "--json")
    assert code == 0 and json.loads(printed)["settings"]["task"] == "regression"


def _bad_files(root: Path) -> dict[str, tuple[Path, str]]:
    root.mkdir(exist_ok=True)
    files = {}
    (root / "garbage.npz").write_bytes(b"not a zip at all")
    files["garbage"] = (root / "garbage.npz", "not a readable .npz")
    np.savez(root / "nokeys.npz", inputs=np.zeros((20, 64)), labels=np.zeros(20))
    files["no x and y"] = (root / "nokeys.npz", "must hold arrays 'x'")
    np.savez(root / "pickled.npz", x=np.array([{}] * 20, dtype=object), y=np.zeros(20))
    files["object arrays"] = (root / "pickled.npz", "not a readable .npz")
    np.savez(root / "short.npz", x=np.zeros((20, 1, 8, 8)), y=np.zeros(19))
    files["lengths differ"] = (root / "short.npz", "20 inputs but 19 targets")
    np.savez(root / "nan.npz", x=np.full((20, 1, 8, 8), np.nan), y=np.zeros(20))
    files["NaN"] = (root / "nan.npz", "NaN")
    (root / "words.csv").write_text("a,b\n1,x\n")
    files["csv words"] = (root / "words.csv", "not a table of numbers")
    (root / "data.txt").write_text("1,2\n")
    files["suffix"] = (root / "data.txt", "must be .npz")
    files["missing"] = (root / "absent.npz", "does not exist")
    return files


@pytest.mark.parametrize("case", ["garbage", "no x and y", "object arrays", "lengths differ", "NaN", "csv words",
                                  "suffix", "missing"])
def test_a_bad_data_file_is_one_line_and_exit_2(workspace, tmp_path, capsys, case):
    path, expected = _bad_files(tmp_path / "bad")[case]
    out = tmp_path / "out"
    code, printed, err = _run(capsys, "references", "--factory", str(workspace / "arch.py:cnn"), "--data", str(path),
                              "--out", str(out), "--count", "1", "--epochs", "1")
    assert code == 2 and printed == ""
    assert err.startswith("tafa: error: ") and err.count("\n") == 1 and expected in err
    assert not out.exists()  # nothing half-written


def test_data_larger_than_the_bound_is_refused_unread(workspace, tmp_path, capsys):
    code, _, err = _run(capsys, "references", "--factory", str(workspace / "arch.py:cnn"), "--data",
                        str(workspace / "digits.npz"), "--out", str(tmp_path / "out"), "--max-data-bytes", "1000")
    assert code == 2 and "at most 1000 are read" in err and err.count("\n") == 1


def test_a_factory_that_does_not_fit_the_data_is_one_line(workspace, tmp_path, capsys):
    np.savez(tmp_path / "flat.npz", x=np.zeros((20, 64), np.float32), y=np.arange(20) % 10)
    code, _, err = _run(capsys, "references", "--factory", str(workspace / "arch.py:cnn"), "--data",
                        str(tmp_path / "flat.npz"), "--out", str(tmp_path / "out"))
    assert code == 2 and "--input-shape" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "references", "--factory", str(workspace / "arch.py:cnn"), "--data",
                        str(workspace / "digits.npz"), "--out", str(tmp_path / "out"), "--widths", "8")
    assert code == 2 and "'width'" in err and err.count("\n") == 1


def test_verify_accepts_the_references(classifier, made, tmp_path, capsys):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     points=8, directions=4, second_stage=False)
    fingerprint.save(tmp_path / "owner.tafa")
    owner = tmp_path / "owner.onnx"
    torch.onnx.export(classifier.owner, (torch.zeros(1, 1, 8, 8),), str(owner), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    code, printed, _ = _run(capsys, "verify", str(tmp_path / "owner.tafa"), str(owner), "--references", str(made),
                            "--alpha", "0.25", "--json")
    verdict = json.loads(printed)
    assert code == 0 and verdict["n_references"] == 3
    # the owner against three independent references: far above all three, derived at the bound they support
    assert verdict["decision"] == "derived" and verdict["score"] > verdict["threshold"] + 0.2
    assert os.path.exists(made / MANIFEST)  # the manifest beside the models does not bother the folder reader


# ----------------------------------------------------------------------- references unlike trained models

BLIND = '''
import torch
import torch.nn as nn


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def blind():
    """A deliberately bad architecture: its first layer is zero and frozen, so it never sees its
    input and learns only the class frequencies."""
    model = mlp()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
    model[1].requires_grad_(False)
    return model
'''


def test_a_reference_far_below_the_others_is_named_and_min_quality_refuses(workspace, tmp_path, capsys):
    from tafa.make_references import QUALITY_MARGIN
    from tafa.models import open_models

    (tmp_path / "quality.py").write_text(BLIND)
    out = tmp_path / "refs"
    factory = f"{tmp_path / 'quality.py'}"
    argv = ["references", "--factory", f"{factory}:mlp", "--factory", f"{factory}:blind", "--data",
            str(workspace / "digits.npz"), "--out", str(out), "--count", "4", "--epochs", "10", "--lr", "0.01"]
    code, printed, err = _run(capsys, *argv, "--json")
    result = json.loads(printed)
    quality = {r["name"]: r["held_out_quality"] for r in result["references"]}
    blind = ["ref-001-blind.onnx", "ref-003-blind.onnx"]
    assert code == 0 and sorted(quality) == ["ref-000-mlp.onnx", *blind[:1], "ref-002-mlp.onnx", *blind[1:]]
    assert min(quality["ref-000-mlp.onnx"], quality["ref-002-mlp.onnx"]) > max(quality[n] for n in blind) + 0.3
    assert result["low_quality"] == blind  # each named against the median of the OTHER references
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tafa: warning: 2 of 4 references"), err
    assert all(name in lines[0] for name in blind) and "mlp" not in lines[0] and f"{QUALITY_MARGIN:g}" in lines[0]
    # --min-quality refuses those below it, made now or before, in one line; the folder keeps the rest
    code, printed, err = _run(capsys, *argv, "--min-quality", "0.5")
    assert code == 2 and printed == "" and err.count("\n") == 1
    assert err.startswith("tafa: error: 2 of 4 references score a held-out accuracy below --min-quality 0.5 (")
    assert all(name in err for name in blind) and "moved to refused/" in err
    assert sorted(p.name for p in out.glob("*.onnx")) == ["ref-000-mlp.onnx", "ref-002-mlp.onnx"]
    assert sorted(p.name for p in (out / "refused").iterdir()) == blind
    assert sorted(json.loads((out / MANIFEST).read_text())["references"]) == ["ref-000-mlp.onnx", "ref-002-mlp.onnx"]
    assert len(open_models(str(out))) == 2  # --references reads none of the refused
    code, printed, err = _run(capsys, *argv, "--min-quality", "1.01")  # the blind ones trained alike again
    assert code == 2 and printed == "" and err.count("\n") == 1 and "4 of 4 references" in err
    assert list(out.glob("*.onnx")) == []


def test_min_quality_is_checked_before_anything_is_trained(workspace, tmp_path, capsys):
    out = tmp_path / "refs"
    base = ["references", "--factory", str(workspace / "arch.py:cnn"), "--data", str(workspace / "digits.npz"),
            "--out", str(out), "--count", "1", "--epochs", "1"]
    code, _, err = _run(capsys, *base, "--min-quality", "0.5", "--fraction", "1")
    assert code == 2 and err.count("\n") == 1 and "--fraction 1" in err and not out.exists()
    with pytest.raises(SystemExit) as refused:
        main(["--quiet", *base, "--min-quality", "nan"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and err.count("\n") == 1 and "--min-quality" in err and not out.exists()
