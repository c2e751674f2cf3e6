"""The command line: the README's workflow with real model files, and every bad input."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tafa.signature.consistency import CHECK_QUERIES
from tafa.signature.scales import SCREEN_PROBES
import torch
from safetensors.torch import save_file

from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.cli import main

#: The coarse step's queries a plain suspect is not asked: the screen clears it at its first probes
#: (each probe: its centre and 4 directions either side).
UNSCREENED = 576 - SCREEN_PROBES * 9


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
    assert code == 0 and info["analysis"] == "white-box"
    assert info["stages"] == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-students"]
    # the first stage: 576 queries at the fingerprint's step, 576 at its coarse scale (tafa.signature.scales)
    assert info["queries_per_stage"][0] == 2 * 576
    assert info["queries_per_verification"] == sum(info["queries_per_stage"])


def test_verify_pirate_and_independent(files, fingerprint_file, capsys):
    verdicts = {}
    for name in ("pirate", "independent"):
        # the default alpha (0.01) with 18 references: only with --parametric, a normal tail above their maximum
        code, out, _ = _run(capsys, "verify", str(fingerprint_file), str(files[name]), "--references",
                            str(files["references"]), "--input-shape", "1,8,8", "--allow-torchscript", "--json",
                            "--parametric")
        assert code == 0
        verdicts[name] = json.loads(out)
    assert verdicts["pirate"]["decision"] == "derived"
    assert verdicts["independent"]["decision"] == "independent"
    for verdict in verdicts.values():
        assert {"decision", "score", "threshold", "alpha_requested", "bound", "queries", "n_references"} <= set(verdict)
        # four stages (an MLP classifier), each a parametric tail at a quarter of alpha; a later one runs only
        # when the earlier ones do not fire
        stages = sum(stage["queries"] for stage in verdict["stages"])
        assert verdict["queries"] == stages + verdict["evasion"]["queries"]
        assert verdict["n_references"] == 18
        assert verdict["stages"][0]["queries"] == 2 * 576 - UNSCREENED  # with its coarse scale, screened
        assert verdict["bound_method"] == "bonferroni:parametric+parametric+parametric+parametric"
        assert verdict["rank_bound"] == pytest.approx(1 / 19) and "parametric" in verdict["bound_note"]
        assert verdict["alpha_requested"] == 0.01 and verdict["bound"] == pytest.approx(0.01)
    assert verdicts["independent"]["stages"][1]["queries"] > 0


def test_human_verdict_and_undecided_without_references(files, fingerprint_file, capsys):
    code, out, _ = _run(capsys, "verify", str(fingerprint_file), str(files["pirate"]))
    assert code == 0 and "UNDECIDED" in out and "queries" in out


@pytest.mark.parametrize("owner", ["owner_script", "owner_safetensors"])
def test_fingerprint_from_torchscript_and_safetensors(files, owner, capsys, tmp_path):
    out = tmp_path / "fp.tafa"
    source = ["tests.factories:digits_mlp", "--weights", str(files[owner])] if owner == "owner_safetensors" else [
        str(files[owner]), "--allow-torchscript"]
    code, printed, _ = _run(capsys, "fingerprint", *source, "--domain", "box:0,1", "--out", str(out),
                            "--input-shape", "1,8,8", "--json")
    assert code == 0 and json.loads(printed)["analysis"] == "white-box"
    code, printed, _ = _run(capsys, "verify", str(out), str(files["owner_onnx"]), "--json")
    assert json.loads(printed)["score"] == pytest.approx(1.0, abs=1e-5)


def test_boundary_scheme_end_to_end(files, capsys, tmp_path):
    """The adaptive scheme through the command line: its queries are counted and bounded."""
    out = tmp_path / "boundary.tafa"
    code, printed, _ = _run(capsys, "fingerprint", str(files["owner_onnx"]), "--domain", "box:0,1", "--out", str(out),
                            "--scheme", "tafa-boundary", "--json")
    assert code == 0 and json.loads(printed)["queries_per_verification"] == 29 * 178  # 29 lines of 178 queries
    for suspect, low, high in (("owner_onnx", 0.999, 1.0), ("pirate", 0.85, 1.0)):
        code, printed, _ = _run(capsys, "verify", str(out), str(files[suspect]), "--json")
        verdict = json.loads(printed)
        assert code == 0 and low <= verdict["score"] <= high and 0 < verdict["queries"] <= 29 * 178


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
        (["fingerprint", str(files["owner_script"]), "--domain", "box:0,1", "--out", str(out)], "--allow-torchscript"),
        (["fingerprint", str(files["owner_script"]), "--domain", "box:0,1", "--out", str(out), "--allow-torchscript"],
         "input-shape"),
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


# -- rough edges a new user hit (issue 11) --------------------------------------------------------

def test_torchscript_and_state_dict_files_take_the_fingerprints_input_shape(files, fingerprint_file, classifier,
                                                                            capsys, tmp_path):
    references = tmp_path / "mixed"
    references.mkdir()
    for i, model in enumerate(classifier.references[:6]):
        _onnx(model, references / f"ref{i:02d}.onnx")
    _script(classifier.references[6], references / "ref06.pt")
    save_file({k: v.contiguous() for k, v in _factory_reference(classifier).state_dict().items()},
              str(references / "ref07.safetensors"))
    code, out, err = _run(capsys, "verify", str(fingerprint_file), str(files["independent"]), "--references",
                          str(references), "--factory", "tests.factories:digits_mlp", "--allow-torchscript", "--json")
    assert code == 0, err
    verdict = json.loads(out)
    # eight references cannot support the default alpha 0.01 by rank: scored, not decided
    assert verdict["n_references"] == 8 and verdict["queries"] == 2 * 576 - UNSCREENED + CHECK_QUERIES
    assert verdict["decision"] == "undecided"
    assert "needs at least 99 references" in verdict["bound_note"]


def _factory_reference(classifier) -> torch.nn.Module:
    """A trained reference of the factory's architecture (digits_mlp) not used otherwise in the test."""
    from tests.factories import digits_mlp

    model = digits_mlp()
    for candidate in classifier.references[7:]:
        shapes = {k: v.shape for k, v in candidate.state_dict().items()}
        if shapes == {k: v.shape for k, v in model.state_dict().items()}:
            return candidate
    raise AssertionError("no reference of the factory's architecture")


