"""Benchmark of ``tafa scan``: suspects per second, peak memory and queries per suspect.

Builds (once, cached under ``--work``) a sweep like a hub's or a forensics team's:

- 20 owners: digits MLPs (64-128-128-10) trained a few epochs each on the owners' half of
  the data, each fingerprinted with the default scheme (64 points x 4 directions: 576
  queries) and calibrated on 19 reference models drawn like the owners (same architecture,
  same data, other seeds: the hub's unrelated models are mostly other owners' models of the
  same task), false-positive bound 1/20 per fingerprint, distribution-free;
- 1,000 suspect ONNX files: 800 derived (each owner x 40 variants: one of the attack
  library's cheap attacks -- fp16, int8/int4 rounding, 1-10% weight noise, 20-80% magnitude
  pruning, structured pruning, unit rescaling -- then a random permutation of the hidden
  units, so no two files are equal) and 200 independent (40 models trained by others x 5
  variants), shuffled;
- a null panel of 99 model files in two groups (sub-folders): 59 models drawn like the owners
  (the 19 references and 40 more, seeds of their own), and 40 models trained by others (other
  data, the three architectures, the independents' variants, seeds of their own). Each group is
  well above the 19 models that alpha = 0.05 needs at the least: at that minimum the rate *for
  the panel one has* varies as much as alpha itself (docs/scaling.md).

Then runs ``tafa scan --dir SUSPECTS`` as a user would (a fresh process each time, on a fresh
copy of the registry) and measures wall time, suspects per second (the scan's own time, and
the whole command's) and the peak memory of the command's whole process tree (proportional
set size, so pages shared by forked workers count once; Ray's own processes included):

- every engine asked for (``local`` and ``ray``) with 20 registered fingerprints, family-wise
  at ``--alpha`` (default 0.05) over the null panel; the same scores are also decided per
  fingerprint, by Bonferroni, as an FDR candidate list, by max-T over the references alone
  and by max-T standardised without the suspect, and each is compared with the truth:
  independent suspects with any match, all suspects with a false match, copies matched to
  their own owner;
- the ``local`` engine with 1, 5 and 20 registered fingerprints (queries per suspect).

Usage (from the repository root; about 5 minutes on 2 cores the first time)::

    python benchmarks/bench_scan.py --work /tmp/tafa-bench-scan --engines local,ray --workers 2 \\
        --out benchmarks/results/bench_scan.json

``--suspects 100 --owners 5`` makes a quick smoke run; ``--engines local --detection-only``
gives the error-control figures alone (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

CHEAP_ATTACKS = ("fp16", "int8", "int4", "noise1", "noise5", "noise10", "prune20", "prune50", "prune80",
                 "struct25", "rescale")
INDEPENDENT_VARIANTS = (None, "noise1", "int8", "prune20", "fp16")
REFERENCES = 19
PANEL_REFERENCES = 59  # the null panel's owner-like group: the 19 references and 40 more trained like them
PANEL_OTHERS = 40  # null-panel models beyond the references: trained by others, like the independents
LAYOUT = 4  # bump when what build() makes changes (the cache is rebuilt)


# ---------------------------------------------------------------------------------------- building

def _export(model, path: Path) -> None:
    import torch

    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})


def build(work: Path, owners: int, suspects: int, seed: int = 0) -> dict:
    """Train, fingerprint, attack and export everything (skipped when ``work`` holds it)."""
    manifest_path = work / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if (manifest["owners"], manifest["suspects"], manifest.get("layout")) == (owners, suspects, LAYOUT):
            return manifest
    import warnings

    import numpy as np
    import torch

    from tafa import Fingerprint
    from tafa.attacks import AttackContext, get_attack, permute_units
    from tafa.bench.architectures import build as build_net
    from tafa.bench.datasets import load_task
    from tafa.registry import Registry
    from tafa.training import fit

    warnings.filterwarnings("ignore")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if work.exists():
        shutil.rmtree(work)
    (work / "suspects").mkdir(parents=True)
    (work / "panel" / "references").mkdir(parents=True)
    (work / "panel" / "others").mkdir()
    task = load_task("digits")
    started = time.perf_counter()

    def train(arch: str, model_seed: int, part: str):
        net = build_net(arch, input_shape=(1, 8, 8), output_dim=10, seed=model_seed)
        return fit(net, task.split(part), epochs=4, lr=2e-3, seed=model_seed)

    owner_models = [train("mlp", seed + i, "owner") for i in range(owners)]
    references = [train("mlp", 1000 + seed + i, "owner") for i in range(REFERENCES)]
    n_independent = suspects // 5
    bases = [train(("mlp", "mlp_small", "mlp_wide")[i % 3], 2000 + seed + i, "other")
             for i in range(max(1, n_independent // len(INDEPENDENT_VARIANTS)))]
    print(f"trained {owners} owners, {REFERENCES} references, {len(bases)} independent models "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    fingerprints = []
    for i, owner in enumerate(owner_models):
        fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=(1, 8, 8), seed=i)
        calibration = fingerprint.calibrate_first(references, alpha=1 / (REFERENCES + 1))
        path = fingerprint.save(work / f"owner{i:02d}.tafa", overwrite=True)
        fingerprints.append({"name": f"owner{i:02d}", "path": str(path), "calibration": calibration.to_dict()})
    print(f"fingerprinted and calibrated {owners} owners ({time.perf_counter() - started:.0f} s)", flush=True)

    context = AttackContext(data=task.split("other"), seed=0, epochs=1)
    items = []
    n_derived = suspects - n_independent
    for k in range(n_derived):
        owner = k % owners
        attack = CHEAP_ATTACKS[(k // owners) % len(CHEAP_ATTACKS)]
        model = permute_units(get_attack(attack).apply(owner_models[owner], context), seed=k)
        items.append((model, {"truth": f"owner{owner:02d}", "recipe": f"{attack}+permute"}))
    for k in range(n_independent):
        base = bases[k % len(bases)]
        variant = INDEPENDENT_VARIANTS[(k // len(bases)) % len(INDEPENDENT_VARIANTS)]
        model = base if variant is None else get_attack(variant).apply(base, context)
        items.append((permute_units(model, seed=10_000 + k), {"truth": None, "recipe": f"independent+{variant}"}))
    order = np.random.default_rng(seed).permutation(len(items))
    truth = {}
    for position, index in enumerate(order):
        model, info = items[index]
        path = work / "suspects" / f"suspect{position:04d}.onnx"
        _export(model, path)
        truth[str(path)] = info
    print(f"exported {len(items)} suspects ({time.perf_counter() - started:.0f} s)", flush=True)

    # The shared null panel of the family-wise scan: the 19 references and PANEL_OTHERS models
    # trained by others (other data, the three architectures, seeds and variants of their own:
    # none of them is, or is derived from, a suspect).
    for i, reference in enumerate(references):
        _export(reference, work / "panel" / "references" / f"reference{i:02d}.onnx")
    for i in range(PANEL_OTHERS):
        model = train(("mlp", "mlp_small", "mlp_wide")[i % 3], 3000 + seed + i, "other")
        variant = INDEPENDENT_VARIANTS[(i // 3) % len(INDEPENDENT_VARIANTS)]
        model = model if variant is None else get_attack(variant).apply(model, context)
        _export(permute_units(model, seed=20_000 + i), work / "panel" / "others" / f"other{i:02d}.onnx")
    print(f"exported a null panel of {REFERENCES + PANEL_OTHERS} models ({time.perf_counter() - started:.0f} s)",
          flush=True)

    extend_reference_panel(work, seed)
    for count in sorted({1, min(5, owners), owners}):
        with Registry(work / f"registry-{count}.sqlite") as registry:
            for item in fingerprints[:count]:
                from tafa.decide.threshold import Calibration

                registry.add(item["path"], item["name"], calibration=Calibration(**item["calibration"]))
    manifest = {"owners": owners, "suspects": len(items), "layout": LAYOUT, "fingerprints": fingerprints,
                "truth": truth, "build_seconds": time.perf_counter() - started}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def extend_reference_panel(work: Path, seed: int = 0) -> int:
    """Grow the panel's owner-like group (``panel/references``) to :data:`PANEL_REFERENCES`
    models: references ``REFERENCES..PANEL_REFERENCES - 1``, trained like the owners and the
    calibration references (same architecture and data, seeds ``1000 + seed + i``), exported
    if missing; a cache built before the group grew is completed without rebuilding the rest.
    Returns how many were added."""
    missing = [i for i in range(REFERENCES, PANEL_REFERENCES)
               if not (work / "panel" / "references" / f"reference{i:02d}.onnx").is_file()]
    if not missing:
        return 0
    import warnings

    from tafa.bench.architectures import build as build_net
    from tafa.bench.datasets import load_task
    from tafa.training import fit

    warnings.filterwarnings("ignore")
    part = load_task("digits").split("owner")
    for i in missing:
        net = build_net("mlp", input_shape=(1, 8, 8), output_dim=10, seed=1000 + seed + i)
        model = fit(net, part, epochs=4, lr=2e-3, seed=1000 + seed + i)
        _export(model, work / "panel" / "references" / f"reference{i:02d}.onnx")
    print(f"added {len(missing)} owner-like models to the null panel", flush=True)
    return len(missing)


# ---------------------------------------------------------------------------------------- measuring

def _tree(root: int) -> list[int]:
    """``root`` and every process descending from it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes (0, 0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            values = dict(line.split(":", 1) for line in rollup if ":" in line)
        return int(values["Pss"].split()[0]) * 1024, int(values["Rss"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


class PeakMemory:
    """Samples the memory of a process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.pss = self.rss = self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            pids = _tree(self.pid)
            totals = [_memory(pid) for pid in pids]
            self.pss = max(self.pss, sum(p for p, _ in totals))
            self.rss = max(self.rss, sum(r for _, r in totals))
            self.processes = max(self.processes, len(pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_scan(work: Path, fingerprints: int, engine: str, workers: int, suspects_dir: Path, label: str,
             alpha: float = 0.05) -> dict:
    """One ``tafa scan`` command on a fresh copy of the registry with ``fingerprints`` entries
    (family-wise at ``alpha``, the null panel ``work/panel``, the first stage alone: the engine and
    error-control figures; ``benchmarks/scan_stages.py`` measures every stage)."""
    registry = work / f"run-{label}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(registry) + suffix).unlink(missing_ok=True)
    shutil.copy(work / f"registry-{fingerprints}.sqlite", registry)
    command = [sys.executable, "-c", "import sys; from tafa.cli import main; sys.exit(main(sys.argv[1:]))",
               "--quiet", "scan", "--dir", str(suspects_dir), "--registry", str(registry), "--engine", engine,
               "--workers", str(workers), "--panel", str(work / "panel"), "--alpha", str(alpha), "--json",
               "--stages", "first"]  # the figures of docs/scaling.md: the first stage alone
    load_before = os.getloadavg()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with PeakMemory(process.pid) as memory:
        out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{label}: tafa scan failed ({process.returncode}):\n{err[-3000:]}")
    result = json.loads(out)
    summary = result["summary"]
    return {"label": label, "engine": engine, "workers": workers, "fingerprints": fingerprints,
            "suspects": summary["suspects"], "done": summary["done"], "failed": summary["failed"],
            "scan_seconds": summary["seconds"], "suspects_per_second": summary["suspects"] / summary["seconds"],
            "command_seconds": wall, "suspects_per_second_command": summary["suspects"] / wall,
            "queries_per_suspect": summary["queries_per_suspect"],
            "sum_of_fingerprint_queries": _sum_queries(result), "peak_pss_mib": memory.pss / 2 ** 20,
            "peak_rss_mib": memory.rss / 2 ** 20, "processes": memory.processes,
            "steady_suspects_per_second": _steady_rate(result["outcomes"]),
            "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
            "error_control": {k: v for k, v in summary["error_control"].items() if k != "panel_left_out"},
            "outcomes": result["outcomes"], "control": result["scan"]["config"]["control"]}


def _steady_rate(outcomes: list[dict]) -> float | None:
    """Suspects per second once the engine runs: suspects recorded after the first write of the
    scan, over the time from that write to the last (engine start-up and imports excluded)."""
    from datetime import datetime

    stamps = sorted(datetime.fromisoformat(o["recorded"]).timestamp() for o in outcomes if o["recorded"])
    later = [t for t in stamps if t > stamps[0]] if stamps else []
    return len(later) / (stamps[-1] - stamps[0]) if later else None


def _sum_queries(result: dict) -> float:
    done = [o for o in result["outcomes"] if o["status"] == "done"]
    return sum(sum(f["queries"] for f in o["findings"]) for o in done) / max(1, len(done))


def detection(outcomes: list[dict], truth: dict, thresholds: dict[str, float] | None = None) -> dict:
    """How the decisions compare with the ground truth: derived copies found by their own
    owner's fingerprint; (suspect, fingerprint) pairs with no lineage declared derived, per pair
    (split by whether the suspect is another owner's copy or an independent model) and per
    suspect (matched by any fingerprint it is not derived from).
    ``thresholds`` replaces the recorded decisions by ``score > threshold``."""
    found = missed = 0
    pairs = {"other_owner": [0, 0], "independent": [0, 0]}  # [pairs, declared derived]
    false_suspects = {"other_owner": 0, "independent": 0}
    for outcome in outcomes:
        info = truth[outcome["source"]]
        group = "independent" if info["truth"] is None else "other_owner"
        wrong = False
        for finding in outcome["findings"]:
            derived = finding["decision"] == "derived" if thresholds is None else \
                finding["score"] is not None and finding["score"] > thresholds[finding["fingerprint"]]
            if finding["fingerprint"] == info["truth"]:
                found += derived
                missed += not derived
            else:
                pairs[group][0] += 1
                pairs[group][1] += derived
                wrong |= derived
        false_suspects[group] += wrong
    n_independent = sum(info["truth"] is None for info in (truth[o["source"]] for o in outcomes))
    return {"independent_suspects_with_any_match": false_suspects["independent"] / max(1, n_independent),
            "suspects_with_a_false_match": (false_suspects["independent"] + false_suspects["other_owner"])
            / max(1, len(outcomes)),
            "copies_matched_to_their_owner": found / max(1, found + missed),
            "derived_pairs": found + missed, "detected": found,
            "unrelated_pairs": {group: count for group, (count, _) in pairs.items()},
            "false_matches": {group: hits for group, (_, hits) in pairs.items()},
            "suspects_with_a_false_match_by_group": false_suspects}


def fdr_detection(outcomes: list[dict], truth: dict, control: dict, q: float) -> dict:
    """:func:`detection` of the same scores decided as a Benjamini-Hochberg candidate list at
    ``q`` over the scan's null panel, and the share of listed pairs that are false."""
    from dataclasses import replace

    from tafa.registry import Finding, SuspectOutcome
    from tafa.scanning import ErrorControl

    decider = replace(ErrorControl.from_dict(control), kind="fdr", alpha=q)
    records = [SuspectOutcome(o["source"], o["identity"], o["kind"], o["status"], o["error"], o["queries"],
                              o["seconds"], [Finding(**f) for f in o["findings"]]) for o in outcomes]
    decided = {o.source: o for o in decider.decide_scan(records)}
    as_dicts = [decided[o.source].to_dict() if o.source in decided else o.to_dict() for o in records]
    result = detection(as_dicts, truth)
    listed = sum(f["decision"] == "derived" for o in as_dicts for f in o["findings"])
    false = sum(f["decision"] == "derived" and f["fingerprint"] != truth[o["source"]]["truth"]
                for o in as_dicts for f in o["findings"])
    return {**result, "listed_pairs": listed, "false_discovery_proportion": false / max(1, listed)}


def components(work: Path, owners: int, truth: dict, outcomes: list[dict], n: int = 100) -> dict:
    """Where one suspect's time goes, in one process on one thread (open the file, query the
    union of all fingerprints' inputs, score each fingerprint), and how fast the registry takes
    outcomes (one transaction per suspect, and 50 per transaction as ``scan`` batches them)."""
    import torch

    from tafa.models import open_model
    from tafa.registry import Finding, Registry, SuspectOutcome
    from tafa.scanning import Panel

    torch.set_num_threads(1)
    with Registry(work / f"registry-{owners}.sqlite") as registry:
        panel = Panel.from_registry(registry)
    opening = querying = scoring = 0.0
    paths = sorted(truth)[:n]
    for path in paths:
        started = time.perf_counter()
        model = open_model(path)
        opened = time.perf_counter()
        entries = panel.fitting(model)
        plan = panel.plan(entries)
        answers = model(plan.inputs)
        queried = time.perf_counter()
        for entry in entries:
            entry.judge(answers[plan.index[entry.name]])
        opening += opened - started
        querying += queried - opened
        scoring += time.perf_counter() - queried
    records = [SuspectOutcome(o["source"], o["identity"], o["kind"], o["status"], o["error"], o["queries"],
                              o["seconds"], [Finding(**f) for f in o["findings"]]) for o in outcomes]
    writes = {}
    for batch in (1, 50):
        path = work / f"writes-{batch}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        with Registry(path) as registry:
            scan_id = registry.begin_scan([r.source for r in records], [r.kind for r in records], engine="local",
                                          config={"fingerprints": []})
            started = time.perf_counter()
            for i in range(0, len(records), batch):
                registry.record(scan_id, records[i:i + batch])
            writes[batch] = len(records) / (time.perf_counter() - started)
    return {"suspects": len(paths), "fingerprints": len(panel.entries),
            "open_ms": 1000 * opening / len(paths), "query_ms": 1000 * querying / len(paths),
            "score_ms": 1000 * scoring / len(paths),
            "registry_suspects_per_second_1_per_transaction": writes[1],
            "registry_suspects_per_second_50_per_transaction": writes[50],
            "findings_per_suspect": sum(len(r.findings) for r in records) / max(1, len(records))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/tafa-bench-scan", help="folder for the models (cached)")
    parser.add_argument("--owners", type=int, default=20)
    parser.add_argument("--suspects", type=int, default=1000)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--query-subset", type=int, default=200,
                        help="suspects in the 1/5/N-fingerprint runs (default 200)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise rate of the scan (default 0.05)")
    parser.add_argument("--detection-only", action="store_true",
                        help="only the error-control figures: skip the component timings and 1/5/N-fingerprint runs")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from tafa.decide import calibrate

    work = Path(args.work)
    manifest = build(work, args.owners, args.suspects)
    extend_reference_panel(work)
    truth = manifest["truth"]
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform()},
                     "owners": args.owners, "suspects": manifest["suspects"],
                     "build_seconds": manifest["build_seconds"],
                     "engines": [], "fingerprint_counts": []}
    outcomes: list[dict] = []
    for engine in [e for e in args.engines.split(",") if e]:
        run = run_scan(work, args.owners, engine, args.workers, work / "suspects", f"{engine}-{args.owners}",
                       args.alpha)
        outcomes = run.pop("outcomes")
        control = run.pop("control")
        run["detection"] = detection(outcomes, truth)  # as the scan decided: family-wise max-T
        per_fingerprint = {item["name"]: item["calibration"]["threshold"] for item in manifest["fingerprints"]}
        run["detection_per_fingerprint"] = detection(outcomes, truth, per_fingerprint)
        # Bonferroni as the former --family-alpha decided: at alpha/N, which 19 references support
        # only through the calibration's parametric tail (a scan now says undecided there)
        bonferroni = {}
        for item in manifest["fingerprints"]:
            level = calibrate(item["calibration"]["reference_scores"], args.alpha / len(manifest["fingerprints"]),
                              parametric=True)
            tail = level.parametric_threshold
            bonferroni[item["name"]] = tail if tail is not None and tail > level.threshold else level.threshold
        run["detection_bonferroni"] = detection(outcomes, truth, bonferroni)
        run["detection_fdr"] = fdr_detection(outcomes, truth, control, args.alpha)
        run["detection_maxt_one_group"] = maxt_detection(outcomes, truth, control, args.alpha)
        run["detection_maxt_references_only"] = maxt_detection(outcomes, truth, control, args.alpha,
                                                               only="reference")
        run["detection_maxt_without_suspect"] = maxt_detection(outcomes, truth, control, args.alpha,
                                                               with_suspect=False)
        results["engines"].append(run)
        print(json.dumps({k: v for k, v in run.items()}, indent=1), flush=True)
    if args.detection_only:
        _print_detection(results)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=1))
        return 0
    results["components"] = components(work, args.owners, truth, outcomes)
    print(json.dumps(results["components"], indent=1), flush=True)

    subset = work / "subset"
    if subset.exists():
        shutil.rmtree(subset)
    subset.mkdir()
    for path in sorted(truth)[:args.query_subset]:
        os.symlink(path, subset / Path(path).name)
    for count in sorted({1, min(5, args.owners), args.owners}):
        run = run_scan(work, count, "local", args.workers, subset, f"local-{count}fp")
        run.pop("outcomes")
        results["fingerprint_counts"].append(run)
        print(json.dumps(run, indent=1), flush=True)

    print("\n| engine | workers | fingerprints | suspects | scan s | suspects/s | steady suspects/s | command s | "
          "peak PSS MiB | queries/suspect | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in results["engines"] + results["fingerprint_counts"]:
        steady = run["steady_suspects_per_second"]
        print(f"| {run['engine']} | {run['workers']} | {run['fingerprints']} | {run['suspects']} | "
              f"{run['scan_seconds']:.1f} | {run['suspects_per_second']:.1f} | "
              f"{'-' if steady is None else f'{steady:.1f}'} | {run['command_seconds']:.1f} | "
              f"{run['peak_pss_mib']:.0f} | {run['queries_per_suspect']:.0f} | {run['load_average_before']:.1f} |")
    _print_detection(results)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def maxt_detection(outcomes: list[dict], truth: dict, control: dict, alpha: float, only: str = "",
                   with_suspect: bool = True) -> dict:
    """:func:`detection` of the same scores decided by max-T over the panel models whose file
    name starts with ``only``,
    standardised with the suspect (as the scan does) or on the panel alone (``with_suspect=False``,
    the variant the scan does not use)."""
    import numpy as np

    from tafa.decide.multiple import max_t

    columns = control["columns"]
    keep = [Path(member["source"]).name.startswith(only) for member in control["panel"]]
    table = np.array([[np.nan if v is None else v for v in row] for row in control["scores"]])[np.array(keep)]
    limit = np.floor(alpha * (len(table) + 1) + 1e-12) / (len(table) + 1)
    decided = []
    for outcome in outcomes:
        scores = {f["fingerprint"]: f["score"] for f in outcome["findings"] if f["score"] is not None}
        vector = np.array([scores.get(name, np.nan) for name in columns])
        if with_suspect:
            p = max_t(vector, table)
        else:
            mean, spread = table.mean(axis=0), table.std(axis=0)
            maxima = ((table - mean) / spread).max(axis=1)
            p = (1 + (maxima[None, :] >= ((vector - mean) / spread)[:, None]).sum(axis=1)) / (len(table) + 1)
        derived = {name for name, value in zip(columns, p) if value <= limit and limit > 0}
        decided.append({**outcome, "findings": [{**f, "decision": "derived" if f["fingerprint"] in derived
                                                  else "independent"} for f in outcome["findings"]]})
    return detection(decided, truth)


def _print_detection(results: dict) -> None:
    """One Markdown table per engine: each error control's false matches and detection."""
    for run in results["engines"]:
        print(f"\n{run['engine']}: {run['error_control']['statement']}")
        print("| control | independent suspects with any match | suspects with a false match | "
              "copies matched to their owner |")
        print("|---|---|---|---|")
        for label, key in (("family-wise max-T (default; each panel group alone)", "detection"),
                           ("max-T, the panel as one group", "detection_maxt_one_group"),
                           ("per fingerprint (stored calibrations)", "detection_per_fingerprint"),
                           ("Bonferroni (parametric tail at alpha/N)", "detection_bonferroni"),
                           ("FDR (Benjamini-Hochberg, candidate list)", "detection_fdr"),
                           ("max-T, panel = the owner-like group only", "detection_maxt_references_only"),
                           ("max-T standardised without the suspect", "detection_maxt_without_suspect")):
            found = run[key]
            print(f"| {label} | {100 * found['independent_suspects_with_any_match']:.1f}% | "
                  f"{100 * found['suspects_with_a_false_match']:.1f}% | "
                  f"{100 * found['copies_matched_to_their_owner']:.1f}% |")


if __name__ == "__main__":
    sys.exit(main())
