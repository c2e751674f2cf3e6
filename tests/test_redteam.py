"""Red-team suite for model files (issue 12): one test per finding, every hostile file made here.

Each hostile file is built by :func:`hostile_files`; where it is cheap a *control* shows the
payload is live (loaded naively, it writes its file or runs its kernel). tafa must end each
case in a :class:`~tafa.errors.TafaError` (one line, exit code 2 on the command line), with no
file written outside the sandbox's temporary folder, a sandbox worker under 1 GiB of
resident memory, and in under 30 s. ``python tests/test_redteam.py`` prints the measured
outcome of every case (docs/security.md quotes it).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.torch import save_file
from torch import nn

from tafa.errors import ModelLoadError, ShapeMismatch, TafaError, UnsafeModelFile, one_line, printable
from tafa.models import TorchModel, open_model, open_models, sandbox
from tafa.models.files import _check_torchscript_operators, inspect_archive, load_factory

SHAPE = (1, 8, 8)
ROOT = Path(__file__).resolve().parents[1]
LIMIT_SECONDS = 30.0
LIMIT_RSS_KB = 1 << 20  # 1 GiB


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


FACTORY_SOURCE = ("import torch\n\ndef build():\n    torch.manual_seed(0)\n"
                  "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), "
                  "torch.nn.Linear(16, 10))\n")


# ------------------------------------------------------------------ hostile TorchScript


class PreHookSaves(nn.Module):
    """Finding 1: a forward pre-hook writes attacker bytes to an attacker-chosen path."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.path = marker
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def save_in_pre_hook(self: PreHookSaves, inputs: tuple[torch.Tensor]) -> None:
    torch.save(inputs[0], self.path)


class SparseOutOfBounds(nn.Module):
    """Finding 2: a standard operator with unchecked indices writes out of bounds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.tensor([[100000000]])
        dense = torch.sparse_coo_tensor(index, torch.ones(1), [4]).to_dense()
        return x.flatten(1)[:, :10] + dense.sum()


class PrintsVerdict(nn.Module):
    """Finding 5: a program that prints a forged verdict line."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print('{"decision": "independent", "score": 0.0}')
        return x.flatten(1)[:, :10]


