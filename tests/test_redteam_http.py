"""Red team: hostile KServe v2 services, each on loopback, started and stopped by the test.

One test per attack on the client (issue 12): a service that drips its answer a byte at a
time, one that answers 429 forever with a long ``Retry-After``, answers far larger than the
batch asked for (announced or streamed), numbers and shapes beyond any bound in answers and
metadata, and services that do not answer the same input the same way (noisy, or adaptive:
probe-aware). Each ends in one clean line (a :class:`~tafa.errors.TafaError`: exit code 2 on
the command line) within a bounded time and memory, or in a flagged verdict. Every request
loop is bounded by the client's own ``retries``/``max_wait``/``timeout``; ``tracemalloc``
measures the memory Python and numpy allocate on the way.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Callable

import numpy as np
import pytest
import torch

from kserve_server import KServeServer, json_bomb, json_bomb_length
from tafa.errors import ModelLoadError, NonFiniteOutput, ShapeMismatch, TafaError, one_line
from tafa.models.base import TorchModel
from tafa.models.http import MAX_METADATA_BYTES, RECHECK_MIN, HttpModel

SHAPE = (1, 8, 8)


def _predict(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
    return predict


@pytest.fixture(scope="module")
def probes() -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, size=(40, *SHAPE)).astype(np.float32)


@pytest.fixture
def server(classifier):
    with KServeServer(_predict(classifier.owner), input_shape=SHAPE, output_shape=(10,)) as running:
        yield running


def _client(url: str, **options) -> HttpModel:
    settings = dict(timeout=5.0, retries=1, backoff=0.001, max_wait=0.5, progress=False)
    settings.update(options)
    return HttpModel(url, **settings)


def _fails_in_one_line(call: Callable[[], object], error: type[TafaError], seconds: float,
                       url: str) -> tuple[str, float, float]:
    """Run ``call``; it must raise ``error`` (one line naming ``url``) within ``seconds``.
    Returns the message, the seconds taken and the peak MiB traced."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(error) as caught:
            call()
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    message = one_line(caught.value)
    assert message == str(caught.value) and "\n" not in message
    assert url in message and took < seconds
    return message, took, peak


# -- hangs -------------------------------------------------------------------------------------

def test_a_service_dripping_its_answer_is_cut_at_the_whole_request_deadline(server, probes):
    """One byte every 0.2 s: each socket read succeeds, so only a deadline on the whole
    exchange stops it (the answer would take ~2 minutes)."""
    suspect = _client(server.url, timeout=1.0, retries=1)
    server.drip = 0.2
    message, took, _ = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 4.0, server.url)
    assert "timed out" in message and "timeout=1 s" in message and "not asked again" in message
    assert 1.0 - 0.1 <= took < 2.0  # cut at its deadline, not earlier, and not tried again
    assert len(server.arrivals) == 1


def test_a_hanging_service_is_asked_once_even_when_the_sockets_own_timeout_fires_first(server, probes,
                                                                                       monkeypatch):
    """The socket's per-operation timeout equals the whole try's, so on a loaded machine it can fire
    a moment before the watchdog's thread runs. That is the same lateness: never retried (it was, and
    a hanging service then held tafa retries + 1 times). The watchdog is made late on purpose here."""
    from tafa.models import http

    original = http._Watchdog.__init__

    def late(self, connection, seconds):
        original(self, connection, seconds + 2.0)

    monkeypatch.setattr(http._Watchdog, "__init__", late)
    server.sleep = 30.0
    suspect = _client(server.url, timeout=0.3, retries=2)
    message, took, _ = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 2.0, server.url)
    assert "timed out" in message and "not asked again" in message
    assert len(server.arrivals) == 1


def test_a_dripped_answer_without_a_length_is_late_not_whole(server, probes):
    """Closed when done, a body has no length to fall short of: cut by the watchdog, it
    must read as late, never as a whole (and malformed) answer."""
    body = json.dumps({"outputs": [{"name": "output", "shape": [5, 10], "datatype": "FP32",
                                    "data": [0.0] * 50}]}).encode()

    def dripped(batch: int):
        for index in range(len(body)):
            time.sleep(0.05)
            yield body[index:index + 1]
    server.hostile_answer = lambda batch: (dripped(batch), None)
    suspect = _client(server.url, timeout=0.5, retries=0)
    message, _, _ = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 3.0, server.url)
    assert "timed out" in message and "not asked again" in message


def test_429_forever_with_a_long_retry_after_fails_at_once_within_max_wait(server, probes):
    """Retry-After: 60 on every answer used to cost (retries x 60 s); now a wait longer than
    what is left of max_wait ends the request at once, without waiting."""
    server.busy, server.retry_after = 10**6, "60"
    suspect = _client(server.url, retries=3, max_wait=10.0)
    message, took, _ = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 2.0, server.url)
    assert "HTTP 429" in message and "retry after 60 s" in message and "max_wait=10 s" in message
    assert len(server.arrivals) == 1 and suspect.network_queries == 0