def test_a_bad_reference_is_named_as_a_reference(files, fingerprint_file, classifier, capsys, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    _onnx(classifier.references[0], wrong / "ref00.onnx")
    _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)), wrong / "ref01.onnx")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "ref00.onnx").write_bytes(b"\x08\x07garbage" * 10)
    for folder, flag, needle in ((wrong, "--references", "returns outputs of shape"),
                                 (corrupt, "--references", "not a loadable onnx"),
                                 (wrong, "--positives", "returns outputs of shape")):
        code, _, err = _run(capsys, "verify", str(fingerprint_file), str(files["pirate"]), flag, str(folder))
        _assert_one_line_error(code, err, needle, "ref0")
        assert ("Positive model" if flag == "--positives" else "Reference model") in err and "Suspect" not in err


def test_quiet_is_accepted_after_the_command(files, fingerprint_file, capsys):
    code = main(["verify", str(fingerprint_file), str(files["pirate"]), "--json", "--quiet"])
    captured = capsys.readouterr()
    # no references: both stages are measured and reported
    total = Fingerprint.load(fingerprint_file).queries()
    assert code == 0 and captured.err == ""
    assert json.loads(captured.out)["queries"] == total - UNSCREENED + CHECK_QUERIES


def test_fingerprint_out_refuses_to_overwrite_without_force(files, capsys, tmp_path):
    out = tmp_path / "owner.tafa"
    argv = ["fingerprint", str(files["owner_onnx"]), "--domain", "box:0,1", "--out", str(out), "--probes", "4",
            "--directions", "2", "--json"]
    code, printed, _ = _run(capsys, *argv)
    assert code == 0
    first = json.loads(printed)
    commitment = Path(first["commitment"])
    before = (out.read_bytes(), commitment.read_bytes())
    code, printed, err = _run(capsys, *argv[:-1], "--seed", "1")
    _assert_one_line_error(code, err, "--force", str(out), "already exist")
    assert printed == "" and (out.read_bytes(), commitment.read_bytes()) == before
    out.unlink()  # the commitment alone is protected too
    code, _, err = _run(capsys, *argv[:-1], "--seed", "1")
    _assert_one_line_error(code, err, "--force", "commitment.json")
    assert not out.exists() and commitment.read_bytes() == before[1]
    code, printed, _ = _run(capsys, *argv, "--seed", "1", "--force")
    assert code == 0 and json.loads(printed)["sha256"] != first["sha256"]


