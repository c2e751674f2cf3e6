"""The command line: the README's workflow with real model files, and every bad input."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tafa.attacks import magnitude_prune
from tafa.cli import main


def _onnx(model: torch.nn.Module, path: Path, shape=(1, 8, 8)) -> Path:
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def _script(model: torch.nn.Module, path: Path, shape=(1, 8, 8)) -> Path:
    torch.jit.trace(model, torch.zeros(1, *shape)).save(str(path))
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def files(classifier, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    references = root / "references"
    references.mkdir()
    for i, model in enumerate(classifier.references):
        _onnx(model, references / f"ref{i:02d}.onnx")
    save_file({k: v.contiguous() for k, v in classifier.owner.state_dict().items()}, str(root / "owner.safetensors"))
    return {
        "root": root, "references": references,
        "owner_onnx": _onnx(classifier.owner, root / "owner.onnx"),
        "owner_script": _script(classifier.owner, root / "owner.pt"),
        "owner_safetensors": root / "owner.safetensors",
        "pirate": _onnx(magnitude_prune(classifier.owner, 0.5), root / "pirate.onnx"),
        "independent": _script(classifier.independent, root / "independent.pt"),
    }


@pytest.fixture(scope="module")
def fingerprint_file(files):
    out = files["root"] / "owner.tafa"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--quiet", "fingerprint", str(files["owner_onnx"]), "--domain", "box:0,1", "--out", str(out)]) == 0
    assert "fingerprint written to" in printed.getvalue()
    return out


def test_fingerprint_from_onnx_is_white_box(fingerprint_file, capsys):
    code, out, _ = _run(capsys, "info", str(fingerprint_file), "--json")
    info = json.loads(out)
    assert code == 0 and info["analysis"] == "white-box" and info["queries_per_verification"] == 576


def test_verify_pirate_and_independent(files, fingerprint_file, capsys):
    verdicts = {}
    for name in ("pirate", "independent"):
        # the default alpha (0.01) with 18 references: only with --parametric, a normal tail above their maximum
        code, out, _ = _run(capsys, "verify", str(fingerprint_file), str(files[name]), "--references",
                            str(files["references"]), "--input-shape", "1,8,8", "--json", "--parametric")
        assert code == 0
        verdicts[name] = json.loads(out)
    assert verdicts["pirate"]["decision"] == "derived"
    assert verdicts["independent"]["decision"] == "independent"
    for verdict in verdicts.values():
        assert {"decision", "score", "threshold", "alpha_requested", "bound", "queries", "n_references"} <= set(verdict)
        assert verdict["queries"] == 576 and verdict["n_references"] == 18
        assert verdict["bound_method"] == "parametric" and verdict["rank_bound"] == pytest.approx(1 / 19)
        assert verdict["alpha_requested"] == verdict["bound"] == 0.01 and "parametric" in verdict["bound_note"]


def test_human_verdict_and_undecided_without_references(files, fingerprint_file, capsys):
    code, out, _ = _run(capsys, "verify", str(fingerprint_file), str(files["pirate"]))
    assert code == 0 and "UNDECIDED" in out and "queries" in out


@pytest.mark.parametrize("owner", ["owner_script", "owner_safetensors"])
def test_fingerprint_from_torchscript_and_safetensors(files, owner, capsys, tmp_path):
    out = tmp_path / "fp.tafa"
    source = ["tests.factories:digits_mlp", "--weights", str(files[owner])] if owner == "owner_safetensors" else [
        str(files[owner])]
    code, printed, _ = _run(capsys, "fingerprint", *source, "--domain", "box:0,1", "--out", str(out),
                            "--input-shape", "1,8,8", "--json")
    assert code == 0 and json.loads(printed)["analysis"] == "white-box"
    code, printed, _ = _run(capsys, "verify", str(out), str(files["owner_onnx"]), "--json")
    assert json.loads(printed)["score"] == pytest.approx(1.0, abs=1e-5)


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tafa: error:"), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def test_bad_inputs_give_one_line_and_exit_2(files, fingerprint_file, capsys, tmp_path):
    out = tmp_path / "never.tafa"
    cases = [
        (["fingerprint", str(tmp_path / "missing.onnx"), "--domain", "box:0,1", "--out", str(out)], "does not exist"),
        (["fingerprint", str(files["owner_onnx"]), "--domain", "cube:0,1", "--out", str(out)], "unknown domain"),
        (["fingerprint", str(files["owner_onnx"]), "--domain", "box:1,0", "--out", str(out)], "upper bounds"),
        (["fingerprint", str(files["owner_script"]), "--domain", "box:0,1", "--out", str(out)], "input-shape"),
        (["fingerprint", "tests.factories:digits_mlp", "--domain", "box:0,1", "--out", str(out)], "--weights"),
        (["fingerprint", "tests.factories:not_a_module", "--weights", str(files["owner_safetensors"]),
          "--domain", "box:0,1", "--out", str(out), "--input-shape", "1,8,8"], "not a torch.nn.Module"),
        (["verify", str(tmp_path / "missing.tafa"), str(files["pirate"])], "does not exist"),
        (["verify", str(fingerprint_file), str(files["pirate"]), "--references", str(tmp_path)], "no model files"),
    ]
    for argv, needle in cases:
        code, _, err = _run(capsys, *argv)
        _assert_one_line_error(code, err, needle)
    assert not out.exists() and not list(tmp_path.glob(".never*"))


def test_corrupt_and_pickled_model_files_are_refused(files, fingerprint_file, capsys, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    pickled = tmp_path / "model.pt"
    torch.save({"weights": Payload()}, pickled)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload()))
    for path, needle in ((corrupt, "not a loadable onnx"), (pickled, "refused"), (raw, "never unpickles")):
        code, _, err = _run(capsys, "verify", str(fingerprint_file), str(path), "--factory",
                            "tests.factories:digits_mlp", "--input-shape", "1,8,8")
        _assert_one_line_error(code, err, needle)
    assert not marker.exists()


def test_shape_mismatch_is_refused(fingerprint_file, capsys, tmp_path):
    wrong = _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), tmp_path / "three.onnx")
    code, _, err = _run(capsys, "verify", str(fingerprint_file), str(wrong))
    _assert_one_line_error(code, err, "output")
    wrong_in = _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)), tmp_path / "in.onnx", (1, 4, 4))
    code, _, err = _run(capsys, "verify", str(fingerprint_file), str(wrong_in))
    _assert_one_line_error(code, err, "inputs of shape")


def test_nan_outputs_are_refused(fingerprint_file, capsys, tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :10] * float("nan")

    code, _, err = _run(capsys, "verify", str(fingerprint_file), str(_onnx(Broken(), tmp_path / "nan.onnx")))
    _assert_one_line_error(code, err, "nan")


def test_tampered_fingerprint_is_refused(fingerprint_file, files, capsys, tmp_path):
    data = bytearray(fingerprint_file.read_bytes())
    data[-9] ^= 0x01  # flip one bit of the last array
    tampered = tmp_path / "tampered.tafa"
    tampered.write_bytes(bytes(data))
    code, _, err = _run(capsys, "verify", str(tampered), str(files["pirate"]))
    _assert_one_line_error(code, err, "sha-256")
    truncated = tmp_path / "truncated.tafa"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    code, _, err = _run(capsys, "info", str(truncated))
    _assert_one_line_error(code, err, "not a readable tafa fingerprint")


def test_unsupported_operator_falls_back_to_black_box(capsys, tmp_path):
    class Smooth(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)

        def forward(self, x):
            return self.b(torch.nn.functional.gelu(self.a(x.flatten(1))))

    torch.manual_seed(0)
    path = _onnx(Smooth(), tmp_path / "gelu.onnx")
    out = tmp_path / "fp.tafa"
    code, printed, err = _run(capsys, "fingerprint", str(path), "--domain", "box:0,1", "--out", str(out), "--json")
    assert code == 0 and "notice: white-box import failed" in err and "Gelu" in err
    assert json.loads(printed)["analysis"].startswith("black-box")
