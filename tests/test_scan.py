"""Scanning many suspects against every registered fingerprint: shared queries, both engines
with the same results, failures recorded, interrupted and killed scans resumed, two scans
writing one registry at once, and the command line with its reports.

Two owners (the classifier fixture's owner, and one of its independent references as a
second owner) and a fingerprint of another input shape are registered; the suspects are
real ONNX/TorchScript files derived from them or independent of them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from kserve_server import KServeServer, free_port
from tafa import Fingerprint
from tafa.attacks import add_weight_noise, magnitude_prune, permute_units, quantize
from tafa.bench.architectures import build
from tafa.cli import main
from tafa.models import open_model
from tafa.decide.multiple import rate_for_this_panel
from tafa.errors import InvalidParameter
from tafa.registry import Registry, RegistryError, row_hash
from tafa.scanning import OpenOptions, Panel, QueryPlan, ScanReport, Suspect, scan, suspects_in
from tafa.scanning.report import BOUND_HEADER, MATCH_HEADER, SUSPECT_HEADER

#: The machinery tests decide with each stored calibration (the family-wise control has its own tests).
PER_FINGERPRINT = "per-fingerprint"
EXPORT = dict(dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})


def _onnx(model: torch.nn.Module, path: Path, shape=(1, 8, 8)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), **EXPORT)
    return str(path)


@pytest.fixture(scope="module")
def world(classifier, tmp_path_factory):
    """Fingerprint files, a registry with them, and a folder of suspects with known answers."""
    root = tmp_path_factory.mktemp("scan")
    owner_a, owner_b = classifier.owner, classifier.references[0]
    references = classifier.references[1:]
    owner_c = build("mlp_small", input_shape=(10,), output_dim=1, seed=5)
    files, calibrations = {}, {}
    for name, model, shape, domain in (("a", owner_a, (1, 8, 8), "box:0,1"), ("b", owner_b, (1, 8, 8), "box:0,1"),
                                       ("c", owner_c, (10,), "box:-2,2")):
        fingerprint = Fingerprint.create(model, domain, input_shape=shape, points=16)
        files[name] = fingerprint.save(root / f"{name}.tafa")
        if name != "c":
            calibrations[name] = fingerprint.calibrate_first(references, alpha=1 / 12)
    suspects = root / "suspects"
    models = {
        "a_pruned": magnitude_prune(owner_a, 0.5), "a_permuted": permute_units(owner_a, seed=3),
        "nested/a_int8": quantize(owner_a, 8), "b_noise": add_weight_noise(owner_b, 0.05, seed=1),
        "independent": classifier.independent,
    }
    paths = {name: _onnx(model, suspects / f"{name}.onnx") for name, model in models.items()}
    paths["c_copy"] = _onnx(owner_c, suspects / "c_copy.onnx", shape=(10,))
    script = suspects / "a_script.pt"  # TorchScript declares no input shape: the scan tries the registered ones
    torch.jit.trace(permute_units(owner_a, seed=4), torch.zeros(1, 1, 8, 8)).save(str(script))
    paths["a_script"] = str(script)
    (suspects / "broken.onnx").write_bytes(b"not a model at all")
    paths["broken"] = str(suspects / "broken.onnx")
    registry_path = root / "registry.sqlite"
    with Registry(registry_path) as registry:
        for name, path in files.items():
            registry.add(path, name, calibration=calibrations.get(name))
    expected = {  # suspect -> {fingerprint: decision}
        "a_pruned": {"a": "derived", "b": "independent"}, "a_permuted": {"a": "derived", "b": "independent"},
        "nested/a_int8": {"a": "derived", "b": "independent"}, "a_script": {"a": "derived", "b": "independent"},
        "b_noise": {"a": "independent", "b": "derived"}, "independent": {"a": "independent", "b": "independent"},
        "c_copy": {"c": "undecided"},
    }
    return SimpleNamespace(root=root, files=files, registry=registry_path, suspects=suspects, paths=paths,
                           expected=expected, calibrations=calibrations, owners={"a": owner_a, "b": owner_b})


#: The world's suspects include a TorchScript file, refused unless allowed.
SCRIPTS = OpenOptions(allow_torchscript=True)


def _copy_registry(world, tmp_path) -> Path:
    """A fresh registry holding the world's fingerprints (each test writes its own scans)."""
    path = tmp_path / "registry.sqlite"
    with Registry(path) as registry:
        for name, file in world.files.items():
            registry.add(file, name, calibration=world.calibrations.get(name))
    return path


def _table(report: ScanReport) -> dict[str, dict[str, tuple[float | None, str]]]:
    return {o.source: {f.fingerprint: (f.score, f.decision) for f in o.findings} for o in report.outcomes}


def _good(world) -> list[str]:
    return [world.paths[name] for name in world.expected]


@pytest.fixture(scope="module")
def inline_report(world):
    return scan(_good(world) + [world.paths["broken"]], registry=world.registry, workers=0, options=SCRIPTS,
                control=PER_FINGERPRINT)


def test_scan_finds_each_owners_copies_and_only_them(world, inline_report):
    report = inline_report
    assert report.scan.status == "finished"
    assert report.scan.counts == {"pending": 0, "done": 7, "skipped": 0, "failed": 1}
    by_source = {o.source: o for o in report.outcomes}
    for name, decisions in world.expected.items():
        outcome = by_source[world.paths[name]]
        assert outcome.status == "done" and {f.fingerprint: f.decision for f in outcome.findings} == decisions, name
    # scores equal what Fingerprint.score gives the same suspect alone
    for name in ("a_pruned", "b_noise", "independent"):
        model = open_model(world.paths[name])
        for finding in by_source[world.paths[name]].findings:
            alone = Fingerprint.load(world.files[finding.fingerprint]).score(model).value
            assert finding.score == pytest.approx(alone, abs=1e-6)
    # identity: the file's SHA-256
    from tafa.models import file_hash
    identity = file_hash(world.paths["a_pruned"])
    assert by_source[world.paths["a_pruned"]].identity == identity
    with Registry(world.registry) as registry:  # the registry answers "what do we know of this file?"
        assert [(scan_id, f.fingerprint, f.decision) for scan_id, f in registry.history(identity)] == \
            [(report.id, "a", "derived"), (report.id, "b", "independent")]
    assert {o.source for o, _ in report.matches()} == {world.paths[n] for n in
                                                        ("a_pruned", "a_permuted", "nested/a_int8", "a_script",
                                                         "b_noise")}