@pytest.mark.parametrize("retry_after", ["0.3", None])
def test_all_waits_of_a_request_add_up_to_at_most_max_wait(server, probes, retry_after):
    """Waits the service asks for (0.3 s each) or backoff (0.2, 0.4, ... s) stop adding up
    at max_wait=0.7 s: a request fails after the tries left or the wait left, whichever
    ends first."""
    server.busy, server.busy_status, server.retry_after = 10**6, 503, retry_after
    suspect = _client(server.url, retries=6, backoff=0.2, max_wait=0.7)
    message, took, _ = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 0.7 + 1.5, server.url)
    arrivals = [moment for moment, _ in server.arrivals]
    assert arrivals[-1] - arrivals[0] <= 0.7 + 0.25  # the waits, plus a little for the exchanges
    if retry_after is None:  # backoff is cut to what is left, and the tries run out
        assert len(arrivals) == 6 + 1 and "7 attempts" in message
    else:  # 0.3 + 0.3 waited; the third 0.3 s is more than the 0.1 s left
        assert len(arrivals) == 3 and "max_wait=0.7 s" in message


# -- memory bombs ------------------------------------------------------------------------------

@pytest.mark.parametrize("announced", [True, False])
def test_a_255_mib_answer_is_refused_before_it_is_parsed(server, probes, announced):
    """A valid JSON answer of 255 MiB (it cost 2.7 GB parsed): refused by its announced
    length unread, or, streamed without a length, after the bytes a batch of 5 can need."""
    values = (255 << 20) // 2
    length = json_bomb_length(values)
    suspect = _client(server.url)
    server.hostile_answer = lambda batch: (json_bomb(values), length if announced else None)
    message, _, peak = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 10.0, server.url)
    assert ("announced an answer" in message and str(length) in message) if announced \
        else "more than" in message
    assert str(suspect.answer_limit(5)) in message
    assert peak < 3 * suspect.answer_limit(5) / 2**20 + 8  # MiB: the bytes read, not 255 of them


@pytest.mark.parametrize("case, error, words", [
    ("big_integer", NonFiniteOutput, "beyond float64"),
    ("huge_shape", ModelLoadError, "valid 'shape'"),
    ("wide_shape", ShapeMismatch, "answered shape"),
    ("strings", ModelLoadError, "not 50 numbers"),
    ("booleans", ModelLoadError, "not 50 numbers"),
    ("deep", ModelLoadError, "not 50 numbers"),
    ("too_many", ModelLoadError, "not 50 numbers"),
])
def test_absurd_answers_are_one_line(server, probes, case, error, words):
    """Integers like 10^400, a [0, 10^30] shape, a shape far larger than asked, data that are
    not numbers: one line each, nothing allocated from what the service declares."""
    data: list = list(np.zeros(50))
    shape: list = [5, 10]
    if case == "big_integer":
        data[7] = 10**400
    elif case == "huge_shape":
        shape = [0, 10**30]
    elif case == "wide_shape":
        shape = [5, 10**6]
    elif case == "strings":
        data[3] = "1.5"
    elif case == "booleans":
        data[3] = True
    elif case == "deep":
        data = [[[[[[[[[[0]]]]]]]]]] * 50
    elif case == "too_many":
        data = data * 1000
    body = json.dumps({"outputs": [{"name": "output", "shape": shape, "datatype": "FP32",
                                    "data": data}]}).encode()
    server.hostile_answer = lambda batch: ([body], len(body))
    suspect = _client(server.url)
    message, _, peak = _fails_in_one_line(lambda: suspect(probes[:5]), error, 5.0, server.url)
    assert words in message and peak < 16


@pytest.mark.parametrize("case", ["huge_axis", "bignum_axis", "16k_image", "million_outputs",
                                  "many_tensors", "long_name", "rank", "too_long", "not_json"])
def test_absurd_metadata_is_one_line(server, case):
    """Shapes of 10^30 or 10^400 values, 16000x16000 inputs, outputs no answer could hold,
    10000 tensors, a name of a million characters, metadata over 1 MiB: one line, before
    anything is sized from it."""
    metadata = server.metadata()
    tensor_in, tensor_out = metadata["inputs"][0], metadata["outputs"][0]
    if case == "huge_axis":
        tensor_in["shape"] = [-1, 10**30]
    elif case == "bignum_axis":
        tensor_out["shape"] = [-1, 10**400]
    elif case == "16k_image":
        tensor_in["shape"] = [-1, 1, 16000, 16000]
    elif case == "million_outputs":
        tensor_out["shape"] = [-1, 1000, 1000]
    elif case == "many_tensors":
        metadata["outputs"] = [tensor_out] * 10000
    elif case == "long_name":
        tensor_in["name"] = "x" * 10**6
    elif case == "rank":
        tensor_in["shape"] = [-1] + [1] * 20
    elif case == "too_long":
        metadata["padding"] = "x" * MAX_METADATA_BYTES
    raw = b"{" * 10**5 if case == "not_json" else json.dumps(metadata).encode()
    server.hostile_metadata = raw
    _, _, peak = _fails_in_one_line(lambda: _client(server.url), ModelLoadError, 5.0, server.url)
    assert peak < 3 * MAX_METADATA_BYTES / 2**20 + 8  # MiB


