"""Inputs an adversary names on the command line, built to hurt the reader rather than to be read.

- Fingerprint headers (and the other JSON tafa reads back: commitments, domain bounds) made to
  exhaust the JSON parser: tens of MiB of empty lists, nesting 100,000 deep, a 30 MiB string,
  a number of 30 million digits. The size and shape of the JSON are bounded *before* it is
  parsed (:func:`tafa.fingerprint_file.check_json_size`).
- Paths that are not regular files (a FIFO, a folder, an oversized file) where a fingerprint,
  a commitment or a domain's bounds are expected: one bounded reader refuses them
  (:func:`tafa.storage.read_regular`), without waiting on the FIFO.
- Domains and answers at the edges of float arithmetic (bounds of 1e308, a subnormal std, a
  suspect that answers 1e300): refused in one line, or scored correctly, never a traceback or a
  numpy ``RuntimeWarning`` on stderr (the tests turn warnings into errors).

Every refusal is one line on stderr and exit code 2, within 10 s and 512 MiB of tafa's own
process (measured in a child process by ``run_measured`` of ``tests/test_stored_state.py``),
with no file written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save
from test_stored_state import run_measured

from tafa import Fingerprint
from tafa.cli import main
from tafa.domain import parse_domain
from tafa.errors import DomainError, FingerprintError, NonFiniteOutput
from tafa.fingerprint_file import MAX_HEADER_BYTES, MAX_JSON_VALUES, check_json_size, content_hash, decode
from tafa.models import TorchModel

SHAPE = (1, 8, 8)
#: What a refusal may cost: seconds, and bytes of tafa's own process at its peak.
SECONDS, PEAK_BYTES = 10, 512 << 20
MiB = 1 << 20


@contextlib.contextmanager
def _within(seconds: float):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _cli(capsys, *argv: str) -> tuple[int, list[str], str]:
    """``tafa ARGV`` in this process with warnings as errors, at most :data:`SECONDS`: (code, stderr lines, stdout)."""
    with _within(SECONDS), _warnings_are_errors():
        code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()], captured.out


def _refused(code: int, lines: list[str], *needles: str) -> None:
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tafa: error:"), (code, lines)
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _measured_refusal(*argv: str, needle: str) -> dict:
    result, err = run_measured("--quiet", *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert result["code"] == 2 and len(lines) == 1 and needle in lines[0], err[-2000:]
    assert result["seconds"] < SECONDS, result
    assert result["peak_bytes"] < PEAK_BYTES, f"peak {result['peak_bytes'] / MiB:.0f} MiB"
    return result


class Scaled(torch.nn.Module):
    """The owner with its outputs multiplied by ``factor``, in float64: a derived copy whose answers
    are as large as the suspect supplier likes."""

    def __init__(self, inner: torch.nn.Module, factor: float) -> None:
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x):
        return self.inner(x).double() * self.factor


def _onnx(model: torch.nn.Module, path: Path) -> Path:
    torch.onnx.export(model, (torch.zeros(1, *SHAPE),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    return path


@pytest.fixture(scope="module")
def files(classifier, tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=8, directions=2, seed=1,
                                     second_stage=False)
    paths = {"root": root, "fingerprint": fingerprint.save(root / "owner.tafa"), "owner": _onnx(classifier.owner,
                                                                                                 root / "owner.onnx")}
    for factor in (1e30, 1e300):
        paths[factor] = _onnx(Scaled(classifier.owner, factor), root / f"scaled-{factor:g}.onnx")
    return paths


# ------------------------------------------------------------------ finding 2: JSON bombs


def _empty_lists(size: int) -> bytes:
    """``[[],[],...,[]]`` of about ``size`` bytes: ~80 bytes of parsed objects per 3 bytes of text."""
    count = max(1, (size - 2) // 3)
    return b"[" + b"[]," * (count - 1) + b"[]]"


def _framed(layout: bytes, data: bytes = b"") -> bytes:
    return len(layout).to_bytes(8, "little") + layout + data


def _with_header_text(fingerprint_path: Path, text: str) -> bytes:
    """The real fingerprint's arrays behind a tafa header of ``text`` (hash not recomputed)."""
    _, arrays = decode(fingerprint_path.read_bytes(), source="test")
    return save(arrays, metadata={"tafa": text})