def test_a_suspect_is_opened_and_queried_once_for_all_its_fingerprints(world, inline_report, monkeypatch):
    # a scan measures every fingerprint's first stage alone (fixed inputs, shared between fingerprints)
    queries = {name: Fingerprint.load(path).step_queries() for name, path in world.files.items()}
    by_source = {o.source: o for o in inline_report.outcomes}
    outcome = by_source[world.paths["a_pruned"]]
    assert outcome.queries == queries["a"] + queries["b"]  # two owners' probes share no input
    assert [f.queries for f in outcome.findings] == [queries["a"], queries["b"]]
    assert by_source[world.paths["c_copy"]].queries == queries["c"]
    # Count opens and calls; with the same fingerprint registered three times, inputs are sent once.
    import tafa.models as models

    opened, calls = [], []
    real_open = models.open_model

    def counting_open(spec, **options):
        model = real_open(spec, **options)
        forward = model.__call__
        opened.append(spec)

        class Counted(type(model)):
            def __call__(self, x):
                calls.append((spec, len(x)))
                return forward(x)
        model.__class__ = Counted
        return model

    monkeypatch.setattr(models, "open_model", counting_open)
    panel = Panel.from_fingerprints({name: Fingerprint.load(world.files["a"]) for name in ("a1", "a2", "a3")})
    outcome = panel.check(Suspect(world.paths["a_pruned"]), OpenOptions())
    assert opened == [world.paths["a_pruned"]] and calls == [(world.paths["a_pruned"], queries["a"])]
    assert outcome.queries == queries["a"] and [f.queries for f in outcome.findings] == [queries["a"]] * 3
    assert len({f.score for f in outcome.findings}) == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=12), min_size=1, max_size=4))
def test_query_plan_sends_each_distinct_input_once_and_gives_every_fingerprint_its_own(rows):
    # input i of a fingerprint is the constant vector of value v: equal values mean equal inputs
    entries = [SimpleNamespace(name=f"fp{k}", fingerprint=SimpleNamespace(input_shape=(3,)),
                               inputs=np.array([[v, v, v] for v in values], dtype=np.float32))
               for k, values in enumerate(rows)]
    plan = QueryPlan.build(entries)
    assert len(plan) == len({v for values in rows for v in values})
    for entry in entries:
        np.testing.assert_array_equal(plan.inputs[plan.index[entry.name]], entry.inputs)


def test_failing_suspects_are_recorded_and_the_scan_goes_on(world, inline_report, tmp_path):
    broken = {o.source: o for o in inline_report.outcomes}[world.paths["broken"]]
    assert broken.status == "failed" and "not a loadable ONNX model" in broken.error and not broken.findings
    from tafa.models import file_hash
    assert broken.identity == file_hash(world.paths["broken"])
    closed = f"http://127.0.0.1:{free_port()}/v2/models/gone"
    report = scan([tmp_path / "missing.onnx", closed, world.paths["independent"]],
                  registry=_copy_registry(world, tmp_path), workers=0, options=OpenOptions(retries=0, timeout=2.0))
    outcomes = {o.source: o for o in report.outcomes}
    assert outcomes[str(tmp_path / "missing.onnx")].status == "failed"
    assert "does not exist" in outcomes[str(tmp_path / "missing.onnx")].error
    assert outcomes[closed].status == "failed" and outcomes[closed].kind == "endpoint" and outcomes[closed].error
    assert outcomes[world.paths["independent"]].status == "done"
    assert report.scan.status == "finished"


@pytest.mark.slow
def test_local_pool_and_ray_give_the_same_results_and_survive_a_crashing_suspect(world, inline_report, tmp_path,
                                                                                 monkeypatch):
    # A weights-only suspect whose factory kills the process that opens it: the sandbox worker
    # (tafa.models.sandbox), so the scan's own workers survive and report one error line.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "killer_factory.py").write_text("import os\n\ndef build():\n    os._exit(7)\n")
    killer = tmp_path / "killer.safetensors"
    save_file({k: v.contiguous() for k, v in world.owners["a"].state_dict().items()}, str(killer))
    suspects = _good(world) + [world.paths["broken"], str(killer)]
    options = OpenOptions(factory=f"{tmp_path / 'killer_factory.py'}:build", allow_torchscript=True)
    local = scan(suspects, registry=_copy_registry(world, tmp_path), workers=2, options=options,
                 control=PER_FINGERPRINT)
    expected = _table(inline_report)
    found = _table(local)
    killed = found.pop(str(killer))
    assert killed == {} and found == expected
    died = {o.source: o for o in local.outcomes}[str(killer)]
    assert died.status == "failed" and "killer.safetensors" in died.error and "exit code 7" in died.error
    assert local.scan.counts == {"pending": 0, "done": 7, "skipped": 0, "failed": 2}

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = scan(suspects, registry=_copy_registry_as(world, tmp_path, "ray"), engine="ray", options=options,
                      control=PER_FINGERPRINT)
    finally:
        ray.shutdown()
    found = _table(remote)
    assert found.pop(str(killer)) == {} and found == expected
    died = {o.source: o for o in remote.outcomes}[str(killer)]
    assert died.status == "failed" and "exit code 7" in died.error
    assert remote.run["engine"] == "ray"


def _copy_registry_as(world, tmp_path, name) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return _copy_registry(world, folder)


