"""A new user's edges (issue 24): exit codes per decision, relative factory files, arguments
refused before torch is imported, honest times, a wrong commitment named as such, ``tafa info``
without Python reprs, ``Fingerprint.create`` from a file and a ``save`` that keeps files and
writes the commitment, the demo's bound, and the README's Python blocks run as written."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.bench.datasets import load_task
from tafa.cli import main
from tafa.cli.options import DECISION_EXIT_CODES
from tafa.decide.rule import DECISIONS
from tafa.errors import InvalidParameter, TafaError

ROOT = Path(__file__).resolve().parents[1]


def _onnx(model: torch.nn.Module, path: Path, shape=(1, 8, 8)) -> Path:
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tafa: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def _cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -X importtime -m tafa.cli ARGV`` (stderr then lists every module imported)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "tafa.cli", "--quiet", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def _imported(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture(scope="module")
def world(classifier, tmp_path_factory):
    root = tmp_path_factory.mktemp("edges")
    references = root / "refs"
    references.mkdir()
    for i, model in enumerate(classifier.references):
        _onnx(model, references / f"ref{i:02d}.onnx")
    paths = {"root": root, "refs": references, "owner": _onnx(classifier.owner, root / "owner.onnx"),
             "pirate": _onnx(magnitude_prune(classifier.owner, 0.5), root / "pirate.onnx"),
             "independent": _onnx(classifier.independent, root / "independent.onnx"),
             "fingerprint": root / "owner.tafa"}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(["--quiet", "fingerprint", str(paths["owner"]), "--domain", "box:0,1",
                     "--out", str(paths["fingerprint"])]) == 0
    paths["fingerprint_output"] = printed.getvalue()
    return paths


# ------------------------------------------------------------------------ 1. exit codes

def test_every_decision_has_its_own_exit_code_and_none_is_the_error_code():
    assert sorted(DECISION_EXIT_CODES) == sorted(DECISIONS)
    codes = list(DECISION_EXIT_CODES.values())
    assert len(set(codes)) == len(codes) and 2 not in codes
    assert DECISION_EXIT_CODES == {"independent": 0, "derived": 1, "undecided": 3, "evasive": 4}
    readme = (ROOT / "README.md").read_text()
    for decision, code in DECISION_EXIT_CODES.items():  # the README's table says the same
        assert re.search(rf"\|\s*`{decision}`\s*\|\s*{code}\s*\|", readme), decision


def test_verify_exit_code_gives_the_decisions_status(world, capsys):
    fingerprint, refs = str(world["fingerprint"]), str(world["refs"])
    # 18 references support 0.2 by rank for both stages (each at 0.1 >= 1/19)
    code, out, _ = _run(capsys, "verify", fingerprint, str(world["pirate"]), "--references", refs, "--alpha", "0.2",
                        "--exit-code", "--json")
    assert (json.loads(out)["decision"], code) == ("derived", 1)
    code, out, _ = _run(capsys, "verify", fingerprint, str(world["independent"]), "--references", refs, "--alpha",
                        "0.2", "--exit-code", "--json")
    assert (json.loads(out)["decision"], code) == ("independent", 0)
    code, out, _ = _run(capsys, "verify", fingerprint, str(world["pirate"]), "--exit-code")
    assert code == 3 and "UNDECIDED" in out
    code, _, err = _run(capsys, "verify", fingerprint, str(world["root"] / "absent.onnx"), "--exit-code")
    _one_line(code, err, "absent.onnx")
    # without the flag, a decision exits 0 as before
    code, out, _ = _run(capsys, "verify", fingerprint, str(world["pirate"]), "--references", refs, "--alpha", "0.2")
    assert code == 0 and "DERIVED" in out
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "--exit-code" in help_text.getvalue() and "3 undecided" in " ".join(help_text.getvalue().split())


def test_scan_exit_code_is_1_when_any_suspect_is_derived(world, capsys, tmp_path):
    registry = str(tmp_path / "registry.sqlite")
    code, _, err = _run(capsys, "registry", "add", str(world["fingerprint"]), "--name", "owner", "--references",
                        str(world["refs"]), "--alpha", "0.2", "--registry", registry)
    assert code == 0, err
    scan = ["scan", "--registry", registry, "--workers", "0", "--control", "per-fingerprint", "--json"]
    code, out, _ = _run(capsys, *scan, str(world["pirate"]), str(world["independent"]), "--exit-code")
    assert code == 1 and json.loads(out)["summary"]["matches"] == 1
    code, out, _ = _run(capsys, *scan, str(world["independent"]), "--exit-code")
    assert code == 0 and json.loads(out)["summary"]["matches"] == 0
    code, out, _ = _run(capsys, *scan, str(world["pirate"]))
    assert code == 0 and json.loads(out)["summary"]["matches"] == 1


# ------------------------------------------------------------------------ 2. relative factory files

def _factory_files(classifier, folder: Path) -> torch.nn.Module:
    """``arch.py:net`` and ``net.safetensors`` (the weights of a reference of that architecture) in
    ``folder``; returns that reference."""
    from tests.factories import digits_mlp

    shapes = {k: v.shape for k, v in digits_mlp().state_dict().items()}
    model = next(m for m in classifier.references if {k: v.shape for k, v in m.state_dict().items()} == shapes)
    (folder / "arch.py").write_text("from tafa.bench.architectures import build\n\n\n"
                                    "def net():\n    return build('mlp', input_shape=(1, 8, 8), output_dim=10, "
                                    "seed=0)\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "net.safetensors"))
    return model


def test_a_relative_factory_file_is_found_from_the_working_directory(world, classifier, capsys, tmp_path,
                                                                     monkeypatch):
    _factory_files(classifier, tmp_path)
    monkeypatch.chdir(tmp_path)
    fingerprint = str(world["fingerprint"])
    for argv in (["net.safetensors", "--factory", "arch.py:net"],  # a weights file and its factory
                 ["arch.py:net", "--weights", "net.safetensors"]):  # the suspect named by its factory
        code, out, err = _run(capsys, "verify", fingerprint, *argv, "--json")
        assert code == 0, err
        assert json.loads(out)["score"] < 0.9  # an independent reference, measured
    code, _, err = _run(capsys, "verify", fingerprint, "net.safetensors", "--factory", "missing.py:net")
    _one_line(code, err, str(tmp_path / "missing.py"))


def test_a_relative_factory_file_from_python_is_found_where_the_options_are_made(classifier, tmp_path,
                                                                                 monkeypatch):
    """From Python, as from the command line: OpenOptions (when made) and open_model resolve a
    relative ``file.py:function`` against the caller's working directory, not the sandbox's."""
    import numpy as np

    from tafa.models import OpenOptions, open_model

    model = _factory_files(classifier, tmp_path)
    x = np.random.default_rng(0).random((6, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.as_tensor(x)).numpy()
    monkeypatch.chdir(tmp_path)
    options = OpenOptions(factory="arch.py:net", input_shape=(1, 8, 8))
    assert options.factory == f"{tmp_path / 'arch.py'}:net"
    named = OpenOptions(weights="net.safetensors", input_shape=(1, 8, 8))
    opened = [options.open("net.safetensors"), named.open("arch.py:net"),
              open_model("net.safetensors", factory="arch.py:net", input_shape=(1, 8, 8))]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # options made earlier keep naming the file they named
    opened.append(options.open(str(tmp_path / "net.safetensors")))
    for suspect in opened:
        np.testing.assert_allclose(suspect(x), expected, rtol=1e-4, atol=1e-5)
        suspect.close()
    with pytest.raises(TafaError, match=str(elsewhere / "arch.py")):  # and a missing one is named where looked for
        open_model(str(tmp_path / "net.safetensors"), factory="arch.py:net", input_shape=(1, 8, 8))


# ------------------------------------------------------------------------ 3. arguments, times, budget

def test_bad_arguments_are_refused_before_torch_is_imported(world, tmp_path):
    fingerprint = str(world["fingerprint"])
    for argv, needle in (
        (["verify", str(tmp_path / "absent.tafa"), str(world["pirate"])], "absent.tafa"),
        (["verify", fingerprint, str(tmp_path / "absent.onnx")], "absent.onnx"),
        (["verify", fingerprint, str(world["pirate"]), "--alpha", "1.5"], "--alpha"),
        (["verify", fingerprint, str(world["pirate"]), "--references", str(tmp_path / "nothing")], "nothing"),
        (["verify", fingerprint, str(world["pirate"]), "--commitment-digest", "ab"], "--commitment"),
        (["fingerprint", str(tmp_path / "absent.onnx"), "--domain", "box:0,1", "--out", str(tmp_path / "o.tafa")],
         "absent.onnx"),
        (["fingerprint", str(world["owner"]), "--domain", "box:0,1", "--out", fingerprint], "--force"),
        (["info", str(tmp_path / "absent.tafa")], "absent.tafa"),
        (["verify", fingerprint, str(world["pirate"]), "--owner-data", str(tmp_path / "absent.npz")], "absent.npz"),
        (["fingerprint", str(world["owner"]), "--domain", "box:0,1", "--out", str(tmp_path / "o.tafa"),
          "--owner-data", str(tmp_path / "absent.npz")], "absent.npz"),
    ):
        done = _cli(*argv)
        lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
        _one_line(done.returncode, "\n".join(lines), needle)
        imported = _imported(done.stderr)
        assert "tafa" in imported and "torch" not in imported and "onnxruntime" not in imported, (argv, imported)


def test_verify_reports_the_whole_commands_seconds_beside_the_suspects(world, capsys):
    from tafa.cli.options import process_seconds

    started = time.perf_counter()
    code, out, _ = _run(capsys, "verify", str(world["fingerprint"]), str(world["pirate"]), "--references",
                        str(world["refs"]), "--json")
    wall = time.perf_counter() - started
    verdict = json.loads(out)
    # the whole command opened 19 models and scored 18 references: more than the suspect's own time
    assert code == 0 and verdict["seconds"] < verdict["command_seconds"] <= wall
    code, out, _ = _run(capsys, "verify", str(world["fingerprint"]), str(world["pirate"]))
    assert re.search(r"^command seconds \d+\.\d\d \(the whole command", out, flags=re.M)
    # run as a program, the whole command counts from the process's start (imports included)
    probe = "import time; time.sleep(0.5); from tafa.cli.options import process_seconds; print(process_seconds())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert float(done.stdout) >= 0.5 and process_seconds() is not None


def test_the_time_budget_line_says_what_happened():
    from tafa.cli.fingerprint import shortcuts_note

    over = shortcuts_note([], 21.0, 60.0, 100.0)
    assert "within the 60 s budget" in over and "took 100 s, over the 60 s budget" in over
    assert "fitted" not in over
    within = shortcuts_note([], 21.0, 60.0, 30.0)
    assert "took 30 s" in within and "over" not in within
    assert "none (the exact analysis: no time budget" in shortcuts_note([], 21.0, None, 300.0)
    taken = shortcuts_note(["float32", "fewer LPs"], 200.0, 60.0, 70.0)
    assert taken.startswith("float32, fewer LPs") and "over the 60 s budget" in taken


def test_the_fingerprint_command_prints_a_true_budget_line(world):
    line = next(line for line in world["fingerprint_output"].splitlines() if "shortcuts" in line)
    took = float(re.search(r"it took (\d+) s", line).group(1))
    assert "within the 60 s budget" in line and ("over the" in line) == (took > 60), line


# ------------------------------------------------------------------------ 4. commitments

def test_another_fingerprints_commitment_is_named_as_such(world, classifier, capsys, tmp_path):
    other = Fingerprint.create(classifier.independent, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2)
    other_path = other.save(tmp_path / "other.tafa")
    mine = Fingerprint.load(world["fingerprint"])
    code, _, err = _run(capsys, "verify", str(world["fingerprint"]), str(world["pirate"]), "--commitment",
                        str(other_path) + ".commitment.json")
    _one_line(code, err, "commitment of another fingerprint", other.sha256, mine.sha256)
    assert "changed after it was committed." not in err.split("if the two were meant")[0]
    code, out, _ = _run(capsys, "verify", str(world["fingerprint"]), str(world["pirate"]), "--commitment",
                        str(world["fingerprint"]) + ".commitment.json")
    assert code == 0 and "commitment: unverified" in out


# ------------------------------------------------------------------------ 5. info

def test_info_prints_no_python_reprs(world, capsys):
    code, out, _ = _run(capsys, "info", str(world["fingerprint"]))
    assert code == 0
    for line in out.splitlines():
        if line.startswith("domain"):
            continue
        assert not re.search(r"[{}']|\[|\b(True|False|None)\b", line), line
    assert re.search(r"^second_stage\n  made\s+yes\n  scheme\s+tafa-boundary$", out, flags=re.M), out
    assert re.search(r"^extraction_stage\n  made\s+yes\n  scheme\s+tafa-students$", out, flags=re.M), out
    assert re.search(r"^stages\s+tafa, tafa-datalike, tafa-boundary, tafa-students$", out, flags=re.M)


# ------------------------------------------------------------------------ 6. create from a file, save

def test_create_takes_a_model_file_and_save_keeps_files_and_writes_the_commitment(world, tmp_path):
    from tafa.commitment import Commitment, commitment_path

    fingerprint = Fingerprint.create(str(world["owner"]), "box:0,1", points=8, directions=2, second_stage=False)
    assert fingerprint.input_shape == (1, 8, 8) and fingerprint.describe()["analysis"] == "white-box"
    same = Fingerprint.create(world["owner"], "box:0,1", points=8, directions=2, second_stage=False)  # a Path
    assert same.probe_sha256 == fingerprint.probe_sha256
    path = tmp_path / "owner.tafa"
    assert fingerprint.save(path) == path
    commitment = Commitment.load(commitment_path(path))
    assert commitment.check(Fingerprint.load(path)) is None
    before = path.read_bytes(), commitment_path(path).read_bytes()
    with pytest.raises(InvalidParameter, match="overwrite=True"):
        same.save(path)
    assert (path.read_bytes(), commitment_path(path).read_bytes()) == before
    (tmp_path / "lone.tafa.commitment.json").write_text("{}")  # a commitment alone also blocks
    with pytest.raises(InvalidParameter, match="lone.tafa.commitment.json"):
        same.save(tmp_path / "lone.tafa")
    assert not (tmp_path / "lone.tafa").exists()
    same.save(path, overwrite=True)
    assert Commitment.load(commitment_path(path)).fingerprint_sha256 == same.sha256 == Fingerprint.load(path).sha256


def test_create_never_unpickles_a_model_file(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    bad = tmp_path / "model.pt"
    bad.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(TafaError):
        Fingerprint.create(bad, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2)
    assert not marker.exists()
    with pytest.raises(InvalidParameter, match="service"):
        Fingerprint.create("http://127.0.0.1:1/v2/models/x", "box:0,1", input_shape=(1, 8, 8))


# ------------------------------------------------------------------------ 7. the demo's bound

def test_the_demo_says_which_bound_it_uses(classifier):
    from tafa.bench.demo import ALPHA, which_bound

    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), points=8, directions=2,
                                     second_stage=False)
    eight = fingerprint.calibrate(classifier.references[:8], alpha=ALPHA, parametric=True)
    said = which_bound(eight)
    assert "parametric bound" in said and "8 references support only 0.111" in said and "needs 99" in said
    by_rank = fingerprint.calibrate(classifier.references, alpha=0.1, parametric=True)
    assert "distribution-free" in which_bound(by_rank) and "parametric" not in which_bound(by_rank)


# ------------------------------------------------------------------------ 8. the README's Python

def test_the_readmes_python_blocks_run_as_written(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "PYTHONWARNINGS": "ignore"}
    outputs = []
    for block in blocks:  # in order, in one empty folder, as a reader would
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    assert outputs[-1].startswith("derived ") and "DERIVED" in outputs[-1]
    assert (tmp_path / "owner.tafa.commitment.json").exists()


def test_owner_data_that_does_not_fit_is_refused_in_one_line_and_data_that_fits_is_used(world, capsys, tmp_path):
    """``verify --owner-data``: inputs of another size, a pickled array and a file of another kind are
    each one line naming the file (nothing is unpickled); the owner's digits are used by the check."""
    fingerprint, pirate = str(world["fingerprint"]), str(world["pirate"])
    np.savez(tmp_path / "wide.npz", x=np.zeros((20, 65), dtype=np.float32), y=np.zeros(20))
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20))
    (tmp_path / "data.txt").write_text("1,2,3\n")
    for name, needle in (("wide.npz", "the fingerprint's input shape 1,8,8"), ("pickled.npz", "pickled.npz"),
                         ("data.txt", ".npz")):
        code, _, err = _run(capsys, "verify", fingerprint, pirate, "--owner-data", str(tmp_path / name))
        _one_line(code, err, name, needle)
    digits = load_task("digits").split("owner")
    np.savez(tmp_path / "digits.npz", x=digits.x.numpy()[:100], y=digits.y.numpy()[:100])
    code, out, err = _run(capsys, "verify", fingerprint, pirate, "--owner-data", str(tmp_path / "digits.npz"),
                          "--json")
    assert code == 0, err
    assert json.loads(out)["evasion"]["anchored"] is True