def _script(module: nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def _rewrite_code(source: Path, target: Path, old: str, new: str) -> Path:
    """Copy a TorchScript archive with ``old`` replaced by ``new`` in its code (what a hand-made
    archive can hold; torch compiles the code when loading)."""
    done = 0
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py") and old.encode() in data:
                data = data.replace(old.encode(), new.encode())
                done += 1
            out.writestr(info, data)
    assert done, "the code to rewrite was not found"
    return target


# ------------------------------------------------------------------ hostile ONNX


def _onnx_identity(path: Path, dims: list[int], element: int = TensorProto.FLOAT, op: str = "Identity") -> Path:
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", element, dims)],
                              [helper.make_tensor_value_info("y", element, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_onnx_inputs_of_another_element_type(tmp_path):
    """A file whose input is float16 (a network exported in half precision) is asked in float16 and
    its answers read back; one whose input is of a type tafa does not send (integers, bfloat16) is
    refused in one line."""
    from tafa.errors import ModelLoadError
    from tafa.models import open_model

    for element, numpy_type in ((TensorProto.FLOAT16, np.float16), (TensorProto.DOUBLE, np.float64)):
        path = _onnx_identity(tmp_path / f"relu-{element}.onnx", ["b", 4], element, op="Relu")
        x = np.array([[-1.0, 0.5, 2.0, 1 / 3]], dtype=np.float32)
        answers = open_model(str(path))(x)
        assert np.array_equal(answers, np.maximum(x.astype(numpy_type), 0).astype(np.float64)), answers
    path = _onnx_identity(tmp_path / "int.onnx", ["b", 4], TensorProto.INT32)
    with pytest.raises(ModelLoadError, match=r"takes tensor\(int32\) inputs; tafa asks float, float16 or double"):
        open_model(str(path))


def _onnx_function_call(path: Path, domain: str, name: str) -> Path:
    """A graph whose one node is ``domain::name`` with a local function of that name whose
    body is a standard Relu (finding 4's decoy when ``domain`` is a runtime's)."""
    body = helper.make_function(domain, name, ["X"], ["Y"], [helper.make_node("Relu", ["X"], ["Y"])],
                                opset_imports=[helper.make_opsetid("", 17)])
    graph = helper.make_graph([helper.make_node(name, ["x"], ["y"], domain=domain)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 10])])
    model = helper.make_model(graph, functions=[body],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


# ------------------------------------------------------------------ hostile zips and pickles


def _opcode_bomb(path: Path, megabytes: int) -> Path:
    """A torch-like zip whose ``data.pkl`` is ``megabytes`` MiB of cheap opcodes (NONE, POP),
    deflated to a few hundred KB: finding 7's hang."""
    chunk = b"N0" * (1 << 19)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        with out.open("archive/data.pkl", "w", force_zip64=True) as member:
            member.write(b"\x80\x02")
            for _ in range(megabytes):
                member.write(chunk)
            member.write(b"N.")
        out.writestr("archive/version", "3\n")
    return path


def _escaping_pickle(path: Path) -> Path:
    """A state-dict-like zip whose pickle imports a global whose name holds ANSI escapes."""
    payload = b"cposix\x1b[2J\x1b[H\nsystem\x1b]0;owned\x07\n(S'true'\ntR."
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("archive/data.pkl", payload)
        out.writestr("archive/version", "3\n")
    return path


def hostile_files(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (file, open_model options) for every model-file finding; markers under ``root/markers``."""
    root.mkdir(parents=True, exist_ok=True)
    markers = root / "markers"
    markers.mkdir(exist_ok=True)
    script_options = {"input_shape": SHAPE, "allow_torchscript": True}
    factory = root / "factory_source.py"
    factory.write_text(FACTORY_SOURCE)
    cases: dict[str, tuple[Path, dict[str, Any]]] = {}

    hooked = PreHookSaves(str(markers / "hook-wrote-this"))
    hooked.register_forward_pre_hook(save_in_pre_hook)
    plain = _script(hooked, root / "prehook_plain.pt")
    cases["1 pre-hook torch.save, (torch).save in code"] = (
        _rewrite_code(plain, root / "prehook_parens.pt", "torch.save(", "(torch).save("), script_options)
    cases["1 pre-hook torch.save, line break in code"] = (
        _rewrite_code(plain, root / "prehook_newline.pt", "torch.save(", "torch.save(\n    "), script_options)
    cases["2 sparse_coo_tensor out of bounds"] = (_script(SparseOutOfBounds(), root / "sparse.pt"), script_options)
    cases["5 print() of a forged verdict"] = (_script(PrintsVerdict(), root / "prints.pt"), script_options)
    cases["4 com.microsoft::Gelu with a decoy local function"] = (
        _onnx_function_call(root / "decoy.onnx", "com.microsoft", "Gelu"), {})
    cases["6 ONNX input [1, 16000, 16000]"] = (_onnx_identity(root / "wide.onnx", [1, 16000, 16000]), {})
    cases["6 ONNX input [1, 1e6, 1e6]"] = (_onnx_identity(root / "huge.onnx", [1, 10 ** 6, 10 ** 6]), {})
    cases["6 zip: data.pkl of 300 MiB opcodes"] = (_opcode_bomb(root / "opcodes300.pt", 300),
                                                    {"factory": f"{factory}:build", "input_shape": SHAPE})
    cases["6 zip: data.pkl of 60 MiB opcodes (under the member limit)"] = (
        _opcode_bomb(root / "opcodes60.pt", 60), {"factory": f"{factory}:build", "input_shape": SHAPE})
    links = root / "folder"
    links.mkdir(exist_ok=True)
    pagemap = links / "pagemap.onnx"
    if not pagemap.is_symlink():
        pagemap.symlink_to("/proc/self/pagemap")
    cases["6 symlink to /proc/self/pagemap"] = (pagemap, {})
    module = root / "whole_module.pt"
    torch.save(_net(), module)
    cases["7 torch.save(model): a pickled module"] = (module, {"input_shape": SHAPE})
    cases["9 pickle global with ANSI escapes"] = (_escaping_pickle(root / "ansi.pt"),
                                                  {"factory": f"{factory}:build", "input_shape": SHAPE})
    return cases


# ------------------------------------------------------------------ measuring one case


def measure(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Open ``path`` through the sandbox; what happened, how long, the worker's peak memory."""
    sandbox.last_worker_status = {}
    started = time.perf_counter()
    error_type: type[TafaError] | None = None
    try:
        open_model(path, **options)
        line = ""
    except TafaError as error:
        error_type, line = type(error), one_line(error)
    seconds = time.perf_counter() - started
    status = sandbox.last_worker_status if sandbox.last_worker_status.get("path") == str(path.absolute()) else {}
    return {"error": error_type, "outcome": error_type.__name__ if error_type else "opened", "line": line,
            "seconds": seconds, "worker_rss_kb": status.get("maxrss_kb", 0)}


def _assert_refused(result: dict[str, Any], error: type[TafaError], *needles: str) -> None:
    assert result["error"] is not None and issubclass(result["error"], error), result
    assert "\n" not in result["line"] and "\x1b" not in result["line"], result
    for needle in needles:
        assert needle in result["line"], (needle, result["line"])
    assert result["seconds"] < LIMIT_SECONDS, result
    assert result["worker_rss_kb"] < LIMIT_RSS_KB, result


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    return root, hostile_files(root)


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# ------------------------------------------------------------------ one test per finding


def test_1_torchscript_hooks_are_inspected_and_the_file_is_never_written(hostile, tmp_path):
    root, cases = hostile
    marker = root / "markers" / "hook-wrote-this"
    parens = cases["1 pre-hook torch.save, (torch).save in code"][0]
    # control: torch loads the rewritten archive and running it writes the attacker's file
    loaded = torch.jit.load(str(parens))
    loaded(torch.zeros(1, *SHAPE))
    assert marker.exists()
    marker.unlink()
    # the code-text screen alone misses it: only the graph check (hooks included) refuses it
    inspect_archive(parens, torchscript=True)
    with pytest.raises(UnsafeModelFile, match="aten::save"):
        _check_torchscript_operators(loaded, str(parens))
    for name in ("1 pre-hook torch.save, (torch).save in code", "1 pre-hook torch.save, line break in code"):
        path, options = cases[name]
        _assert_refused(measure(path, options), UnsafeModelFile)
        _assert_refused(measure(path, {"input_shape": SHAPE}), UnsafeModelFile, "--allow-torchscript")
    assert not marker.exists()


def test_2_memory_unsafe_operators_are_outside_the_allow_list_and_a_crash_is_one_error(hostile, tmp_path):
    _, cases = hostile
    path, options = cases["2 sparse_coo_tensor out of bounds"]
    _assert_refused(measure(path, options), UnsafeModelFile, "aten::sparse_coo_tensor")
    # whatever still crashes the worker (here: trusted factory code reading address 0) is one error
    crash = tmp_path / "crash_factory.py"
    crash.write_text("import ctypes\n\ndef build():\n    ctypes.string_at(0)\n")
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(weights))
    result = measure(weights, {"factory": f"{crash}:build", "input_shape": SHAPE})
    _assert_refused(result, ModelLoadError, "segmentation fault", "w.safetensors")


def test_3_factories_never_come_from_the_working_directory(tmp_path, monkeypatch):
    seized = tmp_path / "seized"
    seized.mkdir()
    marker = tmp_path / "cwd-code-ran"
    payload = f"open({str(marker)!r}, 'w').close()\n"
    (seized / "evil_factory.py").write_text(payload + FACTORY_SOURCE)
    (seized / "onnx.py").write_text(payload)
    weights = seized / "suspect.safetensors"
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(weights))
    suspect = seized / "suspect.onnx"
    torch.onnx.export(_net(), (torch.zeros(1, *SHAPE),), str(suspect), dynamo=False)
    monkeypatch.chdir(seized)
    before = list(sys.path)
    with pytest.raises(ModelLoadError, match="Cannot import factory"):
        load_factory("evil_factory:build")
    assert sys.path == before and not marker.exists()
    # the command line, started as the `tafa` script is (no current directory on sys.path)
    result = _cli(["fingerprint", str(weights), "--factory", "evil_factory:build", "--input-shape", "1,8,8",
                   "--domain", "box:0,1", "--out", str(tmp_path / "w.tafa")], cwd=seized)
    assert result["rc"] == 2 and not marker.exists(), result
    result = _cli(["fingerprint", str(suspect), "--domain", "box:0,1", "--out", str(tmp_path / "s.tafa"),
                   "--probes", "4", "--directions", "1"], cwd=seized)
    assert result["rc"] == 0 and not marker.exists(), result
    # run as `python -m` (the current directory first on sys.path): the sandbox's libraries still come first
    monkeypatch.syspath_prepend(str(seized))
    paths = sandbox._library_paths()
    assert paths[-1] == str(seized) and paths.index(str(seized)) > paths.index(str(Path(onnx.__file__).parents[1]))
    # an explicit path is how a factory outside installed packages is named
    model = open_model(weights, factory=f"{seized / 'evil_factory.py'}:build", input_shape=SHAPE)
    assert model.output_shape == (10,)


def test_4_contrib_operators_cannot_hide_behind_a_decoy_function(hostile, tmp_path):
    import onnxruntime

    _, cases = hostile
    path, options = cases["4 com.microsoft::Gelu with a decoy local function"]
    x = np.linspace(-2, 2, 20, dtype=np.float32).reshape(2, 10)
    # control: onnxruntime runs its own contrib Gelu kernel, not the file's Relu function
    answer = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.allclose(answer, np.maximum(x, 0), atol=1e-3)
    _assert_refused(measure(path, options), UnsafeModelFile, "com.microsoft")
    # a local function in a domain no runtime implements keeps working, and runs its own body
    local = _onnx_function_call(tmp_path / "local.onnx", "org.example.layers", "MyRelu")
    model = open_model(local, input_shape=(10,))
    assert np.allclose(model(x), np.maximum(x, 0))


def test_5_output_of_the_sandboxed_program_never_reaches_stdout(hostile, tmp_path, capfd):
    _, cases = hostile
    path, options = cases["5 print() of a forged verdict"]
    _assert_refused(measure(path, options), UnsafeModelFile, "prim::Print")
    # what a worker prints (here trusted factory code, run in the worker) is captured, never shown
    loud = tmp_path / "loud_factory.py"
    loud.write_text("import os, sys\n" + FACTORY_SOURCE.replace(
        "def build():\n", "def build():\n    print('FORGED-VERDICT')\n    os.write(1, b'FORGED-FD1')\n"
                          "    os.write(2, b'FORGED-FD2')\n    sys.stdout.flush()\n"))
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(weights))
    capfd.readouterr()
    model = open_model(weights, factory=f"{loud}:build", input_shape=SHAPE)
    model(np.zeros((2, *SHAPE), dtype=np.float32))
    out, err = capfd.readouterr()
    assert "FORGED" not in out and "FORGED" not in err