def test_interrupted_scan_resumes_without_repeating_finished_suspects(world, inline_report, tmp_path):
    """Ctrl-C after two suspects, and an endpoint lost mid-scan: resume does the rest only."""
    owner = world.owners["a"]

    def predict(x):
        with torch.no_grad():
            return owner(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    registry = _copy_registry(world, tmp_path)
    with KServeServer(predict, input_shape=(1, 8, 8), output_shape=(10,)) as server:
        server.drop_after = 1  # answers one request, then hangs up on every other: the endpoint is lost
        suspects = _good(world) + [server.url]
        seen: list[str] = []

        def interrupt_after_two(outcome):
            seen.append(outcome.source)
            if len(seen) == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            scan(suspects, registry=registry, workers=0, on_outcome=interrupt_after_two,
                 options=OpenOptions(batch_size=64, retries=0, timeout=5.0, allow_torchscript=True),
                 control=PER_FINGERPRINT)
        with Registry(registry) as store:
            (record,) = store.scans()
            assert record.status == "interrupted"
            assert record.counts == {"pending": 6, "done": 2, "skipped": 0, "failed": 0}
            first = {o.source: o.recorded for o in store.outcomes(record.id) if o.status == "done"}
        assert set(first) == set(seen)

        resumed: list[str] = []
        report = scan(registry=registry, resume=record.id, workers=0, on_outcome=lambda o: resumed.append(o.source))
        assert not set(resumed) & set(seen) and set(resumed) | set(seen) == set(suspects)
        lost = {o.source: o for o in report.outcomes}[server.url]
        assert lost.status == "failed" and report.scan.status == "finished"

        server.drop_after = None  # the endpoint is back: resuming again tries only the failed suspect
        again: list[str] = []
        report = scan(registry=registry, resume=record.id, workers=0, on_outcome=lambda o: again.append(o.source))
    assert again == [server.url]
    outcomes = {o.source: o for o in report.outcomes}
    assert outcomes[server.url].status == "done" and outcomes[server.url].identity == server.url
    assert {f.fingerprint: f.decision for f in outcomes[server.url].findings} == {"a": "derived", "b": "independent"}
    assert {source: o.recorded for source, o in outcomes.items() if source in first} == first  # not redone
    table = _table(report)
    table.pop(server.url)
    assert table == {k: v for k, v in _table(inline_report).items() if k != world.paths["broken"]}
    with pytest.raises(Exception, match="resumed scan keeps its own suspects"):
        scan([world.paths["independent"]], registry=registry, resume=record.id)


_KILLED = textwrap.dedent("""
    import os, signal, sys
    from tafa.scanning import OpenOptions, scan
    count = []
    def kill_after_two(outcome):
        count.append(outcome)
        if len(count) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    scan(sys.argv[2:], registry=sys.argv[1], workers=2, on_outcome=kill_after_two, flush_seconds=0,
         options=OpenOptions(allow_torchscript=True), control="per-fingerprint")
""")


def _cli(*argv: str) -> list[str]:
    """The ``tafa`` command in a fresh process (as the console script runs it)."""
    return [sys.executable, "-c", "import sys; from tafa.cli import main; sys.exit(main(sys.argv[1:]))",
            "--quiet", *argv]


def test_a_killed_scan_resumes_from_the_command_line(world, inline_report, tmp_path, capsys):
    registry = _copy_registry(world, tmp_path)
    killed = subprocess.run([sys.executable, "-c", _KILLED, str(registry), *_good(world)], capture_output=True,
                            text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Registry(registry) as store:
        (record,) = store.scans()
        assert record.status == "running" and record.counts["done"] == 2 and record.counts["pending"] == 5
        first = {o.source: o.recorded for o in store.outcomes(record.id) if o.status == "done"}
    code = main(["--quiet", "scan", "--resume", record.id, "--registry", str(registry), "--workers", "0", "--json"])
    assert code == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["summary"]["done"] == 7 and resumed["run"]["suspects"] == 5
    assert resumed["scan"]["status"] == "finished"
    outcomes = {o["source"]: o for o in resumed["outcomes"]}
    assert {source: outcomes[source]["recorded"] for source in first} == first
    scores = {o["source"]: {f["fingerprint"]: (f["score"], f["decision"]) for f in o["findings"]}
              for o in resumed["outcomes"]}
    assert scores == {k: v for k, v in _table(inline_report).items() if k != world.paths["broken"]}


def test_two_scans_writing_one_registry_at_once_lose_nothing(world, tmp_path):
    registry = _copy_registry(world, tmp_path)
    good = _good(world)
    halves = [good + [world.paths["broken"]], list(reversed(good))]
    runs = [subprocess.Popen(_cli("scan", *half, "--registry", str(registry), "--workers", "0", "--json",
                                  "--allow-torchscript"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for half in halves]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    ids = {json.loads(out)["summary"]["scan"] for out, _ in outputs}
    with Registry(registry) as store:
        records = {record.id: record for record in store.scans()}
        assert set(records) == ids and len(ids) == 2
        counts = sorted((r.counts["done"], r.counts["failed"]) for r in records.values())
        assert counts == [(7, 0), (7, 1)]
        for scan_id in ids:
            findings = sum(len(o.findings) for o in store.outcomes(scan_id))
            assert findings == 6 * 2 + 1  # six 8x8 suspects x two owners, and c_copy x c


# -- the command line ----------------------------------------------------------------------------

def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["--quiet", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_scan_of_a_folder_and_endpoint_list_with_reports(world, tmp_path, capsys):
    registry = _copy_registry(world, tmp_path)
    endpoints = tmp_path / "endpoints.txt"
    closed = f"http://127.0.0.1:{free_port()}/v2/models/gone"
    endpoints.write_text(f"# seized services\n\n{closed}   # offline\n")
    code, out, err = _run(capsys, "scan", "--dir", str(world.suspects), "--endpoints", str(endpoints), "--registry",
                          str(registry), "--workers", "0", "--retries", "0", "--json", "--allow-torchscript",
                          "--control", PER_FINGERPRINT, "--report", str(tmp_path / "report.md"))
    assert code == 0 and "report written to" in err
    result = json.loads(out)
    summary = result["summary"]
    assert (summary["suspects"], summary["done"], summary["failed"], summary["matches"]) == (9, 7, 2, 5)
    assert summary["decisions"] == {"derived": 5, "independent": 7, "undecided": 1}
    assert {o["source"] for o in result["outcomes"]} >= {world.paths["nested/a_int8"], closed}
    markdown = (tmp_path / "report.md").read_text()
    assert "## Matches" in markdown and "a_pruned.onnx | a |" in markdown and "## Failed suspects" in markdown
    assert (tmp_path / "report-scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = _run(capsys, "scan", world.paths["a_pruned"], world.paths["independent"], "--registry",
                        str(registry), "--workers", "0", "--control", PER_FINGERPRINT, "--report",
                        str(tmp_path / "report.html"))
    assert code == 0 and "1 matches:" in out and "a_pruned.onnx" in out
    page = (tmp_path / "report.html").read_text()
    assert "<table>" in page and "<svg" in page and "a_pruned.onnx" in page
    code, out, _ = _run(capsys, "registry", "scans", "--registry", str(registry))
    assert code == 0 and len(out.strip().splitlines()) == 3 and "finished" in out


def test_cli_scan_without_calibration_reports_scores_undecided(world, tmp_path, capsys):
    registry = tmp_path / "plain.sqlite"
    with Registry(registry) as store:
        store.add(world.files["a"], "a")
    code, out, _ = _run(capsys, "scan", world.paths["a_pruned"], world.paths["independent"], "--registry",
                        str(registry), "--workers", "0", "--control", PER_FINGERPRINT)
    assert code == 0 and "every decision is undecided" in out and "undecided" in out.splitlines()[-2]
    assert "error control: per fingerprint" in out
    # family-wise (the default) without a null panel: undecided too, and it says what is missing
    code, out, _ = _run(capsys, "scan", world.paths["a_pruned"], world.paths["independent"], "--registry",
                        str(registry), "--workers", "0", "--json")
    summary = json.loads(out)["summary"]
    assert summary["decisions"] == {"undecided": 2} and summary["error_control"]["bound"] is None
    assert "there is no null panel" in summary["error_control"]["statement"]


def test_cli_scan_bad_input_gives_one_line_and_exit_code_2(world, tmp_path, capsys):
    empty = str(tmp_path / "empty.sqlite")
    code, _, err = _run(capsys, "scan", world.paths["a_pruned"], "--registry", empty)
    assert code == 2 and "holds no fingerprints" in err and len(err.strip().splitlines()) == 1
    registry = str(_copy_registry(world, tmp_path))
    code, _, err = _run(capsys, "scan", "--registry", registry)
    assert code == 2 and "Nothing to scan" in err
    code, _, err = _run(capsys, "scan", "--resume", "no-such-scan", "--registry", registry)
    assert code == 2 and "No scan 'no-such-scan'" in err
    code, _, err = _run(capsys, "scan", world.paths["a_pruned"], "--fingerprint", "zzz", "--registry", registry)
    assert code == 2 and "No fingerprint named 'zzz'" in err
    code, _, err = _run(capsys, "scan", "--dir", str(tmp_path / "nowhere"), "--registry", registry)
    assert code == 2 and "'dir' parameter of scan must be a folder" in err


def test_resume_refuses_a_fingerprint_changed_since_the_scan_began(world, tmp_path):
    registry = _copy_registry(world, tmp_path)

    def interrupt(outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(_good(world), registry=registry, workers=0, on_outcome=interrupt, options=SCRIPTS)
    with Registry(registry) as store:
        (record,) = store.scans()
        store.add(world.files["b"], "a", replace=True)
    with pytest.raises(RegistryError, match="'a' changed since scan"):
        scan(registry=registry, resume=record.id, workers=0)


def test_family_alpha_recalibrates_every_threshold_for_the_whole_panel(world, tmp_path):
    from tafa.decide import calibrate

    registry = _copy_registry(world, tmp_path)

    def interrupt(outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan([world.paths["a_pruned"], world.paths["independent"]], registry=registry, workers=0,
             family_alpha=0.05, on_outcome=interrupt)
    with Registry(registry) as store:
        (record,) = store.scans()
    report = scan(registry=registry, resume=record.id, workers=0)  # the resumed part keeps the family bound
    thresholds = {f.fingerprint: f.threshold for o in report.outcomes for f in o.findings}
    for name in ("a", "b"):
        own = world.calibrations[name]
        family = calibrate(own.reference_scores, 0.05 / 3)
        assert thresholds[name] == pytest.approx(family.threshold)
        # 17 references cannot support 0.05/3 by rank (it needs 59): no fingerprint decides
        assert not family.supports_alpha and family.references_needed == 59
    assert {f.decision for o in report.outcomes for f in o.findings} == {"undecided"}
    assert report.scan.config["control"]["kind"] == "bonferroni" and report.scan.config["control"]["alpha"] == 0.05
    with pytest.raises(InvalidParameter, match="'alpha' parameter of scan"):
        scan([world.paths["a_pruned"]], registry=registry, workers=0, family_alpha=1.5)


def test_a_learned_fingerprint_scans_like_it_verifies(classifier, tmp_path):
    """The panel scores with the fingerprint's own fitted verifier, as Fingerprint.score does."""
    from tafa.attacks import quantize
    from tafa.references import References

    references = References(positives=[quantize(classifier.owner, 8), quantize(classifier.owner, 4)],
                            negatives=classifier.references[:4])
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=(1, 8, 8), scheme="tafa-learned",
                                     points=16, references=references)
    path = tmp_path / "independent.onnx"
    torch.onnx.export(classifier.independent, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    outcome = Panel.from_fingerprints({"learned": fingerprint}).check(Suspect(str(path)), OpenOptions())
    [finding] = outcome.findings
    assert finding.score == pytest.approx(fingerprint.score(classifier.independent).value, abs=1e-6)


# -- rough edges a new user hit (issue 11) --------------------------------------------------------

def test_registry_add_with_a_taken_name_names_replace(world, tmp_path, capsys):
    registry = str(_copy_registry(world, tmp_path))
    code, _, err = _run(capsys, "registry", "add", str(world.files["b"]), "--name", "a", "--registry", registry)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--replace" in err and "'a'" in err
    with Registry(registry) as store:
        assert store.entry("a").sha256 == Fingerprint.load(world.files["a"]).sha256
    code, _, err = _run(capsys, "registry", "add", str(world.files["b"]), "--name", "a", "--registry", registry,
                        "--replace")
    assert code == 0, err


def test_scan_of_a_folder_without_model_files_says_so(world, tmp_path, capsys):
    registry = str(_copy_registry(world, tmp_path))
    empty = tmp_path / "seized"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no models here")
    code, _, err = _run(capsys, "scan", "--dir", str(empty), "--registry", registry)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds no model files" in err and str(empty) in err and "give --dir" not in err.lower()


def test_a_suspect_that_fits_no_fingerprint_is_reported_skipped(world, tmp_path, capsys):
    registry = str(_copy_registry(world, tmp_path))
    odd = _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)), tmp_path / "odd.onnx", (1, 4, 4))
    code, out, _ = _run(capsys, "scan", odd, world.paths["a_pruned"], "--registry", registry, "--workers", "0",
                        "--json", "--report", str(tmp_path / "report.md"))
    assert code == 0
    result = json.loads(out)
    assert (result["summary"]["done"], result["summary"]["skipped"], result["summary"]["failed"]) == (1, 1, 0)
    (skipped,) = [o for o in result["outcomes"] if o["source"] == odd]
    assert skipped["findings"] == [] and skipped["error"].startswith("skipped") and "[1, 4, 4]" in skipped["error"]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Skipped suspects" in markdown and "odd.onnx" in markdown
    code, out, _ = _run(capsys, "scan", odd, "--registry", registry, "--workers", "0")
    assert code == 0 and "1 skipped" in out and "1 suspects skipped" in out and "odd.onnx: skipped" in out


# -- error control over many fingerprints ---------------------------------------------------------

@pytest.fixture(scope="module")
def null_panel(classifier, world):
    """The 17 independent references as model files: the null panel of family-wise scans."""
    folder = world.root / "panel"
    for i, model in enumerate(classifier.references[1:]):
        _onnx(model, folder / f"reference{i:02d}.onnx")
    return folder


def _decisions(report: ScanReport) -> dict[str, dict[str, str]]:
    return {o.source: {f.fingerprint: f.decision for f in o.findings} for o in report.outcomes}


def test_family_wise_scan_decides_over_a_null_panel(world, null_panel, tmp_path):
    report = scan(_good(world), registry=_copy_registry(world, tmp_path), workers=0, control="family", alpha=0.1,
                  panel=null_panel, options=SCRIPTS)
    control = report.summary()["error_control"]
    assert (control["control"], control["alpha"], control["panel"]) == ("family", 0.1, 17)
    assert control["bound"] == pytest.approx(1 / 18)  # floor(0.1 x 18) / 18: what 17 panel models support
    assert "P(an independent suspect matches any of the 3 fingerprints) <= 0.0556" in control["statement"]
    decisions = _decisions(report)
    for name, expected in world.expected.items():
        if name in ("independent", "c_copy"):
            continue
        assert decisions[world.paths[name]] == expected, name
    # no panel model takes c's input shape: c cannot be decided family-wise
    assert decisions[world.paths["c_copy"]] == {"c": "undecided"}
    by_source = {o.source: o for o in report.outcomes}
    for finding in by_source[world.paths["a_pruned"]].findings:  # the score each fingerprint needed here
        assert finding.threshold is not None and (finding.score > finding.threshold) == (finding.decision == "derived")
    assert report.scan.config["control"]["scores"] and len(report.scan.config["control"]["panel"]) == 17
    assert "error control: family-wise" in report.render()


def test_family_wise_scan_with_too_small_a_panel_is_undecided_and_says_why(world, null_panel, tmp_path):
    report = scan([world.paths["a_pruned"]], registry=_copy_registry(world, tmp_path), workers=0,
                  panel=null_panel)  # default: family-wise at 0.05, which 17 panel models cannot support
    assert {f.decision for o in report.outcomes for f in o.findings} == {"undecided"}
    statement = report.summary()["error_control"]["statement"]
    assert "needs a null panel of at least 19 models; this one has 17" in statement


def test_registry_references_become_the_default_panel_from_the_command_line(world, null_panel, tmp_path, capsys):
    registry = str(tmp_path / "cli.sqlite")
    for name in ("a", "b"):
        code, _, _ = _run(capsys, "registry", "add", str(world.files[name]), "--name", name, "--references",
                          str(null_panel), "--alpha", "0.0833", "--registry", registry)
        assert code == 0
    with Registry(registry) as store:
        assert len(store.panel()) == 17  # the same references twice: kept once
    suspects = [world.paths[name] for name in ("a_pruned", "b_noise", "nested/a_int8")]
    code, out, _ = _run(capsys, "scan", *suspects, "--registry", registry, "--workers", "0", "--alpha", "0.1",
                        "--json")
    assert code == 0
    result = json.loads(out)
    assert result["summary"]["error_control"]["panel"] == 17
    found = {o["source"]: {f["fingerprint"]: f["decision"] for f in o["findings"]} for o in result["outcomes"]}
    assert found == {world.paths[name]: world.expected[name] for name in ("a_pruned", "b_noise", "nested/a_int8")}
    code, out, _ = _run(capsys, "scan", *suspects, "--registry", registry, "--workers", "0", "--control", "fdr",
                        "--alpha", "0.2", "--report", str(tmp_path / "fdr.md"))
    assert code == 0 and "false-discovery rate <= 0.2" in out
    assert "false-discovery rate <= 0.2" in (tmp_path / "fdr.md").read_text()
    code, _, err = _run(capsys, "scan", *suspects, "--registry", registry, "--control", "fdr", "--alpha", "2")
    assert code == 2 and "'alpha' parameter of scan" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "scan", *suspects, "--registry", registry, "--panel", str(tmp_path / "nowhere"))
    assert code == 2 and "'panel' parameter of scan" in err


def test_a_scan_decides_under_the_registry_defaults_unless_told_otherwise(world, null_panel, tmp_path, capsys):
    registry = str(_copy_registry(world, tmp_path))
    suspects = [world.paths[name] for name in ("a_pruned", "b_noise")]
    # the default, family-wise at 0.05, needs 19 panel models: 17 leave every decision undecided
    report = scan(suspects, registry=registry, workers=0, panel=null_panel, options=SCRIPTS)
    assert {f.decision for o in report.outcomes for f in o.findings} == {"undecided"}
    code, out, _ = _run(capsys, "registry", "defaults", "--alpha", "0.1", "--registry", registry, "--json")
    assert code == 0 and (json.loads(out)["control"], json.loads(out)["alpha"]) == ("family", 0.1)
    report = scan(suspects, registry=registry, workers=0, panel=null_panel, options=SCRIPTS)
    control = report.summary()["error_control"]
    assert (control["control"], control["alpha"]) == ("family", 0.1) and control["bound"] == pytest.approx(1 / 18)
    # the bound is an average over panels; for the one panel used it is stated at 90 % confidence
    assert control["bound_for_this_panel_90"] == pytest.approx(rate_for_this_panel(0.1, 17))
    assert f"for this panel <= {rate_for_this_panel(0.1, 17):.3g} with 90 % confidence" in control["statement"]
    found = {o.source: {f.fingerprint: f.decision for f in o.findings} for o in report.outcomes}
    assert found == {world.paths[name]: world.expected[name] for name in ("a_pruned", "b_noise")}
    # told otherwise: the scan's own control and alpha win; another control is decided at its default
    report = scan(suspects, registry=registry, workers=0, panel=null_panel, options=SCRIPTS, alpha=0.2)
    assert report.summary()["error_control"]["alpha"] == 0.2
    report = scan(suspects, registry=registry, workers=0, options=SCRIPTS, control="per-fingerprint")
    assert report.scan.config["control"]["kind"] == "per-fingerprint" and report.scan.config["control"]["alpha"] is None
    code, out, _ = _run(capsys, "registry", "defaults", "--control", "per-fingerprint", "--registry", registry)
    assert code == 0 and "control per-fingerprint" in out
    code, out, _ = _run(capsys, "scan", *suspects, "--registry", registry, "--workers", "0", "--json")
    assert code == 0 and json.loads(out)["scan"]["config"]["control"]["kind"] == "per-fingerprint"
    code, _, err = _run(capsys, "registry", "defaults", "--control", "family", "--alpha", "1.5", "--registry", registry)
    assert code == 2 and "'alpha' parameter" in err and len(err.strip().splitlines()) == 1
    with Registry(registry) as store:
        assert store.defaults() == ("per-fingerprint", None)


def test_fdr_scan_lists_the_copies_when_the_scan_finishes(world, null_panel, tmp_path):
    seen: list[set[str]] = []
    report = scan(_good(world), registry=_copy_registry(world, tmp_path), workers=0, control="fdr", alpha=0.2,
                  panel=null_panel, options=SCRIPTS, on_outcome=lambda o: seen.append({f.decision for f in o.findings}))
    assert all(decisions == {"undecided"} for decisions in seen)  # nothing is listed before the scan ends
    decisions = _decisions(report)
    own = {("a_pruned", "a"), ("a_permuted", "a"), ("nested/a_int8", "a"), ("a_script", "a"), ("b_noise", "b")}
    for name, fingerprint in own:
        assert decisions[world.paths[name]][fingerprint] == "derived", name
    assert decisions[world.paths["c_copy"]] == {"c": "undecided"}
    control = report.summary()["error_control"]
    assert (control["control"], control["bound"]) == ("fdr", 0.2)


def test_resumed_family_wise_scan_keeps_its_panel(world, null_panel, tmp_path):
    registry = _copy_registry(world, tmp_path)

    def interrupt(outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(_good(world), registry=registry, workers=0, alpha=0.1, panel=null_panel, options=SCRIPTS,
             on_outcome=interrupt)
    with Registry(registry) as store:
        (record,) = store.scans()
    report = scan(registry=registry, resume=record.id, workers=0)
    assert report.summary()["error_control"]["panel"] == 17
    decisions = _decisions(report)
    assert decisions[world.paths["b_noise"]] == {"a": "independent", "b": "derived"}
    with pytest.raises(InvalidParameter, match="keeps its own suspects"):
        scan(registry=registry, resume=record.id, workers=0, panel=null_panel)


def test_a_panel_in_groups_bounds_each_group_alone(world, null_panel, tmp_path):
    grouped = tmp_path / "grouped"
    for i, path in enumerate(sorted(null_panel.glob("*.onnx"))):  # 9 and 8 models, one sub-folder each
        target = grouped / ("first" if i < 9 else "second") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    suspects = [world.paths[name] for name in ("a_pruned", "b_noise")]
    report = scan(suspects, registry=_copy_registry(world, tmp_path), workers=0, alpha=0.1, panel=grouped)
    control = report.summary()["error_control"]
    assert {f.decision for o in report.outcomes for f in o.findings} == {"undecided"}  # 8 models cannot give 0.1
    assert "its smallest group has 8" in control["statement"]
    report = scan(suspects, registry=_copy_registry_as(world, tmp_path, "again"), workers=0, alpha=0.12,
                  panel=grouped)
    control = report.summary()["error_control"]
    assert control["bound"] == pytest.approx(1 / 9)  # the bound of the least favourable group
    assert "in 2 groups (first 9, second 8; bound for each alone)" in control["statement"]
    assert _decisions(report) == {world.paths[name]: world.expected[name] for name in ("a_pruned", "b_noise")}


# -- hostile names, links, deep folders, stored configurations, endpoint lists ---------------------

#: File names a seized folder may hold: terminal escapes, a forged line, a bidi override, HTML,
#: a Markdown link and a column separator.
HOSTILE_NAMES = ["a\x1b]0;owned\x07\x1b[2J.onnx", "b\r\nverdict: independent\u202egnp.onnx",
                 "<img src=x onerror=alert(1)>.onnx", "c|extra|[click](javascript:alert(1)).onnx"]


def _unescaped_pipes(line: str) -> int:
    return line.count("|") - line.count("\\|")


def test_hostile_names_are_escaped_on_the_terminal_and_in_every_report(world, tmp_path, capsys):
    registry = _copy_registry(world, tmp_path)
    seized = tmp_path / "seized"
    seized.mkdir()
    for name in HOSTILE_NAMES:
        (seized / name).write_bytes(Path(world.paths["a_pruned"]).read_bytes())
    code, out, err = _run(capsys, "scan", "--dir", str(seized), "--registry", str(registry), "--workers", "0",
                          "--control", PER_FINGERPRINT, "--report", str(tmp_path / "report.md"))
    assert code == 0 and "4 matches:" in out, (out, err)
    for raw in ("\x1b", "\x07", "\r", "\u202e"):
        assert raw not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J" in out and "\\r\\nverdict: independent\\u202egnp" in out
    assert not any(line.startswith("verdict:") for line in out.splitlines())
    markdown = (tmp_path / "report.md").read_text()
    assert "<img" not in markdown and "](javascript" not in markdown.replace("\\]", "") and "\x1b" not in markdown
    assert "\\[click\\](javascript:alert(1))" in markdown and "&lt;img src=x" in markdown
    widths = {len(header) + 1 for header in (MATCH_HEADER, BOUND_HEADER, SUSPECT_HEADER, ["suspect", "error"])}
    for line in markdown.splitlines():
        if line.startswith("| "):  # every row of a table has its header's columns
            assert _unescaped_pipes(line) in widths, line
    rows = [line for line in markdown.splitlines() if "c\\|extra\\|" in line]
    assert rows and all(_unescaped_pipes(line) in (len(MATCH_HEADER) + 1, len(SUSPECT_HEADER) + 1) for line in rows)
    main(["--quiet", "scan", "--dir", str(seized), "--registry", str(registry), "--workers", "0",
          "--control", PER_FINGERPRINT, "--report", str(tmp_path / "report.html")])
    capsys.readouterr()
    page = (tmp_path / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "\u202e" not in page
    # names and ids read back from the database (as an editor who read tafa's source would store them)
    raw = sqlite3.connect(registry)
    evil = "owner\x1b[2J\r\u202e" + "x" * 5000
    raw.execute("UPDATE fingerprints SET name = ? WHERE name = 'a'", (evil,))
    row = raw.execute("SELECT name, sha256, file_sha256, commitment, calibration FROM fingerprints WHERE name = ?",
                      (evil,)).fetchone()
    raw.execute("UPDATE fingerprints SET row_sha256 = ? WHERE name = ?", (row_hash(*row), evil))
    raw.execute("UPDATE scans SET engine = ?", ("local\x1b[2J\nforged line",))
    raw.commit()
    raw.close()
    for command in (("registry", "list"), ("registry", "scans")):
        code, out, _ = _run(capsys, *command, "--registry", str(registry))
        assert code == 0 and "\x1b" not in out and "\r" not in out and "\u202e" not in out, out
        assert not any(line.startswith("forged") for line in out.splitlines())
        assert max(len(line) for line in out.splitlines()) < 1000
    assert "owner\\x1b[2J\\r\\u202e" in _run(capsys, "registry", "list", "--registry", str(registry))[1]


def test_links_and_special_files_in_a_seized_folder_are_refused_never_followed(world, tmp_path, capsys):
    registry = _copy_registry(world, tmp_path)
    owner_file = _onnx(world.owners["a"], tmp_path / "owners" / "a.onnx")  # the owner's own model, elsewhere
    cases = {"owner link": lambda seized: (seized / "innocent.onnx").symlink_to(owner_file),
             "system link": lambda seized: (seized / "passwd.onnx").symlink_to("/etc/passwd"),
             "fifo": lambda seized: os.mkfifo(seized / "pipe.onnx")}
    for name, make in cases.items():
        seized = tmp_path / name.replace(" ", "-")
        (seized / "deep").mkdir(parents=True)
        (seized / "deep" / "real.onnx").write_bytes(Path(world.paths["independent"]).read_bytes())
        make(seized)
        code, out, err = _run(capsys, "scan", "--dir", str(seized), "--registry", str(registry), "--workers", "0",
                              "--control", PER_FINGERPRINT)
        assert code == 2 and len(err.strip().splitlines()) == 1 and not out, (name, out, err)
        assert ("outside" in err or "symbolic link" in err) if "link" in name else "not a regular file" in err
    with Registry(registry) as store:
        assert store.scans() == []  # nothing was scanned, no link's target hashed into the registry


def _nest(root: Path, depth: int) -> Path:
    """``root/d/d/.../d`` ``depth`` levels deep, made one level at a time (os.makedirs recurses)."""
    where = root
    for _ in range(depth):
        where = where / "d"
        where.mkdir()
    return where


def _unnest(root: Path, depth: int) -> None:
    for level in range(depth, 0, -1):
        os.rmdir(root.joinpath(*["d"] * level))


def test_a_folder_nested_too_deep_is_one_line(world, tmp_path, capsys):
    registry = str(_copy_registry(world, tmp_path))
    seized = tmp_path / "seized"
    seized.mkdir()
    try:
        _nest(seized, 1100)
        code, out, err = _run(capsys, "scan", "--dir", str(seized), "--registry", registry)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "levels deep" in err and not out, err
    finally:
        _unnest(seized, 1100)
    bottom = _nest(seized, 40)  # deep, within the bound: found
    (bottom / "x.onnx").write_bytes(Path(world.paths["independent"]).read_bytes())
    assert [s.source for s in suspects_in(seized)] == [str(bottom / "x.onnx")]


@pytest.mark.parametrize("config", [
    {"fingerprints": 5}, {"fingerprints": [{"name": 1, "sha256": "x"}]}, [1, 2],
    {"fingerprints": [], "options": [1]}, {"fingerprints": [], "options": {"batch_size": "many"}},
    {"fingerprints": [], "control": "family"}, {"fingerprints": [], "control": {"kind": "family", "alpha": "x"}},
    {"fingerprints": [], "control": {"kind": "family", "alpha": 0.05, "scores": "zz", "panel": [1]}},
    {"fingerprints": [], "family_alpha": [0.1]}], ids=lambda config: json.dumps(config)[:40])
def test_resume_with_a_crafted_stored_configuration_is_one_line(world, tmp_path, capsys, config):
    registry = str(_copy_registry(world, tmp_path))
    with Registry(registry) as store:
        scan_id = store.begin_scan([world.paths["independent"]], ["file"], engine="local", config={})
    raw = sqlite3.connect(registry)
    raw.execute("UPDATE scans SET config = ?", (json.dumps(config),))
    raw.commit()
    raw.close()
    code, out, err = _run(capsys, "scan", "--resume", scan_id, "--registry", registry, "--workers", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot be resumed" in err and not out, err


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder", "large"])
def test_an_endpoints_list_must_be_a_small_regular_file(world, tmp_path, capsys, kind):
    registry = str(_copy_registry(world, tmp_path))
    listing = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "list.txt", "folder": tmp_path,
               "large": tmp_path / "large.txt"}[kind]
    if kind == "fifo":
        os.mkfifo(listing)  # nobody writes it: reading it would wait for ever
    if kind == "large":
        listing.write_text("# padding\n" * 200_000)
    code, out, err = _run(capsys, "scan", "--endpoints", str(listing), "--registry", registry)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'endpoints' parameter" in err and not out, err


def _first_layer_kept(owner: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The owner's first layer, every later layer drawn afresh (a pirate who kept a frozen
    feature layer and retrained the rest): the first stage sees a stranger, the boundary
    geometry the owner's first-layer kinks."""
    import copy

    model = copy.deepcopy(owner)
    torch.manual_seed(seed)
    for layer in [m for m in model.modules() if isinstance(m, torch.nn.Linear)][1:]:
        layer.reset_parameters()
    return model


def test_a_family_wise_scan_decides_with_every_stage_as_verify_does(world, null_panel, tmp_path):
    """Under the family-wise control every stage of a fingerprint is a column of the max-T table:
    a copy the first stage scores below the null panel (-0.05 against the panel's highest 0.38 on
    this machine) and the boundary geometry far above it (0.73 against 0.50) is judged derived,
    by that stage; with ``stages="first"`` the same scan clears it."""
    copy_path = _onnx(_first_layer_kept(world.owners["a"], seed=0), tmp_path / "suspects" / "kept_first.onnx")
    suspects = [copy_path, world.paths["a_pruned"], world.paths["independent"]]
    staged = scan(suspects, registry=_copy_registry(world, tmp_path), workers=0, control="family", alpha=0.1,
                  panel=null_panel)
    first = scan(suspects, registry=_copy_registry_as(world, tmp_path, "first"), workers=0, control="family",
                 alpha=0.1, panel=null_panel, stages="first")
    by_source = {o.source: {f.fingerprint: f for f in o.findings} for o in staged.outcomes}
    kept = by_source[copy_path]["a"]
    assert kept.decision == "derived" and kept.fired()[0] == "tafa-boundary"
    assert kept.score < kept.threshold  # the first stage alone would not have said so
    assert _decisions(first)[copy_path]["a"] == "independent"
    assert by_source[world.paths["a_pruned"]]["a"].decision == "derived"
    assert {f.decision for f in by_source[world.paths["independent"]].values()} == {"independent"}
    control = staged.summary()["error_control"]
    assert "stage columns" in control["statement"] and control["bound"] == pytest.approx(1 / 18)
    assert kept.queries > 5000 and by_source[copy_path]["b"].queries == kept.queries  # every stage of each
    (outcome,) = [o for o in staged.outcomes if o.source == copy_path]  # the suspect answered all of them
    assert outcome.queries > sum(stage["queries"] for f in outcome.findings for stage in f.stages) > 10000
    assert "tafa-boundary" in staged.render()  # the match names the stage that fired
    assert "not run here" in first.render() and "not run here" not in staged.render()


def test_a_scan_by_the_stored_rules_runs_their_stages_as_verify_does(world, classifier, tmp_path):
    """``tafa registry add --references`` stores the rule of every stage its references support
    (17 references at 2/9: four stages at 1/18 each); a scan deciding with the stored rules
    (``per-fingerprint``) runs them as ``tafa verify`` does: the copy that kept the owner's first
    layer is judged derived by the boundary geometry, with the verdict ``tafa verify`` gives with
    the same rule, and a copy the first stage catches costs no later stage."""
    copy_model = _first_layer_kept(world.owners["a"], seed=0)
    copy_path = _onnx(copy_model, tmp_path / "suspects" / "kept_first.onnx")
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as store:
        store.add(world.files["a"], "a")
        rule = store.calibrate("a", classifier.references[1:], alpha=2 / 9)
    assert rule.names == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-students"] and rule.bound == pytest.approx(
        4 / 18)
    suspects = [copy_path, world.paths["a_pruned"]]
    report = scan(suspects, registry=registry, workers=0, control=PER_FINGERPRINT)
    found = {o.source: o.findings[0] for o in report.outcomes}
    kept, pruned = found[copy_path], found[world.paths["a_pruned"]]
    verdict = Fingerprint.load(world.files["a"]).verify(copy_model, calibration=rule, check_evasion=False)
    assert kept.decision == verdict.decision.value == "derived" and kept.fired()[0] == "tafa-boundary"
    assert [s["threshold"] for s in kept.stages] == [c.threshold for c in rule.stages[1:]]
    assert kept.stages[0]["score"] == pytest.approx(verdict.stages[1]["score"], abs=0.01)  # ONNX against torch
    assert kept.stages[2]["score"] is None  # the geometry fired: the extraction stage is not asked
    assert pruned.decision == "derived" and all(s["score"] is None and s["queries"] == 0 for s in pruned.stages)
    assert "not run here" not in report.render()
    first = scan(suspects, registry=registry, workers=0, control=PER_FINGERPRINT, stages="first")
    assert {o.source: o.findings[0].decision for o in first.outcomes} == {copy_path: "independent",
                                                                          world.paths["a_pruned"]: "derived"}
    assert ("not run here: tafa-datalike (1 fingerprint), tafa-boundary (1 fingerprint), tafa-students (1 "
            "fingerprint)") in first.render()


def test_a_scan_by_a_stored_rule_too_short_for_every_share_decides_the_stages_together(world, classifier, tmp_path):
    """17 references at 1/10 support the first stage's share alone (two shares of 1/20 need 19), so
    the stored rule calibrates the first stage; ``tafa registry add --references`` keeps their
    scores at every stage with it, and a ``per-fingerprint`` scan decides the stages together by
    max-T, as ``tafa verify --references`` does with the same references (and ``verify`` with the
    stored rule): the copy that kept the owner's first layer, which the first stage misses, is
    judged derived by the geometry in each, and a copy the first stage catches costs no later
    stage."""
    copy_model = _first_layer_kept(world.owners["a"], seed=0)
    copy_path = _onnx(copy_model, tmp_path / "suspects" / "kept_first.onnx")
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as store:
        store.add(world.files["a"], "a")
        rule = store.calibrate("a", classifier.references[1:], alpha=0.1)
        stored = store.get("a").calibration
    assert rule.names == ["tafa"] and stored.decides_jointly() and stored.table_names == [
        "tafa", "tafa-datalike", "tafa-boundary", "tafa-students"] and stored.table.shape == (17, 4)
    report = scan([copy_path, world.paths["a_pruned"]], registry=registry, workers=0, control=PER_FINGERPRINT)
    found = {o.source: o.findings[0] for o in report.outcomes}
    kept, pruned = found[copy_path], found[world.paths["a_pruned"]]
    verdict = Fingerprint.load(world.files["a"]).verify(copy_model, classifier.references[1:], alpha=0.1,
                                                        check_evasion=False)
    assert kept.decision == verdict.decision.value == "derived" and kept.fired()[0] == "tafa-boundary"
    geometry = kept.stages[1]  # the later stages: the data-like stage, the geometry, the extraction stage
    assert geometry["score"] > geometry["threshold"] + 0.1 and kept.score < kept.threshold - 0.2
    assert geometry["threshold"] == pytest.approx(verdict.calibration.stages[2].threshold, abs=0.01)
    assert "max-T" in verdict.render()
    stored_verdict = Fingerprint.load(world.files["a"]).verify(copy_model, calibration=stored, check_evasion=False)
    assert stored_verdict.decision.value == "derived" and "max-T" in stored_verdict.render()  # the stored rule: alike
    assert stored_verdict.calibration.stages[2].threshold == pytest.approx(verdict.calibration.stages[2].threshold)
    assert pruned.decision == "derived" and all(s["score"] is None and s["queries"] == 0 for s in pruned.stages)
    assert "decide together by max-T over the 17 references" in report.render()  # the report says how it decided
    first = scan([copy_path], registry=registry, workers=0, control=PER_FINGERPRINT, stages="first")
    assert first.outcomes[0].findings[0].decision == "independent"


def test_a_scan_by_the_stored_rules_decides_file_suspects_with_the_weight_test_as_verify_does(world, classifier,
                                                                                                 tmp_path):
    """A fingerprint that keeps the owner's layers (``--white-box keep``) gives a file suspect the
    weight test as a stage of the stored rule, at the part of alpha the rank bound leaves (17
    references at 0.1: 1/18 for the first stage, the rest for the weights), as ``tafa verify``
    does: the copy that kept the owner's first layer, a stranger to the first stage, is judged
    derived by the weights; an independent model is not. A scan of the first stage alone has
    no weight stage."""
    copy_model = _first_layer_kept(world.owners["a"], seed=0)
    copy_path = _onnx(copy_model, tmp_path / "suspects" / "kept_first.onnx")
    fingerprint = Fingerprint.create(world.owners["a"], "box:0,1", input_shape=(1, 8, 8), points=16, weights=True,
                                     second_stage=False)
    path = fingerprint.save(tmp_path / "a-weights.tafa")
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as store:
        store.add(path, "a")
        rule = store.calibrate("a", classifier.references[1:], alpha=0.1)
    assert rule.names == ["tafa"] and rule.bound == pytest.approx(1 / 18)
    suspects = [copy_path, world.paths["independent"]]
    report = scan(suspects, registry=registry, workers=0, control=PER_FINGERPRINT)
    found = {o.source: o.findings[0] for o in report.outcomes}
    kept, other = found[copy_path], found[world.paths["independent"]]
    verdict = fingerprint.verify(copy_model, calibration=rule, check_evasion=False)
    assert kept.decision == verdict.decision.value == "derived" and kept.fired()[0] == "weights"
    assert kept.score < kept.threshold  # the first stage alone would not have found it
    weights = kept.stages[-1]
    assert weights["name"] == "weights" and weights["score"] > 6 and weights["queries"] == 0
    assert weights["threshold"] == pytest.approx(-math.log10(0.1 - 1 / 18), abs=0.01)
    assert other.decision == "independent" and other.stages[-1]["name"] == "weights"
    assert other.stages[-1]["score"] < 2
    first = scan([copy_path], registry=registry, workers=0, control=PER_FINGERPRINT, stages="first")
    assert first.outcomes[0].findings[0].decision == "independent" and not first.outcomes[0].findings[0].stages


def test_a_scan_over_a_null_panel_gives_file_suspects_the_weight_test_within_its_alpha(world, null_panel, tmp_path):
    """Under ``family`` the weight tests of the fingerprints that keep the owner's layers share what
    the max-T bound leaves of alpha (17 panel models at 0.1: the bound is 1/18, the weight test
    gets 0.1 - 1/18); under ``fdr`` each pair's p-value is the smaller of its max-T and weight
    p-values, each divided by its share. The copy that kept the owner's first layer, a stranger to
    the first stage, is derived by the weights under both; an independent model is not."""
    copy_path = _onnx(_first_layer_kept(world.owners["a"], seed=0), tmp_path / "suspects" / "kept_first.onnx")
    fingerprint = Fingerprint.create(world.owners["a"], "box:0,1", input_shape=(1, 8, 8), points=16, weights=True,
                                     second_stage=False)
    registry = tmp_path / "registry.sqlite"
    with Registry(registry) as store:
        store.add(fingerprint.save(tmp_path / "a-weights.tafa"), "a")
    suspects = [copy_path, world.paths["independent"]]
    family = scan(suspects, registry=registry, workers=0, control="family", alpha=0.1, panel=null_panel)
    control = family.summary()["error_control"]
    assert control["bound"] == pytest.approx(1 / 18) and "also get the exact weight test" in control["statement"]
    assert family.scan.config["control"]["weighed"] == ["a"]
    found = {o.source: o.findings[0] for o in family.outcomes}
    kept, other = found[copy_path], found[world.paths["independent"]]
    assert kept.decision == "derived" and kept.fired()[0] == "weights" and kept.score < kept.threshold
    weights = kept.stages[-1]
    assert weights["name"] == "weights" and weights["threshold"] == pytest.approx(-math.log10(0.1 - 1 / 18), abs=1e-6)
    assert other.decision == "independent" and other.stages[-1]["score"] < 2
    fdr = scan(suspects, registry=registry, workers=0, control="fdr", alpha=0.1, panel=null_panel)
    assert {o.source: o.findings[0].decision for o in fdr.outcomes} == {copy_path: "derived",
                                                                        world.paths["independent"]: "independent"}
    listed = next(o.findings[0] for o in fdr.outcomes if o.source == copy_path)
    assert listed.fired()[0] == "weights" and listed.stages[-1]["threshold"] > 3  # 0.001 of the BH cutoff


def test_the_weight_tests_take_only_what_the_panel_leaves_of_alpha():
    from tafa.scanning.control import ErrorControl

    control = ErrorControl("family", 0.1, ["a", "b"], weighed=["a", "b"])
    assert control.split(0.1, [17]) == pytest.approx((0.1, (0.1 - 1 / 18) / 2))  # the rank bound's slack, halved
    assert control.split(0.05, [19]) == (0.05, 0.0)  # 0.05 x 20 = 1: max-T uses all of alpha, and keeps it
    assert control.split(0.05, [19, 17]) == (0.05, 0.0)  # the least favourable group's bound counts
    assert ErrorControl("family", 0.1, ["a"]).split(0.1, [17]) == (0.1, 0.0)  # nothing weighed: as before
