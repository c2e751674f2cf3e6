"""Red team, second pass: findings 1, 6 and 8 of the adversary's review of model files and services.

- 1: a ``--white-box keep`` fingerprint made tafa parse the suspect's ONNX in its own process
  (``onnx.load_model``, shape inference, the importer) to read the weights the weight evidence
  compares: 1,082 MiB for a 135 MB file. The suspect's layers are now read in its sandbox
  worker and come back as bounded arrays.
- 6: a KServe v2 service whose metadata declares a second output tafa never reads, of
  ``[-1, 500000]``, forced one input per request and let answers of 32 MiB through. Batches and
  answer bounds now follow the one output tafa reads.
- 8: an ONNX file whose model-local function shadows a standard operator (``""::Relu`` whose
  body is ``Neg``) was imported as a real ReLU while the sandbox ran the function's body.

Every hostile file and service is made here; tafa's own process is measured in a child
(``VmHWM``, through :func:`test_stored_state.run_measured`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from kserve_server import KServeServer
from test_redteam import _cli
from test_redteam_http import _client, _fails_in_one_line, probes, server  # noqa: F401 - fixtures
from test_stored_state import run_measured
from tafa import Fingerprint, parse_domain
from tafa.errors import ModelLoadError, UnsafeModelFile, one_line
from tafa.models import TorchModel, open_model
from tafa.models.http import ANSWER_BYTES_PER_VALUE, ANSWER_OVERHEAD_BYTES

SHAPE = (1, 8, 8)
#: tafa's own process, for any bad or big input (the project's rule).
LIMIT_BYTES = 512 << 20


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def _export(module: nn.Module, path: Path) -> Path:
    torch.onnx.export(module, (torch.zeros(1, *SHAPE),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


@pytest.fixture(scope="module")
def weights_fingerprint(tmp_path_factory) -> Path:
    """A fingerprint that keeps the owner's first layers (``--white-box keep``)."""
    path = tmp_path_factory.mktemp("owner") / "owner.tafa"
    Fingerprint.create(TorchModel(_net(), SHAPE), "box:0,1", points=8, directions=2, weights=True,
                       progress=False).save(path)
    return path


# ------------------------------------------------------------------ finding 1


@pytest.fixture(scope="module")
def big_onnx(tmp_path_factory) -> Path:
    """A 135 MB ONNX suspect (three 4096-wide layers) whose first layer reads the owner's inputs."""
    torch.manual_seed(1)
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 10)).eval()
    return _export(wide, tmp_path_factory.mktemp("big") / "big.onnx")


def test_1_a_suspects_weights_are_read_in_its_worker_not_in_tafas_process(weights_fingerprint, big_onnx):
    """Was 1,082 MiB and 8.7 s of tafa's own process (57 MiB with --white-box off)."""
    assert big_onnx.stat().st_size > 128 << 20
    result, err = run_measured("--quiet", "verify", str(weights_fingerprint), str(big_onnx), "--json")
    assert result["code"] == 0, err[-2000:]
    assert result["peak_bytes"] < LIMIT_BYTES, f"peak {result['peak_bytes'] / 2 ** 20:.0f} MiB"


def test_1_the_parent_never_parses_a_suspect_for_weight_evidence(weights_fingerprint, tmp_path, monkeypatch):
    """Weight evidence of an ONNX suspect: no ONNX parse and no import in tafa's process, and
    the same evidence as the import in-process gave."""
    import tafa.models.onnx_import as onnx_import

    copy = _export(_net(), tmp_path / "copy.onnx")
    fingerprint = Fingerprint.load(weights_fingerprint)
    calls: list[str] = []
    real_load, real_import = onnx.load_model, onnx_import.import_onnx
    monkeypatch.setattr(onnx, "load_model", lambda *a, **k: calls.append("load") or real_load(*a, **k))
    monkeypatch.setattr(onnx_import, "import_onnx", lambda *a, **k: calls.append("import") or real_import(*a, **k))
    suspect = open_model(copy)
    try:
        found = fingerprint.weight_evidence(suspect)
    finally:
        suspect.close()
    assert not calls
    assert found.applicable and found.p_value < 1e-6 and found.layers[0].matched == 16
    assert found.cosine == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["onnx", "onnx_conv", "safetensors", "torchscript"])