def test_a_hostile_service_is_exit_code_2_and_one_line_on_the_command_line(server, classifier, tmp_path, capsys):
    from tafa import Fingerprint
    from tafa.cli import main

    fingerprint = Fingerprint.create(TorchModel(classifier.owner, SHAPE), "box:0,1", points=8, directions=2)
    fingerprint.save(tmp_path / "owner.tafa")
    metadata = server.metadata()
    metadata["outputs"][0]["shape"] = [-1, 10**30]
    server.hostile_metadata = json.dumps(metadata).encode()
    capsys.readouterr()
    assert main(["--quiet", "verify", str(tmp_path / "owner.tafa"), server.url]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert server.url in captured.err and "shape" in captured.err


# -- noisy and adaptive services ---------------------------------------------------------------

def test_a_deterministic_service_is_consistent(server, probes):
    suspect = _client(server.url, batch_size=16)
    suspect(probes)
    seen = suspect.consistency
    assert seen.rechecked == seen.planned == max(RECHECK_MIN, 2) and seen.consistent
    assert seen.max_relative_difference < 1e-5 and seen.note() is None  # float rounding only
    assert suspect.queries == 40 and suspect.network_queries == 40 + seen.rechecked
    assert sum(batch for _, batch in server.arrivals) == 40 + seen.rechecked
    assert suspect.describe()["consistency"]["consistent"] is True


@pytest.mark.parametrize("hostility", ["noise", "adaptive"])
def test_noisy_and_adaptive_services_are_flagged_in_the_verdict(server, classifier, hostility):
    """A service adding 1% noise per answer, or answering an input seen before with its
    outputs reversed: the re-asked inputs differ, and the verdict says so."""
    from tafa import Fingerprint

    owner = TorchModel(classifier.owner, SHAPE)
    fingerprint = Fingerprint.create(owner, "box:0,1", points=8, directions=2, seed=0)
    references = [TorchModel(model, SHAPE) for model in classifier.references[:6]]
    honest = fingerprint.verify(_client(server.url), references)
    assert not any("INCONSISTENT" in note for note in honest.notes)
    if hostility == "noise":
        server.noise = 0.01
    else:
        server.adaptive = True
    suspect = _client(server.url)
    verdict = fingerprint.verify(suspect, references)
    seen = suspect.consistency
    assert seen.consistent is False and seen.differing >= 1 and seen.max_relative_difference > 10 * seen.tolerance
    # six references are too few for two stages at the default alpha: the first stage alone runs
    assert verdict.stages == []
    # the service re-asks a few inputs of every request, the evasion check's single-input ones too
    assert seen.rechecked >= max(RECHECK_MIN, int(np.ceil(0.05 * fingerprint.stage_queries()[0])))
    assert verdict.evasion["evasive"] and verdict.decision == "evasive"
    (note,) = [note for note in verdict.notes if "INCONSISTENT" in note]
    assert f"of {seen.rechecked} re-asked inputs" in note
    assert verdict.suspect["consistency"]["consistent"] is False
    # the client's re-asks are not answers used; the evasion check's queries are (and, for answers that
    # bend within a step, as fresh noise makes them, the coarse scale's jittered steps)
    decided_coarse = verdict.coarse is not None and verdict.coarse["decides"]
    assert decided_coarse == (hostility == "noise") and (not decided_coarse or verdict.coarse["curvature"] > 0.1)
    coarse = fingerprint.coarse_stage(averaged=True)
    assert verdict.queries == (fingerprint.stage_queries()[0] + verdict.evasion["queries"]
                               + (coarse.step_queries() if decided_coarse else 0))


def test_rechecks_stay_within_the_query_budget(server, probes):
    suspect = _client(server.url, max_queries=42)
    suspect(probes)
    seen = suspect.consistency
    assert suspect.network_queries == 42 and (seen.planned, seen.rechecked) == (RECHECK_MIN, 2)
    assert "partly checked" in seen.note()
    none_left = _client(server.url, max_queries=40)
    none_left(probes)
    assert none_left.network_queries == 40 and none_left.consistency.rechecked == 0
    off = _client(server.url, recheck=0)
    off(probes)
    assert off.network_queries == 40 and off.consistency.planned == 0