def _bombs(fingerprint_path: Path) -> dict[str, bytes]:
    header, _ = decode(fingerprint_path.read_bytes(), source="test")
    plain = json.dumps(header)
    return {
        # the finding: 64 MiB of empty lists as the safetensors header cost 1.7 GiB and 11-14 s
        "64 MiB of empty lists": _framed(_empty_lists(64 * MiB)),
        "31 MiB of empty lists": _framed(_empty_lists(31 * MiB)),  # under the size limit: the value count refuses
        "empty lists in the tafa header": _framed(b'{"__metadata__": {"tafa": "' + _empty_lists(30 * MiB) + b'"}}'),
        "lists 100,000 deep": _with_header_text(fingerprint_path, "[" * 100_000 + "]" * 100_000),
        "a number of 30 million digits": _with_header_text(fingerprint_path,
                                                           plain[:-1] + ', "seed": 0.' + "0" * 30_000_000 + "1}"),
        "a 30 MiB string": _with_header_text(fingerprint_path, plain[:-1] + ', "owner_name": "' + "A" * (30 * MiB)
                                             + '"}'),
        # what a scan that cut strings out with regular expressions paid for (a list entry per
        # match: 1.5 to 2 GiB): quotes, empty strings, escapes
        "31 MiB of quotes": _framed(b'"' * (31 * MiB)),
        "31 MiB of empty strings": _framed(b"[" + b'"",' * (31 * MiB // 3) + b'""]'),
        "31 MiB of escapes": _framed(b'"' + b"\\\\" * (31 * MiB // 2) + b'"'),
        # the costliest JSON under the value limit: an object of distinct keys (parsing memoises them)
        "an object of 2^20 keys": _framed(b"{" + b",".join(b'"k%07d":0' % i for i in range(MAX_JSON_VALUES - 8))
                                          + b"}"),
    }


@pytest.mark.parametrize("case", ["64 MiB of empty lists", "31 MiB of empty lists", "empty lists in the tafa header",
                                  "lists 100,000 deep", "a number of 30 million digits", "a 30 MiB string",
                                  "an object of 2^20 keys", "31 MiB of quotes", "31 MiB of empty strings",
                                  "31 MiB of escapes"])
def test_fingerprint_header_bombs_are_refused_before_parsing(files, tmp_path, case):
    path = tmp_path / "bomb.tafa"
    path.write_bytes(_bombs(files["fingerprint"])[case])
    _measured_refusal("info", str(path), needle="bomb.tafa")


def test_verify_and_registry_read_fingerprints_through_the_same_bounds(files, tmp_path, capsys):
    path = tmp_path / "bomb.tafa"
    path.write_bytes(_bombs(files["fingerprint"])["31 MiB of empty lists"])
    _measured_refusal("verify", str(path), str(files["owner"]), needle="JSON values")
    code, lines, _ = _cli(capsys, "registry", "add", str(path), "--name", "bomb", "--registry",
                          str(tmp_path / "registry.sqlite"))
    _refused(code, lines, "bomb.tafa", "JSON values")


def test_commitment_and_domain_json_bombs_are_refused_before_parsing(files, tmp_path):
    bomb = _empty_lists(31 * MiB)
    commitment = tmp_path / "bomb.commitment.json"
    commitment.write_bytes(bomb)
    _measured_refusal("verify", str(files["fingerprint"]), str(files["owner"]), "--commitment", str(commitment),
                      needle="JSON values")
    domain = tmp_path / "bounds.json"
    domain.write_bytes(b'{"lo": 0, "hi": ' + bomb + b"}")
    out = tmp_path / "out.tafa"
    _measured_refusal("fingerprint", str(files["owner"]), "--domain", f"box:{domain}", "--out", str(out),
                      needle="JSON values")
    assert not out.exists()


def _json_facts(value) -> tuple[int, int, int, str]:
    """(values, empty lists and objects, depth, the text of every string and key) of a parsed JSON value."""
    if isinstance(value, (list, dict)):
        inner = [_json_facts(v) for v in (value.values() if isinstance(value, dict) else value)]
        keys = "".join(value) if isinstance(value, dict) else ""
        return (1 + sum(i[0] for i in inner), (not inner) + sum(i[1] for i in inner),
                1 + max((i[2] for i in inner), default=0), keys + "".join(i[3] for i in inner))
    return 1, 0, 0, value if isinstance(value, str) else ""


#: Strings full of what a scan could miscount: brackets, commas, quotes and backslashes.
TRICKY = st.text(alphabet=st.sampled_from('[]{},:"\\ab\u00e9\U0001f600'), max_size=12)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                      | TRICKY, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
                      max_leaves=30)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(value=VALUES, ascii=st.booleans(), as_bytes=st.booleans())
def test_the_json_scan_counts_what_the_parser_builds(value, ascii, as_bytes):
    """Never fewer values than the parser builds (more by one per empty list or object and per
    comma or opening bracket inside a string), and exactly its depth when no string holds a bracket."""
    text = json.dumps(value, ensure_ascii=ascii)
    data = text.encode() if as_bytes else text
    values, empty, depth, strings = _json_facts(value)
    extra = sum(strings.count(c) for c in ",[{")
    check_json_size(data, what="x", max_values=values + empty + extra, max_depth=1000)
    with pytest.raises(ValueError, match="JSON values"):
        check_json_size(data, what="x", max_values=values - 1, max_depth=1000)
    if not any(c in strings for c in "[]{}"):
        check_json_size(data, what="x", max_depth=depth)
        if depth:
            with pytest.raises(ValueError, match="deep"):
                check_json_size(data, what="x", max_depth=depth - 1)


@st.composite
def hostile_json(draw) -> tuple[str, str]:
    """A JSON value made to cost the parser: deep, wide, long or huge, around the reader's limits."""
    kind = draw(st.sampled_from(["deep", "empty lists", "empty objects", "floats", "long string", "long number",
                                 "big integer", "exponent"]))
    if kind == "deep":
        n = draw(st.sampled_from([1, 31, 32, 33, 900, 5000, 200_000]))
        return kind, "[" * n + "]" * n
    if kind in ("empty lists", "empty objects", "floats"):
        n = draw(st.sampled_from([1, 1000, MAX_JSON_VALUES // 3, MAX_JSON_VALUES // 2 + 1, MAX_JSON_VALUES + 1]))
        item = {"empty lists": "[]", "empty objects": "{}", "floats": "0.5"}[kind]
        return kind, "[" + ",".join([item] * n) + "]"
    if kind == "long string":
        return kind, '"' + "\\u00e9" * draw(st.sampled_from([1, 1000, 1 << 20])) + '"'
    digits = "9" * draw(st.sampled_from([1, 20, 21, 400, 1 << 20]))
    return kind, {"long number": f"0.{digits}", "big integer": digits, "exponent": f"1e{digits}"}[kind]


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=hostile_json(), field=st.sampled_from(["seed", "meta", "created", "probes_info", "domain", "unknown"]),
       rehash=st.booleans(), where=st.sampled_from(["tafa header", "safetensors header"]))
def test_fuzz_hostile_values_in_fingerprint_headers(files, case, field, rehash, where):
    """A hostile value in a field of a real header (the hash recomputed when the header parses): a
    :class:`FingerprintError` or a fingerprint that loads, quickly, never another exception."""
    kind, value = case
    data = files["fingerprint"].read_bytes()
    header, arrays = decode(data, source="test")
    text = json.dumps({key: item for key, item in header.items() if key != field})[:-1] + f', "{field}": {value}}}'
    if rehash and len(text) < MAX_HEADER_BYTES:
        try:
            parsed = json.loads(text)
            text = json.dumps({**parsed, "content_sha256": content_hash(parsed, arrays)})
        except (ValueError, RecursionError):
            pass  # the reader refuses what json.loads does
    if where == "tafa header":
        data = save(arrays, metadata={"tafa": text})
    else:
        length = int.from_bytes(data[:8], "little")
        layout = data[8:8 + length].rstrip()
        data = _framed(layout[:-1] + b', "extra": ' + value.encode() + b"}", data[8 + length:])
    started = time.perf_counter()
    with _warnings_are_errors():
        try:
            Fingerprint.from_bytes(data, source="hostile")
        except FingerprintError as error:
            assert "hostile" in str(error)
    assert time.perf_counter() - started < SECONDS, (kind, field)


# ------------------------------------------------------------------ finding 7: files that are not files


@pytest.mark.parametrize("what", ["fifo", "folder", "too large"])
def test_named_files_must_be_small_regular_files(files, tmp_path, capsys, what):
    """A FIFO is refused at once (it used to block on open: --domain box:FIFO.json hung, and
    --commitment FIFO said "does not exist"), a folder too; a file over the limit is refused by
    its size before it is read."""
    def special(name: str) -> Path:
        path = tmp_path / name
        if what == "fifo":
            os.mkfifo(path)
        elif what == "folder":
            path.mkdir()
        else:
            with open(path, "wb") as handle:
                handle.truncate(MAX_HEADER_BYTES + 1)  # sparse: costs no disk
        return path

    needle = "bytes; at most" if what == "too large" else "is not a regular file"
    out = tmp_path / "out.tafa"
    code, lines, _ = _cli(capsys, "fingerprint", str(files["owner"]), "--domain", f"box:{special('bounds.json')}",
                          "--out", str(out))
    _refused(code, lines, "Domain bounds file", needle)
    assert not out.exists() and not Path(str(out) + ".commitment.json").exists()
    commitment = special("owner.commitment.json")
    code, lines, _ = _cli(capsys, "verify", str(files["fingerprint"]), str(files["owner"]), "--commitment",
                          str(commitment))
    _refused(code, lines, "Commitment file", needle)
    code, lines, _ = _cli(capsys, "fingerprint", str(files["owner"]), "--check-commitment", str(commitment))
    _refused(code, lines, "Commitment file", needle)
    if what != "too large":  # a fingerprint may be larger (1 GiB); its reader is the same
        code, lines, _ = _cli(capsys, "info", str(special("owner.tafa")))
        _refused(code, lines, "Fingerprint file", needle)


# ------------------------------------------------------------------ findings 7 and 9: float arithmetic


@pytest.mark.parametrize("spec", ["box:-1e308,1e308", "box:0,1e308", "box:-3e38,3e38", "box:0,1e-300",
                                  "gaussian:0,1e-320", "gaussian:0,1e300",
                                  "gaussian:1e308,1", "gaussian:0,5e-324"])
def test_domains_beyond_float_arithmetic_are_refused(spec):
    with _warnings_are_errors(), pytest.raises(DomainError):
        parse_domain(spec, SHAPE)


@pytest.mark.parametrize("spec", ["box:-1e29,1e29", "box:0,1e-30", "gaussian:0,1e-30", "gaussian:1e29,1e28"])
def test_domains_within_float_arithmetic_are_accepted(spec):
    with _warnings_are_errors():
        assert parse_domain(spec, SHAPE).sample(4, seed=0).shape == (4, *SHAPE)


def test_a_domain_near_the_limit_fingerprints_and_verifies_without_warnings(classifier):
    """Bounds of 1e29 pass; the second stage's search for first-layer boundaries divided huge
    pre-activations by near-zero gradient norms it then discarded ("overflow encountered in divide")."""
    with _warnings_are_errors():
        fingerprint = Fingerprint.create(classifier.owner, "box:-1e29,1e29", input_shape=SHAPE, points=8,
                                         directions=2, seed=1)
        assert fingerprint.score(TorchModel(classifier.owner, SHAPE)).value == pytest.approx(1.0)


def test_a_domain_bounds_file_beyond_float_arithmetic_is_refused(tmp_path):
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"lo": -1e308, "hi": 1e308}))
    with _warnings_are_errors(), pytest.raises(DomainError, match="at most 1e\\+30"):
        parse_domain(f"box:{bounds}", SHAPE)


@pytest.mark.parametrize("spec", ["box:-1e308,1e308", "gaussian:0,1e-320"])
def test_unusable_domains_are_one_line_on_the_command_line(files, tmp_path, capsys, spec):
    """``box:-1e308,1e308`` ended in an OverflowError traceback; ``gaussian:0,1e-320`` wrote a
    fingerprint whose verification printed a RuntimeWarning (overflow in the finite differences)."""
    out = tmp_path / "out.tafa"
    code, lines, _ = _cli(capsys, "fingerprint", str(files["owner"]), "--domain", spec, "--out", str(out))
    _refused(code, lines, "domain")
    assert not out.exists() and not Path(str(out) + ".commitment.json").exists()


def test_a_suspect_with_huge_answers_is_scored_or_refused_without_warnings(files, classifier, capsys):
    """A copy that multiplies the owner's outputs by 1e30 is still scored as the owner (the
    signature is scale-free); one that multiplies them by 1e300, beyond float32's range, is refused
    in one line (its squares overflowed float64 in the similarity: score 0 or NaN, and
    RuntimeWarnings on stderr)."""
    code, lines, out = _cli(capsys, "verify", str(files["fingerprint"]), str(files[1e30]), "--json")
    assert code == 0 and not lines, lines
    # answers at 1e30 are integers in float32 (a grid): the coarse scale decides, its differences averaged
    # over steps jittered around the owner's coarse one, so the owner's own map scores 1 to 1e-4 there
    assert json.loads(out)["score"] == pytest.approx(1.0, abs=1e-4)
    code, lines, _ = _cli(capsys, "verify", str(files["fingerprint"]), str(files[1e300]))
    _refused(code, lines, "float32's range")
    fingerprint = Fingerprint.load(files["fingerprint"])
    with _warnings_are_errors():
        assert fingerprint.score(TorchModel(Scaled(classifier.owner, 1e30), SHAPE)).value == pytest.approx(1.0)
        with pytest.raises(NonFiniteOutput, match="float32's range"):
            fingerprint.score(TorchModel(Scaled(classifier.owner, 1e300), SHAPE))


def test_finite_differences_that_overflow_are_refused_not_warned(files):
    """Answers within float32's range over steps far below it (a fingerprint's steps are read from
    its file) overflow float64 in the finite differences: one error, not inf and warnings."""
    from dataclasses import replace

    from tafa.signature.derivatives import Derivatives

    probes = Fingerprint.load(files["fingerprint"]).probes
    tiny = replace(probes, steps=np.full_like(probes.steps, 1e-300))
    signature = Derivatives()
    queries, minus = signature.queries(tiny), probes.directions.shape[0] * probes.directions.shape[1]
    answers = np.where(np.arange(queries)[:, None] < queries - minus, 3e38, -3e38) * np.ones(10)  # f(x+hu) - f(x-hu)
    with _warnings_are_errors():
        assert np.isfinite(signature.assemble(probes, answers)["derivatives"]).all()
        with pytest.raises(NonFiniteOutput, match="overflow float64"):
            signature.assemble(tiny, answers)