def test_1_layers_read_in_the_worker_equal_those_of_the_in_process_import(kind, tmp_path):
    """The worker's reading is the reading tafa made in its own process before, value for value."""
    from safetensors.torch import save_file

    from tafa.models.onnx_import import import_onnx
    from tafa.weights import unit_layers

    options: dict = {}
    if kind == "onnx_conv":
        torch.manual_seed(2)
        module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3),
                               nn.ReLU(), nn.Flatten(), nn.Linear(24, 10)).eval()
    else:
        module = _net(3)
    if kind.startswith("onnx"):
        path = _export(module, tmp_path / "m.onnx")
        expected = unit_layers(import_onnx(onnx.load_model(str(path))).float())
    elif kind == "safetensors":
        path = tmp_path / "m.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
        factory = tmp_path / "net.py"
        factory.write_text("import torch\ndef net():\n    return torch.nn.Sequential(torch.nn.Flatten(), "
                           "torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))\n")
        options = {"factory": f"{factory}:net", "input_shape": SHAPE}
        expected = unit_layers(module)
    else:
        path = tmp_path / "m.pt"
        torch.jit.trace(module, torch.zeros(1, *SHAPE)).save(str(path))
        options = {"allow_torchscript": True, "input_shape": SHAPE}
        expected = unit_layers(module)
    model = open_model(path, **options)
    try:
        read = model.weight_layers()
        assert model.describe()["white_box"] is False  # nothing was imported into this process
    finally:
        model.close()
    # an ONNX file's layers are named by their node (tafa.models.onnx_units), a module's by its path
    assert [{**layer.describe(), "name": ""} for layer in read] == [{**layer.describe(), "name": ""}
                                                                     for layer in expected]
    for mine, theirs in zip(read, expected):
        assert mine.vectors.dtype == np.float64 and np.array_equal(mine.vectors, theirs.vectors)


# ------------------------------------------------------------------ finding 6


def _second_output_metadata(running: KServeServer) -> bytes:
    metadata = running.metadata()
    metadata["outputs"].append({"name": "embedding", "datatype": "FP32", "shape": [-1, 500000]})
    return json.dumps(metadata).encode()


