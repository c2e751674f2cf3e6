"""Stored state read as an adversary would write it: fingerprint files whose header and
arrays hash right but declare what would exhaust memory or crash a reader.

Every hostile file is made here, from a real fingerprint, with its content hash recomputed
(so only the reader's own checks can refuse it). The command line must answer each with one
line on stderr and exit code 2, within 30 s and 1 GiB of peak memory (measured in a child
process with ``getrusage``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tafa import Fingerprint
from tafa.errors import FingerprintError, TamperedFingerprint
from tafa.fingerprint_file import MAX_OUTPUT_VALUES, content_hash, decode

SRC = str(Path(__file__).resolve().parents[1] / "src")

#: Runs ``tafa ARGS...`` in-process and prints its exit code, seconds and peak memory on
#: stdout's last line. The address space is capped (4 GiB) so that a regression fails the
#: test instead of the machine. The peak is the process's own (``VmHWM``): Linux carries
#: ``ru_maxrss`` over from the forking parent, so it would report pytest's peak instead.
MEASURE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from tafa.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
print(json.dumps({"code": code, "seconds": time.perf_counter() - started, "peak_bytes": peak}))
"""


def run_measured(*args: str) -> tuple[dict, str]:
    """``tafa ARGS`` in a child process: (its code, seconds and peak memory; its stderr)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def fingerprint(regressor):
    return Fingerprint.create(regressor.owner, "box:-2,2", input_shape=(10,), points=8, directions=2, seed=1)


def parts(fingerprint: Fingerprint) -> tuple[dict, dict[str, np.ndarray]]:
    return decode(fingerprint.to_bytes(), source="test")


def rehashed(header: dict, arrays: dict[str, np.ndarray], *, text: str | None = None) -> bytes:
    """A fingerprint file of ``header`` and ``arrays`` whose recorded hash fits its content
    (``text``: the tafa header as given, for JSON that ``json.dumps`` would not write)."""
    header = {**header, "content_sha256": content_hash(header, arrays)}
    return save(arrays, metadata={"tafa": text if text is not None else json.dumps(header)})


def framed(layout: dict, data: bytes) -> bytes:
    """Raw safetensors bytes: an 8-byte length, the JSON ``layout``, ``data``."""
    text = json.dumps(layout).encode()
    return len(text).to_bytes(8, "little") + text + data


def hostile_files(fingerprint: Fingerprint) -> dict[str, bytes]:
    header, arrays = parts(fingerprint)
    files = {}
    # issue 12, item 6: a small file that declares a 3000 x 3000 output (the reader used to
    # draw a random test signature of (queries, 3000, 3000) float64: 10 GB)
    files["output 3000x3000"] = rehashed({**header, "output_shape": [3000, 3000]}, arrays)
    files["output 1e6"] = rehashed({**header, "output_shape": [1_000_000]}, arrays)
    wide = {**header, "input_shape": [100_000, 100_000],
            "domain": {**header["domain"], "shape": [100_000, 100_000], "lo": -2.0, "hi": 2.0}}
    files["input 1e5x1e5"] = rehashed(wide, arrays)
    files["shape [0, 1e30]"] = rehashed({**header, "output_shape": [0, 10 ** 30]}, arrays)
    files["seed 10^400"] = rehashed(header, arrays, text=json.dumps(header)[:-1] + ', "seed": ' + "1" * 401 + "}")
    files["points 10^12"] = rehashed({**header, "scheme": {**header["scheme"], "points": 10 ** 12}}, arrays)
    files["NaN in the header"] = rehashed(header, arrays, text=json.dumps({**header, "seed": float("nan")}))
    nan = {**arrays, "owner.outputs": np.full_like(arrays["owner.outputs"], np.nan)}
    files["NaN owner signature"] = rehashed(header, nan)
    # the safetensors framing itself
    files["header length 2^40"] = (1 << 40).to_bytes(8, "little") + b"{}"
    files["array 1e9 x 1e9"] = framed({"__metadata__": {"tafa": json.dumps(header)},
                                       "probes.points": {"dtype": "F64", "shape": [10 ** 9, 10 ** 9],
                                                         "data_offsets": [0, 8]}}, b"\0" * 8)
    files["int64 array"] = framed({"__metadata__": {"tafa": json.dumps(header)},
                                   "probes.points": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    files["offsets past the end"] = framed({"__metadata__": {"tafa": json.dumps(header)},
                                            "probes.points": {"dtype": "F64", "shape": [1 << 27],
                                                              "data_offsets": [0, 1 << 30]}}, b"\0" * 8)
    files["overlapping arrays"] = framed({"__metadata__": {"tafa": json.dumps(header)},
                                          "a": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
                                          "b": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    return files


CASES = ["output 3000x3000", "output 1e6", "input 1e5x1e5", "shape [0, 1e30]", "seed 10^400", "points 10^12",
         "NaN in the header", "NaN owner signature", "header length 2^40", "array 1e9 x 1e9", "int64 array",
         "offsets past the end", "overlapping arrays"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_fingerprint_is_refused_by_the_library(fingerprint, tmp_path, case):
    path = tmp_path / "hostile.tafa"
    path.write_bytes(hostile_files(fingerprint)[case])
    with pytest.raises(FingerprintError) as raised:
        Fingerprint.load(path)
    assert not isinstance(raised.value, TamperedFingerprint), "the hash was recomputed: the checks must refuse it"
    assert "hostile.tafa" in str(raised.value)


def test_the_reader_accepts_what_the_writer_writes(fingerprint):
    assert Fingerprint.from_bytes(fingerprint.to_bytes()).sha256 == fingerprint.sha256
    header, arrays = parts(fingerprint)
    assert Fingerprint.from_bytes(rehashed(header, arrays)).sha256 == fingerprint.sha256  # the control


@pytest.mark.parametrize("case", ["output 3000x3000", "input 1e5x1e5", "array 1e9 x 1e9", "header length 2^40"])
def test_memory_bombs_cost_little_on_the_command_line(fingerprint, tmp_path, case):
    path = tmp_path / "bomb.tafa"
    path.write_bytes(hostile_files(fingerprint)[case])
    assert path.stat().st_size < 128 * 1024  # a small file (every stage of a small owner) claiming huge arrays
    result, err = run_measured("info", str(path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert result["code"] == 2 and len(lines) == 1 and "bomb.tafa" in lines[0], err
    assert result["seconds"] < 30
    assert result["peak_bytes"] < 1 << 30, f"peak {result['peak_bytes'] / 2 ** 20:.0f} MiB"


def test_the_limit_on_output_values_is_the_one_that_refuses(fingerprint):
    header, arrays = parts(fingerprint)
    queries = fingerprint.step_queries()  # the first stage's own limit refuses first
    too_many = MAX_OUTPUT_VALUES // queries + 1
    with pytest.raises(FingerprintError, match="exceed the reader's limits"):
        Fingerprint.from_bytes(rehashed({**header, "output_shape": [too_many]}, arrays))


def test_a_backdated_self_made_commitment_is_reported_unverified(fingerprint, regressor, tmp_path, capsys):
    import dataclasses

    import torch

    from tafa.cli import main
    from tafa.commitment import UNVERIFIED, Commitment

    path = fingerprint.save(tmp_path / "owner.tafa")
    backdated = dataclasses.replace(Commitment.of(fingerprint), created="2019-01-01T00:00:00+00:00")
    committed = backdated.save(tmp_path / "owner.tafa.commitment.json")
    suspect = tmp_path / "owner.onnx"
    torch.onnx.export(regressor.owner, (torch.zeros(1, 10),), str(suspect), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    verify = ["--quiet", "verify", str(path), str(suspect), "--commitment", str(committed)]
    assert main(verify) == 0
    out = capsys.readouterr().out
    assert f"commitment: {UNVERIFIED}" in out and "2019" not in out
    assert main([*verify, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["commitment"]
    assert report["status"] == UNVERIFIED and "created" not in report
    assert main([*verify, "--commitment-digest", backdated.digest]) == 0  # published before: its date stands
    out = capsys.readouterr().out
    assert "commitment: verified" in out and "made 2019-01-01" in out