def test_info_rounds_floats_for_people_and_json_keeps_them(fingerprint_file, capsys):
    code, out, _ = _run(capsys, "info", str(fingerprint_file))
    line = next(line for line in out.splitlines() if line.startswith("fingerprint_seconds"))
    shown = line.split()[-1]
    assert code == 0 and len(shown.partition(".")[2]) <= 2, line
    code, out, _ = _run(capsys, "info", str(fingerprint_file), "--json")
    exact = json.loads(out)["fingerprint_seconds"]
    assert float(shown) == pytest.approx(exact, abs=0.006) and isinstance(exact, float)


def test_argument_errors_are_one_line_and_exit_2(files, capsys, tmp_path):
    out = tmp_path / "never.tafa"
    for argv, needle in (
        (["fingerprint", str(files["owner_onnx"]), "--domain", "box:0,1", "--out", str(out), "--scheme", "nope"],
         "--scheme"),
        (["verify", "only-one-argument"], "required"),
        (["fingerprint", str(files["owner_onnx"]), "--input-shape", "1,x"], "--input-shape"),
        (["bench", "--size", "huge"], "--size"),
        (["nonsense"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(["--quiet", *argv])
        err = capsys.readouterr().err
        _assert_one_line_error(stopped.value.code, err, needle)
    assert not out.exists()


def test_the_all_kinds_demo_says_which_copy_it_missed():
    from tafa.bench.demo import _misses

    rows = [("classification", "int8 copy", 0.99, 0.80, "derived", 576, 0.01, 1.0),
            ("regression", "pirated copy (prune 50% + fine-tune)", 0.6742, 0.8359, "independent", 576, 0.01, 1.0),
            ("regression", "independent model", 0.2, 0.8359, "independent", 576, 0.01, 1.0),
            ("generation", "independent model", 0.95, 0.90, "derived", 576, 0.01, 1.0)]
    lines = [line for line in _misses(rows) if line]
    assert len(lines) == 2
    assert "MISSED" in lines[0] and "regression pirated copy" in lines[0] and "0.6742" in lines[0] \
        and "0.8359" in lines[0]
    assert "FALSE MATCH" in lines[1] and "generation independent model" in lines[1]
    assert _misses(rows[:1]) == []


def test_the_readmes_commands_parse():
    """Every ``tafa ...`` line of the README's shell blocks is accepted by the parser (optional
    parts in brackets included), so the README shows no option the command line lacks."""
    import re
    import shlex

    from tafa.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    lines = " ".join(blocks).replace("\\\n", " ").splitlines()
    commands = [line.split(" #")[0].replace("[", "").replace("]", "").strip()
                for line in lines if line.strip().startswith("tafa ")]
    assert len(commands) >= 10
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert callable(args.run), command


def test_the_parser_imports_no_heavy_library_and_its_light_lists_match_the_registries():
    from tafa.bench.scenarios import SIZES
    from tafa.cli import bench, options, registry
    from tafa.scanning import ENGINES
    from tafa.scheme import SCHEMES

    assert sorted(options.SCHEME_NAMES) == sorted(SCHEMES)
    import inspect

    from tafa.models.http import HttpModel
    from tafa.models.options import OpenOptions

    client = inspect.signature(HttpModel).parameters
    for name, value in options.SERVICE_DEFAULTS.items():  # one set of defaults for services
        assert getattr(OpenOptions(), name) == client[name].default == value, name
    assert sorted(bench.SIZES) == sorted(SIZES) and sorted(registry.ENGINE_NAMES) == sorted(ENGINES)
    probe = ("import sys, contextlib, io; from tafa.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
             "    main(['verify', '--help'])\n"
             "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_verify_of_an_onnx_suspect_imports_no_torch_and_starts_the_sandbox_first(files, fingerprint_file):
    """tafa verify's fixed cost (issue 15): the sandbox's zygote starts before the command imports
    anything heavy (its launcher needs neither torch nor numpy), and verifying an ONNX suspect with
    the default scheme imports neither torch nor scipy into the command, and starts only the ONNX
    zygote (onnxruntime, no torch: its process maps no libtorch)."""
    probe = ("import sys, contextlib, io; import tafa.models.zygote as zygote\n"
             "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
             f"zygote.prestart([{str(files['pirate'])!r}]); early = zygote._zygotes['onnx']; zygote.shutdown()\n"
             "print(early.used, early.process.returncode)\n"  # never used: killed at once, not waited for
             "from tafa.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    code = main(['--quiet', 'verify', {str(fingerprint_file)!r}, {str(files['pirate'])!r}, '--json'])\n"
             "used = zygote._zygotes['onnx']\n"
             "maps = open(f'/proc/{used.process.pid}/maps').read()\n"
             "print(code, sorted(zygote._zygotes), used.used, 'onnxruntime' in maps, 'libtorch' in maps)\n"
             "print(sorted(m for m in ('torch', 'scipy', 'safetensors') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", f"False {-signal.SIGKILL}", "0 ['onnx'] True True False", "[]"], \
        done.stdout + done.stderr


def test_verify_of_a_torchscript_suspect_starts_the_torch_sandbox(files, fingerprint_file):
    """The other flavour, for contrast: a TorchScript suspect is opened by the zygote that
    imports torch (and the command itself still needs no torch to score it)."""
    probe = ("import sys, contextlib, io; import tafa.models.zygote as zygote\n"
             "from tafa.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             f"    code = main(['--quiet', 'verify', {str(fingerprint_file)!r}, {str(files['independent'])!r}, "
             "'--allow-torchscript', '--json'])\n"
             "maps = open(f'/proc/{zygote._zygotes[\"torch\"].process.pid}/maps').read()\n"
             "print(code, sorted(zygote._zygotes), 'libtorch' in maps, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["0 ['torch'] True False"], done.stdout + done.stderr


def test_the_demo_numbers_its_steps_as_it_tells_them():
    import inspect
    import re

    from tafa.bench import demo

    told: list[str] = []
    step = demo.Steps(told.append)
    for text in ("owner", "pirate", "references", "fingerprint"):
        step(text)
    step("verify the pirated copy", gap=True)
    step("verify the independent model", gap=True)
    numbers = [int(re.match(r"\n?(\d+)\. ", line).group(1)) for line in told]
    assert numbers == [1, 2, 3, 4, 5, 6]
    # the story numbers nothing by hand (the demo once printed two steps "5.")
    assert not re.search(r"say\(f?\"\\?n?\d+\.", inspect.getsource(demo._run_kind))


def test_verify_of_a_service_takes_the_shared_opening_options(classifier, fingerprint_file, capsys, tmp_path):
    import numpy as np

    from kserve_server import KServeServer

    def predict(x):
        with torch.no_grad():
            return classifier.owner(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    cache = tmp_path / "answers"
    with KServeServer(predict, input_shape=(1, 8, 8), output_shape=(10,)) as server:
        argv = ["verify", str(fingerprint_file), server.url, "--answer-cache", str(cache), "--retries", "1",
                "--max-wait", "2", "--timeout", "10", "--json"]
        first = _run(capsys, *argv)
        second = _run(capsys, *argv)
        code, _, err = _run(capsys, *argv[:-1], "--max-queries", "10")
    for result in (first, second):
        assert result[0] == 0, result[2]
    sent, again = json.loads(first[1])["suspect"], json.loads(second[1])["suspect"]
    # the fingerprint's queries (both stages: no references) are answered from the cache the second time
    # (a few inputs the client re-asks to check the service's consistency may be sent again)
    total = Fingerprint.load(fingerprint_file).queries() - UNSCREENED  # the screen clears this plain service
    assert sent["network_queries"] >= total and again["cached_queries"] >= total
    # (the evasion check asks fresh inputs every time: those, and the client's re-asks, go out again)
    assert again["network_queries"] <= CHECK_QUERIES + (sent["network_queries"] - total - CHECK_QUERIES) * 2 < total
    assert json.loads(second[1])["score"] == pytest.approx(1.0, abs=1e-5)
    _assert_one_line_error(code, err, str(total + UNSCREENED + CHECK_QUERIES))  # the most it could need
    code, _, err = _run(capsys, "verify", str(fingerprint_file), "http://127.0.0.1:1/v2/models/x", "--retries", "-1")
    _assert_one_line_error(code, err, "'retries'")


def test_info_summarises_record_lists_for_people():
    from tafa.cli.fingerprint import _for_people

    records = [{"name": "data-free int8", "relative_weight_change": 0.0021},
               {"name": "data-free ft_all_large", "relative_weight_change": 0.82}, {"name": "look-alike 0"}]
    assert _for_people(records) == "3 records; relative weight change 0.00-0.82 (--json lists them)"
    assert _for_people(0.123456) == "0.12" and _for_people("a\x1b[31mb") != "a\x1b[31mb"