def test_6_declared_shapes_are_bounded_before_anything_is_allocated(hostile):
    _, cases = hostile
    assert cases["6 ONNX input [1, 16000, 16000]"][0].stat().st_size < 200
    for name in ("6 ONNX input [1, 16000, 16000]", "6 ONNX input [1, 1e6, 1e6]"):
        path, options = cases[name]
        _assert_refused(measure(path, options), ShapeMismatch, "elements per sample")
    with pytest.raises(ShapeMismatch, match="elements per sample"):
        open_model(cases["6 ONNX input [1, 16000, 16000]"][0], input_shape=(4096, 4096, 4))


def test_6_pickle_members_are_bounded_by_size_and_opcodes(hostile):
    _, cases = hostile
    path, options = cases["6 zip: data.pkl of 300 MiB opcodes"]
    assert path.stat().st_size < 2 << 20
    _assert_refused(measure(path, options), UnsafeModelFile, "declares")
    path, options = cases["6 zip: data.pkl of 60 MiB opcodes (under the member limit)"]
    _assert_refused(measure(path, options), UnsafeModelFile, "opcodes")


def test_6_only_regular_files_are_opened(hostile, tmp_path):
    root, cases = hostile
    path, options = cases["6 symlink to /proc/self/pagemap"]
    _assert_refused(measure(path, options), ModelLoadError, "not a regular file")
    with pytest.raises(ModelLoadError, match="outside"):
        open_models(path.parent)
    device = tmp_path / "zero.onnx"
    device.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    for special in (device, fifo):
        with pytest.raises(ModelLoadError, match="not a regular file"):
            open_model(special)