def test_fingerprint_owner_data_that_cannot_make_a_label_stage_is_one_line_and_nothing_is_written(world, capsys,
                                                                                                 tmp_path):
    """``fingerprint --owner-data``: inputs of another size, or too few of them, are one line naming
    the problem, and neither the fingerprint nor its commitment is written."""
    out = tmp_path / "labelled.tafa"
    np.savez(tmp_path / "wide.npz", x=np.zeros((20, 65), dtype=np.float32), y=np.zeros(20))
    digits = load_task("digits").split("owner")
    np.savez(tmp_path / "few.npz", x=digits.x.numpy()[:5], y=digits.y.numpy()[:5])
    for name, needle in (("wide.npz", "the owner's input shape 1,8,8"), ("few.npz", "samples")):
        code, _, err = _run(capsys, "fingerprint", str(world["owner"]), "--domain", "box:0,1", "--out", str(out),
                            "--owner-data", str(tmp_path / name))
        _one_line(code, err, name, needle)
        assert not out.exists() and not (tmp_path / "labelled.tafa.commitment.json").exists()


class _TwoOutputs(torch.nn.Module):
    """Returns its logits with its hidden units (a tuple), or its logits in a dict."""

    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.head, self.as_dict = torch.nn.Linear(64, 16), torch.nn.Linear(16, 10), as_dict

    def forward(self, x: torch.Tensor) -> object:
        hidden = torch.relu(self.hidden(x.reshape(len(x), -1)))
        return {"logits": self.head(hidden), "hidden": hidden} if self.as_dict else (self.head(hidden), hidden)


@pytest.mark.parametrize("as_dict,said", [(False, "a tuple of 2 values"),
                                          (True, "a dict with keys 'logits', 'hidden'")])
def test_a_model_returning_several_outputs_is_refused_in_one_line(as_dict, said):
    from tafa.domain import parse_domain
    from tafa.errors import ShapeMismatch

    with pytest.raises(ShapeMismatch, match=f"returns {said}, not one tensor: .*wrap the model"):
        Fingerprint.create(_TwoOutputs(as_dict), parse_domain("box:0,1", (64,)), input_shape=(64,))


def test_a_half_precision_owner_module_is_fingerprinted_with_its_extraction_stage():
    """Adam's steps underflow in float16 (NaN inputs, then 'answered NaN' while fingerprinting): the
    pull towards confident inputs runs in a float32 copy."""
    from tafa.domain import parse_domain

    torch.manual_seed(0)
    owner = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3)).half()
    fingerprint = Fingerprint.create(owner, parse_domain("box:0,1", (10,)), input_shape=(10,))
    assert fingerprint.extraction is not None and np.isfinite(fingerprint.extraction.probes.points).all()
    assert fingerprint.verify(owner, check_evasion=False).score > 0.99
