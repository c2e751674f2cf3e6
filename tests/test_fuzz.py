"""Fuzzing the model loaders and the fingerprint reader with damaged files.

Each kind of file (ONNX, safetensors + factory, TorchScript, torch state dict, fingerprint)
starts from a real one made from the trained owner, and hypothesis damages it: bit flips,
overwritten, inserted and deleted bytes, truncation, random bytes behind a real header, and,
for zip archives, damage inside one member written back with a valid CRC (so that it gets
past the zip layer into the pickles, the TorchScript code and the tensor records). A further
kind rewrites a fingerprint's JSON header and arrays and recomputes its hash, so that the
checks behind the hash are reached too.

Every case must end in a :class:`~tafa.errors.TafaError`, or, when the damage left a valid
file, in a model that answers with the right shape (a flipped weight is still a model) or a
fingerprint with unchanged content; never another exception, a hang or a crash. The bulk
runs through ``load_file`` (the loader the sandbox worker runs, called in-process here so
that thousands of cases fit in a minute) / ``Fingerprint.load``, a sample through
``tafa.cli.main`` (exit code 0 or 2, and exactly one line on stderr with 2), where model
files go through the sandbox of :mod:`tafa.models.sandbox` as in production.

The normal suite runs a fixed (derandomised) set sized to stay near a minute; set
``TAFA_FUZZ_EXAMPLES=N`` to run N fresh random examples per kind. The counts per kind and
outcome are printed at the end of the module (``-rA`` or ``-s`` not needed).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from tafa import Fingerprint
from tafa.cli import main
from tafa.errors import TafaError
from tafa.fingerprint_file import content_hash
from tafa.models import TorchModel
from tafa.models.files import load_file

SHAPE = (1, 8, 8)
FACTORY = "tests.factories:digits_mlp"
RANDOM_EXAMPLES = int(os.environ.get("TAFA_FUZZ_EXAMPLES", "0"))

#: Examples per kind in the normal suite (bulk, through the library).
BULK = {"onnx": 1500, "safetensors": 1000, "torchscript": 1000, "state_dict": 1200, "fingerprint": 2000,
        "fingerprint header": 1000}
#: Examples per kind through the command line.
CLI = 40
#: Seconds one case may take before it counts as a hang.
HANG_SECONDS = 60

COUNTS: Counter = Counter()
X = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)


def _settings(examples: int) -> settings:
    return settings(max_examples=RANDOM_EXAMPLES or examples, deadline=None, derandomize=not RANDOM_EXAMPLES,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


class Hang(Exception):
    """A case ran longer than :data:`HANG_SECONDS`."""


@contextlib.contextmanager
def _no_hang():
    def alarm(*_):
        raise Hang(f"a case ran longer than {HANG_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------- damage


def _position(draw, size: int) -> int:
    """Somewhere in the file, favouring the head and the tail (headers, zip directories)."""
    if size == 0:
        return 0
    region = draw(st.sampled_from(["head", "tail", "anywhere"]))
    if region == "head":
        return draw(st.integers(0, min(size, 2048) - 1))
    if region == "tail":
        return draw(st.integers(max(0, size - 2048), size - 1))
    return draw(st.integers(0, size - 1))


def _damage_bytes(draw, data: bytes) -> tuple[str, bytes]:
    how = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate", "random"]))
    data = bytearray(data)
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            if data:
                data[_position(draw, len(data))] ^= draw(st.integers(1, 255))
    elif how == "overwrite" and data:
        at = _position(draw, len(data))
        patch = draw(st.binary(min_size=1, max_size=32))
        data[at:at + len(patch)] = patch
    elif how == "insert":
        at = _position(draw, len(data) + 1) if data else 0
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    elif how == "delete" and data:
        at = _position(draw, len(data))
        del data[at:at + draw(st.integers(1, 256))]
    elif how == "truncate":
        data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
    else:  # random bytes, possibly behind the real file's first bytes (to get past format sniffing)
        how = "random"
        data = bytearray(data[:draw(st.integers(0, 64))]) + draw(st.binary(max_size=4096))
    return how, bytes(data)


@st.composite
def damaged(draw, original: bytes, members: tuple[str, ...] = ()) -> tuple[str, bytes]:
    """A damaged copy of ``original`` and how it was damaged; ``members`` (of a zip) may be
    damaged inside and written back with a valid CRC."""
    if members and draw(st.booleans()):
        member = draw(st.sampled_from(members))
        with zipfile.ZipFile(io.BytesIO(original)) as archive:
            contents = {info.filename: archive.read(info) for info in archive.infolist()}
        how, contents[member] = _damage_bytes(draw, contents[member])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in contents.items():
                archive.writestr(name, content)
        return f"member {member.split('/', 1)[-1]}: {how}", buffer.getvalue()
    return _damage_bytes(draw, original)


# ---------------------------------------------------------------------- seeds and checks


@pytest.fixture(scope="module")
def seeds(classifier, tmp_path_factory, request):
    root = tmp_path_factory.mktemp("fuzz")
    owner = classifier.owner
    paths = {"onnx": root / "seed.onnx", "safetensors": root / "seed.safetensors",
             "torchscript": root / "seed-script.pt", "state_dict": root / "seed-state.pt",
             "fingerprint": root / "seed.tafa"}
    torch.onnx.export(owner, (torch.zeros(1, *SHAPE),), str(paths["onnx"]), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    save_file({k: v.contiguous() for k, v in owner.state_dict().items()}, str(paths["safetensors"]))
    torch.jit.trace(owner, torch.zeros(1, *SHAPE)).save(str(paths["torchscript"]))
    torch.save(owner.state_dict(), paths["state_dict"])
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=SHAPE, points=8, directions=2)
    fingerprint.save(paths["fingerprint"])
    data = {kind: path.read_bytes() for kind, path in paths.items()}
    members = {}
    for kind in ("torchscript", "state_dict"):
        with zipfile.ZipFile(paths[kind]) as archive:
            names = archive.namelist()
        # every member but the bulk of the tensor records, and one tensor record
        records = [name for name in names if "/data/" in name]
        members[kind] = tuple(name for name in names if "/data/" not in name) + tuple(records[:1])
    yield {"root": root, "paths": paths, "data": data, "members": members, "fingerprint": fingerprint,
           "owner": TorchModel(owner, SHAPE)}
    lines = ["", "fuzz cases run (kind, outcome: count):"]
    for kind in sorted({kind for kind, _ in COUNTS}):
        outcomes = {outcome: n for (k, outcome), n in sorted(COUNTS.items()) if k == kind}
        detail = ", ".join(f"{outcome}: {n}" for outcome, n in outcomes.items())
        lines.append(f"  {kind:<22} {sum(outcomes.values()):>5}  {detail}")
    lines.append(f"  {'total':<22} {sum(COUNTS.values()):>5}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines))


def _write(root: Path, name: str, data: bytes) -> Path:
    path = root / name
    path.write_bytes(data)
    return path


def _open_outcome(path: Path) -> str:
    """Open and run a damaged model file; only a TafaError may stop it."""
    with _no_hang():
        try:
            model = load_file(str(path), factory=FACTORY, input_shape=SHAPE, allow_torchscript=True)
        except TafaError:
            return "refused"
        try:
            answers = model(X)
        except TafaError:
            return "refused when run"
    assert answers.shape == (len(X), *model.output_shape)
    return "loaded and answered"


def _load_outcome(path: Path, original: Fingerprint) -> str:
    with _no_hang():
        try:
            fingerprint = Fingerprint.load(path)
        except TafaError:
            return "refused"
        assert fingerprint.sha256 == original.sha256, "a damaged fingerprint loaded with changed content"
        fingerprint.describe()
    return "loaded, content unchanged"


SUFFIX = {"onnx": ".onnx", "safetensors": ".safetensors", "torchscript": ".pt", "state_dict": ".pt"}


def _ran(kind: str) -> int:
    return sum(n for (k, _), n in COUNTS.items() if k == kind)


def _check_count(kind: str, before: int) -> None:
    ran = _ran(kind) - before
    assert ran >= (RANDOM_EXAMPLES or BULK[kind]) // 2, f"only {ran} {kind} cases ran"


@pytest.mark.parametrize("kind", ["onnx", "safetensors", "torchscript", "state_dict"])
def test_fuzz_model_loaders(seeds, kind):
    before = _ran(kind)

    @_settings(BULK[kind])
    @given(case=st.data())
    def run(case):
        how, data = case.draw(damaged(seeds["data"][kind], seeds["members"].get(kind, ())), label="damage")
        outcome = _open_outcome(_write(seeds["root"], f"case{SUFFIX[kind]}", data))
        COUNTS[(kind, outcome)] += 1

    run()
    _check_count(kind, before)


def test_fuzz_fingerprint_reader(seeds):
    before = _ran("fingerprint")

    @_settings(BULK["fingerprint"])
    @given(case=st.data())
    def run(case):
        how, data = case.draw(damaged(seeds["data"]["fingerprint"]), label="damage")
        outcome = _load_outcome(_write(seeds["root"], "case.tafa", data), seeds["fingerprint"])
        COUNTS[("fingerprint", outcome)] += 1

    run()
    _check_count("fingerprint", before)


# ---------------------------------------------------------------------- behind the hash

JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3), max_leaves=6)


def _paths(value, prefix=()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list) and value and len(value) <= 4:
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


@st.composite
def rewritten(draw, header: dict, arrays: dict[str, np.ndarray]) -> tuple[str, dict, dict]:
    """A fingerprint header and arrays with one consistent-looking change (the hash is redone)."""
    header = json.loads(json.dumps(header))
    arrays = dict(arrays)
    how = draw(st.sampled_from(["set", "delete", "drop array", "reshape array", "float32 array", "nan",
                                "fewer rows", "extra array"]))
    if how in ("set", "delete"):
        path = draw(st.sampled_from(_paths({k: v for k, v in header.items() if k != "content_sha256"})))
        parent = header
        for key in path[:-1]:
            parent = parent[key]
        if how == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
        how = f"{how} {'.'.join(map(str, path))}"
    else:
        name = draw(st.sampled_from(sorted(arrays)))
        array = arrays[name]
        if how == "drop array":
            del arrays[name]
        elif how == "reshape array":
            arrays[name] = array.reshape(-1)
        elif how == "float32 array":
            arrays[name] = array.astype(np.float32)
        elif how == "nan":
            arrays[name] = array.copy()
            arrays[name].flat[draw(st.integers(0, array.size - 1))] = np.nan
        elif how == "fewer rows":
            arrays[name] = np.ascontiguousarray(array[:draw(st.integers(0, max(0, len(array) - 1)))])
        else:
            arrays[draw(st.sampled_from(["probes.extra.more", "owner.more", "other"]))] = np.zeros((2, 3))
        how = f"{how} {name}"
    header["content_sha256"] = content_hash(header, arrays)
    return how, header, arrays


def test_fuzz_fingerprint_header_behind_the_hash(seeds):
    from safetensors import safe_open

    with safe_open(str(seeds["paths"]["fingerprint"]), framework="np") as handle:
        original = json.loads(handle.metadata()["tafa"])
        original_arrays = {key: handle.get_tensor(key) for key in handle.keys()}
    before = _ran("fingerprint header")

    @_settings(BULK["fingerprint header"])
    @given(case=st.data())
    def run(case):
        how, header, arrays = case.draw(rewritten(original, original_arrays), label="rewrite")
        path = seeds["root"] / "rewritten.tafa"
        save_numpy(arrays, str(path), metadata={"tafa": json.dumps(header)})
        with _no_hang():
            try:
                fingerprint = Fingerprint.load(path)
            except TafaError:
                COUNTS[("fingerprint header", "refused")] += 1
                return
            try:  # what loaded must be usable, or say why not with a TafaError
                fingerprint.describe()
                fingerprint.queries()
                assert np.isfinite(fingerprint.score(seeds["owner"]).value)
                outcome = "loaded and scored"
            except TafaError:
                outcome = "refused when used"
        COUNTS[("fingerprint header", outcome)] += 1

    run()
    _check_count("fingerprint header", before)


# ---------------------------------------------------------------------- through the command line


@contextlib.contextmanager
def _warnings_as_on_the_command_line():
    """Warnings printed to stderr as a plain ``tafa`` run prints them (every time, so that a
    case fails the same way when hypothesis replays it), not collected by pytest."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", quiet)  # what Python ignores by default outside __main__
        warnings.showwarning = warnings._showwarning_orig
        yield