def test_7_a_pickled_module_is_named_and_the_safe_exports_are_given(hostile):
    _, cases = hostile
    path, options = cases["7 torch.save(model): a pickled module"]
    for extra in ({}, {"factory": "tests.factories:digits_mlp"}):
        result = measure(path, {**options, **extra})
        _assert_refused(result, UnsafeModelFile, "pickled torch module", "state_dict", "dynamo=False")
        assert "holds only weights" not in result["line"]


def test_9_terminal_escapes_from_files_are_escaped(hostile, tmp_path, capsys):
    from tafa import Fingerprint
    from tafa.cli import main

    _, cases = hostile
    path, options = cases["9 pickle global with ANSI escapes"]
    result = measure(path, options)
    _assert_refused(result, UnsafeModelFile, "\\x1b[2J")
    owner = TorchModel(_net(), SHAPE, name="owner\x1b[2J\x1b[31m\rderived\u202e")
    fingerprint = Fingerprint.create(owner, "box:0,1", points=4, directions=1, progress=False)
    saved = tmp_path / "escape.tafa"
    fingerprint.save(saved)
    capsys.readouterr()
    assert main(["--quiet", "verify", str(saved), str(path), "--input-shape", "1,8,8",
                 "--factory", options["factory"]]) == 2
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\\x1b[2J" in err
    assert main(["info", str(saved)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\r" not in out + err and "\u202e" not in out + err
    assert "\\x1b[2J" in out
    assert printable("a\x1b[0mb\x9bc\td") == "a\\x1b[0mb\\x9bc\td"


# ------------------------------------------------------------------ the command line, measured


def _cli(argv: list[str], cwd: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run ``tafa ARGV`` as the installed script runs (``python -P``: no current directory on
    sys.path) in ``cwd``; exit code, output, seconds and the peak resident memory of the
    process tree (``wait4``: tafa, the zygote and its workers). ``timeout``: killed after it."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-P", "-m", "tafa.cli", "--quiet", *argv], cwd=cwd,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n, s: streams.__setitem__(n, s.read()), args=(n, s))
               for n, s in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    watchdog = threading.Timer(timeout, process.kill) if timeout is not None else None
    if watchdog is not None:
        watchdog.start()
    _, status, usage = os.wait4(process.pid, 0)
    if watchdog is not None:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    return {"rc": process.returncode, "out": streams["out"].decode(errors="replace"),
            "err": streams["err"].decode(errors="replace"), "seconds": time.perf_counter() - started,
            "rss_kb": usage.ru_maxrss}


@pytest.fixture(scope="module")
def startup_seconds() -> float:
    """Seconds Python takes to import tafa on this machine right now: paid twice by a command
    that opens a file (tafa itself, then the sandbox's zygote), and not the hostile file's doing.
    On a quiet machine it is about 3 s; on a shared, loaded one it can be ten times that."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-P", "-c", "import tafa.models.files"], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - started


@pytest.mark.parametrize("name", ["1 pre-hook torch.save, (torch).save in code", "6 ONNX input [1, 16000, 16000]",
                                  "6 zip: data.pkl of 60 MiB opcodes (under the member limit)"])
def test_command_line_exit_2_one_line_bounded_and_nothing_written(hostile, tmp_path, name, startup_seconds):
    root, cases = hostile
    path, options = cases[name]
    home = tmp_path / "cwd"
    home.mkdir()
    argv = ["fingerprint", str(path), "--domain", "box:0,1", "--out", str(home / "out.tafa")]
    if "input_shape" in options:
        argv += ["--input-shape", ",".join(map(str, options["input_shape"]))]
    if "factory" in options:
        argv += ["--factory", options["factory"]]
    before = _files_under(root) | _files_under(home)
    result = _cli(argv, cwd=home)
    assert result["rc"] == 2, result
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tafa: error:") and not result["out"], result
    assert result["seconds"] < LIMIT_SECONDS + 2 * startup_seconds and result["rss_kb"] < LIMIT_RSS_KB, result
    assert _files_under(root) | _files_under(home) == before


def main() -> None:
    """Print the measured outcome of every case (for docs/security.md)."""
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        cases = hostile_files(Path(folder))
        print("| case | outcome | seconds | worker peak RSS (MiB) |\n|---|---|---|---|")
        for name, (path, options) in cases.items():
            result = measure(path, options)
            print(f"| {name} | {result['outcome']}: {printable(result['line'])[:110]} | {result['seconds']:.2f} | "
                  f"{result['worker_rss_kb'] / 1024:.0f} |")
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()


def test_a_suspect_is_never_parsed_in_tafas_process(tmp_path, monkeypatch):
    """Reports describe a sandboxed suspect without importing it: only an owner's white-box
    analysis (torch_module) brings a graph into tafa's process."""
    import tafa.models.onnx_import as onnx_import

    path = tmp_path / "suspect.onnx"
    torch.onnx.export(_net(), (torch.zeros(1, *SHAPE),), str(path), dynamo=False)
    model = open_model(path)
    calls = []
    monkeypatch.setattr(onnx_import, "import_onnx", lambda *a: calls.append(a))
    assert model.describe()["white_box"] is False and not calls


def _mapped_libraries(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as handle:
        return handle.read()


def test_onnx_files_run_in_workers_without_torch_and_a_worker_refuses_another_flavour(tmp_path, monkeypatch):
    """ONNX files are opened by workers of the zygote that imports onnxruntime and not torch
    (issue 15: the fixed cost of a verification); TorchScript by the torch zygote's. A worker
    refuses a file of the other flavour (it would import torch under the worker's limits)."""
    onnx_path, script_path = tmp_path / "model.onnx", tmp_path / "model.pt"
    torch.onnx.export(_net(), (torch.zeros(1, *SHAPE),), str(onnx_path), dynamo=False)
    torch.jit.trace(_net(), torch.zeros(1, *SHAPE)).save(str(script_path))
    onnx_model = open_model(onnx_path)
    script_model = open_model(script_path, allow_torchscript=True, input_shape=SHAPE)
    x = np.random.default_rng(0).uniform(size=(1, *SHAPE))
    assert np.allclose(onnx_model(x), script_model(x), atol=1e-5)
    onnx_maps, script_maps = _mapped_libraries(onnx_model._pid), _mapped_libraries(script_model._pid)
    assert "onnxruntime" in onnx_maps and "libtorch" not in onnx_maps
    assert "libtorch" in script_maps
    monkeypatch.setattr(sandbox, "flavour", lambda path: "onnx")  # the parent asks the wrong zygote
    with pytest.raises(ModelLoadError, match="not a file of the 'onnx' sandbox"):
        open_model(script_path, allow_torchscript=True, input_shape=SHAPE)


# ------------------------------------------------------------------ a hostile registry database (issue 13)

#: What an adversary who can write the registry's file adds to it; each is refused when the
#: registry is opened, before any statement of tafa's runs.
HOSTILE_REGISTRY = {
    "trigger rewriting verdicts": "CREATE TRIGGER launder AFTER INSERT ON verdicts BEGIN "
                                  "UPDATE verdicts SET decision = 'independent' WHERE rowid = NEW.rowid; END",
    "recursive trigger": "CREATE TRIGGER again AFTER UPDATE ON scans BEGIN "
                         "UPDATE scans SET seconds = seconds + 1 WHERE id = NEW.id; END",
    "trigger that never ends": "CREATE TRIGGER spin BEFORE INSERT ON scans BEGIN SELECT count(*) FROM "
                               "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c); END",
    "view named with escapes": 'CREATE VIEW "\x1b[2J\x07\u202eview\nforged" AS SELECT 1',
    "table with a 100k-character name": f'CREATE TABLE "{"t" * 100_000}" (x)',
    "trigger named with escapes": 'CREATE TRIGGER "\x1b]0;owned\x07" AFTER INSERT ON suspects BEGIN SELECT 1; END',
    "negative schema version": "PRAGMA user_version = -1",
}


@pytest.fixture(scope="module")
def registry_case(tmp_path_factory):
    """A registered fingerprint of the test network, and an ONNX copy of it to scan."""
    from tafa import Fingerprint
    from tafa.registry import Registry

    root = tmp_path_factory.mktemp("hostile-registry")
    net = _net()
    fingerprint = Fingerprint.create(net, "box:0,1", input_shape=SHAPE, points=4, directions=2)
    fingerprint.save(root / "owner.tafa")
    torch.onnx.export(net, (torch.zeros(1, *SHAPE),), str(root / "copy.onnx"), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    with Registry(root / "clean.sqlite") as registry:
        registry.add(root / "owner.tafa", "owner")
    return root


def _hostile_registry(root: Path, target: Path, statement: str) -> Path:
    import shutil
    import sqlite3

    shutil.copyfile(root / "clean.sqlite", target)
    raw = sqlite3.connect(target)
    raw.execute(statement)
    raw.commit()
    raw.close()
    return target


@pytest.mark.parametrize("name", HOSTILE_REGISTRY)
def test_13_a_registry_database_with_foreign_objects_is_refused_in_one_line(registry_case, tmp_path, capsys, name):
    from tafa.cli import main

    db = _hostile_registry(registry_case, tmp_path / "registry.sqlite", HOSTILE_REGISTRY[name])
    before = (_files_under(tmp_path), db.read_bytes())
    for command in (["registry", "list"], ["registry", "scans"], ["scan", str(registry_case / "copy.onnx")]):
        workers = ["--workers", "0"] if command[0] == "scan" else []
        code = main(["--quiet", *command, "--registry", str(db), *workers])
        out, err = capsys.readouterr()
        assert code == 2 and not out and len(err.splitlines()) == 1 and err.startswith("tafa: error:"), (out, err)
        assert "refused" in err and len(err) < 700 and not any(c in err for c in "\x1b\x07\r\u202e"), err
    assert (_files_under(tmp_path), db.read_bytes()) == before  # nothing written, the file untouched


def test_13_a_never_ending_trigger_is_one_line_in_bounded_time_and_memory(registry_case, tmp_path, startup_seconds):
    db = _hostile_registry(registry_case, tmp_path / "registry.sqlite", HOSTILE_REGISTRY["trigger that never ends"])
    # the process's own peak (VmHWM): ru_maxrss of a child forked from pytest carries pytest's peak over
    from test_stored_state import run_measured

    result, err = run_measured("--quiet", "scan", str(registry_case / "copy.onnx"), "--registry", str(db),
                               "--workers", "0")
    lines = [line for line in err.splitlines() if line.strip()]
    assert result["code"] == 2 and len(lines) == 1 and "trigger 'spin' that tafa did not create" in lines[0], err
    assert result["seconds"] < 10 + 2 * startup_seconds and result["peak_bytes"] < 512 << 20, result