def _answer_with_the_unread_output(batch: int) -> tuple[Iterable[bytes], None]:
    """What the hostile service sends whatever it is asked: the output read, and 500000 values
    per input of the one tafa asked it to leave out (streamed, without a length)."""
    def pieces() -> Iterable[bytes]:
        read = json.dumps({"name": "output", "shape": [batch, 10], "datatype": "FP32", "data": [0.0] * (batch * 10)})
        yield ('{"outputs": [' + read + ', {"name": "embedding", "shape": [' + f"{batch}, 500000"
               + '], "datatype": "FP32", "data": [0').encode()
        chunk = b",0" * (1 << 18)
        for _ in range(batch * 500000 // (1 << 18) + 1):
            yield chunk
        yield b"]}]}"
    return pieces(), None


def test_6_an_unread_output_sizes_neither_batches_nor_answers(server, probes):  # noqa: F811
    server.hostile_metadata = _second_output_metadata(server)
    suspect = _client(server.url)
    assert suspect.batch_size == 64  # was 1: a request per input
    assert suspect.answer_limit(64) == ANSWER_OVERHEAD_BYTES + ANSWER_BYTES_PER_VALUE * 64 * 10  # was 32 MiB
    # a service that leaves the unread output out, as asked, answers in full batches
    answers = suspect(probes)
    assert answers.shape == (40, 10) and server.batches()[0] == 40
    assert np.allclose(answers, _client(server.url, recheck=0)(probes), atol=1e-6)


def test_6_an_answer_carrying_an_unread_output_is_refused_before_it_is_parsed(server, probes):  # noqa: F811
    server.hostile_metadata = _second_output_metadata(server)
    server.hostile_answer = _answer_with_the_unread_output
    suspect = _client(server.url)
    message, took, peak = _fails_in_one_line(lambda: suspect(probes[:5]), ModelLoadError, 10.0, server.url)
    assert "more than" in message and str(suspect.answer_limit(5)) in message
    assert peak < 3 * suspect.answer_limit(5) / 2 ** 20 + 8  # MiB: what 5 answers of 10 values need


# ------------------------------------------------------------------ finding 8


def _shadowing(path: Path, domain: str) -> Path:
    """The owner's export with its ``Relu`` node in ``domain`` and a model-local function
    ``domain::Relu`` whose body is ``Neg``."""
    model = onnx.load_model(str(_export(_net(), path)))
    opset = next(entry.version for entry in model.opset_import if entry.domain == "")
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.domain = domain
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    model.functions.append(helper.make_function(domain, "Relu", ["X"], ["Y"], [helper.make_node("Neg", ["X"], ["Y"])],
                                                opset_imports=[helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_8_a_local_function_shadowing_a_standard_operator_is_refused(tmp_path):
    import onnxruntime
    from onnx.inliner import inline_local_functions

    from tafa.models.onnx_import import import_onnx

    path = _shadowing(tmp_path / "shadow.onnx", "")
    proto = onnx.load_model(str(path))
    # control: the runtimes disagree about which Relu runs (onnxruntime: the standard one; the
    # inliner tafa's sandbox uses: the file's Neg), so no reading of the file is the right one
    assert [node.op_type for node in inline_local_functions(proto).graph.node].count("Neg") == 1
    x = np.random.default_rng(0).uniform(size=(3, *SHAPE)).astype(np.float32)
    answered = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(answered, _net()(torch.from_numpy(x)).detach().numpy(), atol=1e-5)
    with pytest.raises(UnsafeModelFile) as refused:
        import_onnx(proto)
    assert "'Relu'" in one_line(refused.value) and "local function" in one_line(refused.value)
    with pytest.raises(UnsafeModelFile) as refused:
        open_model(path)
    assert "'Relu'" in one_line(refused.value) and str(path.name) in one_line(refused.value)
    home = tmp_path / "cwd"
    home.mkdir()
    done = _cli(["fingerprint", str(path), "--domain", "box:0,1", "--out", str(home / "o.tafa"), "--probes", "4",
                 "--directions", "1"], home)
    lines = [line for line in done["err"].splitlines() if line.strip()]
    assert done["rc"] == 2 and len(lines) == 1 and "'Relu'" in lines[0] and not done["out"], done
    assert not list(home.iterdir())


def test_8_a_local_function_named_like_an_interpreted_operator_is_not_imported_as_it(tmp_path):
    """``org.example::Relu`` (body ``Neg``) runs its body in the sandbox; the importer, which
    reads operators by name, must refuse it rather than import it as a ReLU."""
    from tafa.models.onnx_import import import_onnx

    path = _shadowing(tmp_path / "custom.onnx", "org.example")
    x = np.random.default_rng(0).uniform(-1, 1, size=(3, *SHAPE)).astype(np.float32)
    model = open_model(path)
    try:
        hidden = np.maximum(x.reshape(3, -1) @ _net()[1].weight.detach().numpy().T
                            + _net()[1].bias.detach().numpy(), 0)
        assert not np.allclose(model(x), hidden @ _net()[3].weight.detach().numpy().T
                               + _net()[3].bias.detach().numpy(), atol=1e-4)  # the sandbox runs Neg
        with pytest.raises(UnsafeModelFile, match="local function 'org.example::Relu'"):
            model.torch_module()
    finally:
        model.close()
    with pytest.raises(UnsafeModelFile, match="'org.example::Relu'"):
        import_onnx(onnx.load_model(str(path)))
    home = tmp_path / "cwd"
    home.mkdir()
    done = _cli(["fingerprint", str(path), "--domain", "box:0,1", "--out", str(home / "o.tafa"), "--probes", "4",
                 "--directions", "1"], home)
    lines = [line for line in done["err"].splitlines() if line.strip()]
    assert done["rc"] == 2 and len(lines) == 1 and "org.example::Relu" in lines[0] and not done["out"], done
    assert not list(home.iterdir())


HOSTILE_WORKER = '''import json
import numpy as np
import torch
import tafa.models.sandbox as sandbox
import tafa.models.worker as worker

MODE = {mode!r}


def _send_layers(sock, model, max_layers, source):
    if MODE == "many":
        sandbox.send_array(sock, sandbox.COUNT, np.array([1000], dtype=np.int64))
        return
    sandbox.send_array(sock, sandbox.COUNT, np.array([1], dtype=np.int64))
    description = {{"name": "0", "kind": "linear", "inputs": 64, "units": 16, "fan_in": 64, "hidden": True}}
    sandbox.send_array(sock, sandbox.NAME, sandbox._as_bytes(json.dumps(description)))
    rows = (2048, 4097) if MODE == "huge" else (16, 30)
    sandbox.send_array(sock, sandbox.ARRAY, np.zeros(rows))


def build():
    worker._send_layers = _send_layers  # what code in control of the worker could do
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
'''


@pytest.mark.parametrize("mode, words", [("many", "announced 1000 weight layers"),
                                         ("huge", "more than the 33554432 bytes expected"),
                                         ("misfit", "do not fit their description")])
def test_1_what_a_worker_sends_back_as_weights_is_bounded_before_use(mode, words, tmp_path):
    """A worker under hostile control (here: the factory, which runs in the worker, replaces
    the worker's layer reader) gets no more than the bounds: at most the layers asked for,
    2^22 float64 values in all (checked on the header, before the array is received), shapes
    that fit their description."""
    from safetensors.torch import save_file

    factory = tmp_path / "hostile.py"
    factory.write_text(HOSTILE_WORKER.format(mode=mode))
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _net().state_dict().items()}, str(weights))
    model = open_model(weights, factory=f"{factory}:build", input_shape=SHAPE)
    try:
        with pytest.raises(ModelLoadError) as refused:
            model.weight_layers(max_layers=2)
    finally:
        model.close()
    message = one_line(refused.value)
    assert words in message and "w.safetensors" in message and "\n" not in str(refused.value)


# ------------------------------------------------------------------ reference folders opened at once
def test_a_folder_opened_several_files_at_once_reports_the_first_bad_file_by_name(weights_fingerprint, tmp_path,
                                                                                capsys):
    """Reference folders are opened several files at once (each in its own sandbox worker); with good
    files and two hostile ones among them (a truncated ONNX file, a zip posing as a torch archive),
    the error is one line naming the first bad file in name order, whichever worker fails first,
    and no thread is left behind."""
    import threading

    from tafa.cli import main

    folder = tmp_path / "refs"
    folder.mkdir()
    for i in range(6):
        _export(_net(10 + i), folder / f"r{i:02d}.onnx")
    (folder / "r03b.onnx").write_bytes((folder / "r00.onnx").read_bytes()[:200])  # truncated: not a model
    (folder / "r05b.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 100)  # a zip that is no archive
    suspect = _export(_net(), tmp_path / "suspect.onnx")
    threads = []
    for _ in range(2):
        code = main(["--quiet", "verify", str(weights_fingerprint), str(suspect), "--references", str(folder)])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2 and captured.out == "" and len(lines) == 1, captured.err
        assert "Reference model" in lines[0] and "r03b.onnx" in lines[0] and "r05b" not in lines[0], lines
        threads.append(threading.active_count())
    assert threads[1] <= threads[0], threads  # (the sandbox's own threads start with the first call)


def _reduce_max_file(path: Path, axes: list[int]) -> Path:
    """A 4-input regressor whose hidden values are shifted by their ``ReduceMax`` over ``axes``
    (given as an input, as opset 18 writes it); onnxruntime runs it for any of these axes."""
    rng = np.random.default_rng(0)
    weight = onnx.numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w")
    listed = onnx.numpy_helper.from_array(np.array(axes, dtype=np.int64), "a")
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("ReduceMax", ["r", "a"], ["m"], keepdims=1), helper.make_node("Add", ["r", "m"], ["y"])]
    graph = helper.make_graph(nodes, "reduce", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 3])], [weight, listed])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("axes,why", [([1], None), ([0, 1, 0, 1], "more axes than its input has"),
                                      ([1, 1], "does not run"), ([0], "does not answer a batch as it answers each")],
                         ids=["plain", "too-many-axes", "repeated-axis", "over-the-batch"])
def test_an_imported_graph_that_does_not_run_or_answer_as_its_file_is_analysed_black_box(axes, why, tmp_path):
    """A graph tafa's interpreter imports must answer as onnxruntime runs the file; a graph its
    interpreter cannot run (an axis given twice, more axes than the input has) or reads otherwise
    made ``Fingerprint.create`` fail with a RuntimeError (session 27's ReduceMax import), where
    the owner belongs on the black-box path with the reason."""
    owner = open_model(str(_reduce_max_file(tmp_path / "reduce.onnx", axes)))
    fingerprint = Fingerprint.create(owner, parse_domain("box:0,1", (4,)), second_stage=False)
    analysis = fingerprint.probes.info["analysis"]
    if why is None:
        assert analysis == "white-box"
    else:
        assert analysis.startswith("black-box") and why in analysis