@pytest.mark.parametrize("kind", ["onnx", "safetensors", "torchscript", "state_dict", "fingerprint"])
def test_fuzz_through_the_command_line(seeds, kind, capfd):
    fingerprint = str(seeds["paths"]["fingerprint"])

    @_settings(CLI)
    @given(case=st.data())
    def run(case):
        how, data = case.draw(damaged(seeds["data"][kind], seeds["members"].get(kind, ())), label="damage")
        path = _write(seeds["root"], f"cli-case{SUFFIX.get(kind, '.tafa')}", data)
        argv = (["info", str(path)] if kind == "fingerprint" else
                ["verify", fingerprint, str(path), "--factory", FACTORY, "--input-shape", "1,8,8",
                 "--allow-torchscript"])
        with _no_hang(), _warnings_as_on_the_command_line():
            code = main(["--quiet", *argv])
        err = capfd.readouterr().err  # file descriptor 2: C++ libraries' output counts too
        lines = [line for line in err.splitlines() if line.strip()]
        assert code in (0, 2), (how, code, err)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("tafa: error:"), (how, err)
        COUNTS[(f"{kind} (cli)", "exit 2, one line" if code == 2 else "exit 0")] += 1

    run()


def test_damage_found_by_random_runs(seeds, tmp_path):
    """Cases the random runs (TAFA_FUZZ_EXAMPLES) found, kept as fixed regressions."""
    onnx_bytes = seeds["data"]["onnx"]
    # the name of the symbolic batch axis made invalid UTF-8: onnxruntime raised UnicodeDecodeError
    assert onnx_bytes.count(b"batch") >= 1
    broken = _write(tmp_path, "axis-name.onnx", onnx_bytes.replace(b"batch", b"\xe2atch"))
    assert _open_outcome(broken) == "refused"
