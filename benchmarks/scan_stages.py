"""A registry scan with every stage against the first stage alone (issue 22 item 4: one decision
everywhere; docs/scaling.md, "Every stage in a scan").

Per full-benchmark zoo: the owner's fingerprint (the default scheme, seed 0, as ``tafa
fingerprint`` makes it) registered; its calibration models as ONNX files, the null panel of a
family-wise scan; the plain scored rows (every copy, and the independent models) as ONNX files,
the suspects. One scan with ``stages="first"`` and one with ``stages="all"`` at each alpha, and
``tafa verify`` of the same suspects with the calibration models as references (its rule, as the
command makes it), and a scan by the rule ``tafa registry add --references`` stores from the same
models (``--control per-fingerprint``: the stages together where they are too few for every
share, as ``tafa verify --references``); per row, the copies judged derived (of those keeping at least 90% of the
owner's utility, then of all), the independents judged derived, the stage that fired, queries per
suspect and seconds.

    python benchmarks/scan_stages.py [--zoos digits-mlp diabetes-mlp] [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch

from tafa import Fingerprint
from tafa.bench.scenarios import cached_zoo
from tafa.bench.utility import KEEP, zoo_utilities
from tafa.models import TorchModel
from tafa.registry import Registry
from tafa.scanning import scan

EXPORT = dict(dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})


def export(model: torch.nn.Module, shape: tuple[int, ...], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model.eval(), (torch.zeros(1, *shape),), str(path), **EXPORT)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "diabetes-mlp"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.05, 0.01])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print("| zoo | alpha | stages | kept copies derived | all copies derived | independents derived | fired at "
          "| queries per suspect | seconds |")
    print("|:---|---:|:---|---:|---:|---:|:---|---:|---:|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            fingerprint = Fingerprint.create(TorchModel(zoo.owner, shape, name="owner"), spec.domain, seed=0)
            file = fingerprint.save(root / "owner.tafa")
            panel = root / "panel"
            for i, (_, model) in enumerate(zoo.with_role("calibration")):
                export(model, shape, panel / f"reference{i:03d}.onnx")
            utilities = zoo_utilities(zoo, Path(args.cache), roles=("scored",))
            truth: dict[str, tuple[int, bool]] = {}  # path -> (label, keeps >= 90% of the owner's utility)
            models: dict[str, torch.nn.Module] = {}
            for i, (recipe, model) in enumerate(zoo.with_role("scored")):
                if recipe.label == 1 and recipe.family.split("/")[0] in ("interface", "evasion"):
                    continue  # the plain rows only: a scan's first stage has no interface-specific path
                path = export(model, shape, root / "suspects" / f"{i:03d}-{recipe.name}.onnx")
                kept = recipe.label == 1 and utilities.get(recipe.name, 0.0) >= KEEP * utilities["owner"]
                truth[path] = (recipe.label, kept)
                models[path] = model
            references = [TorchModel(model, shape, name=f"reference{i}")
                          for i, (_, model) in enumerate(zoo.with_role("calibration"))]
            for alpha in args.alphas:
                for stages in ("first", "all"):
                    registry = root / f"registry-{alpha}-{stages}.sqlite"
                    with Registry(registry) as store:
                        store.add(file, "owner")
                    started = time.perf_counter()
                    report = scan(list(truth), registry=registry, workers=args.workers, control="family",
                                  alpha=alpha, panel=panel, stages=stages)
                    seconds = time.perf_counter() - started
                    print(row(name, alpha, stages, report, truth, seconds), flush=True)
                started = time.perf_counter()
                rule = fingerprint.calibrate(references, alpha)
                verdicts = {path: fingerprint.verify(TorchModel(model, shape), calibration=rule)
                            for path, model in models.items()}
                print(verify_row(name, alpha, rule, verdicts, truth, time.perf_counter() - started,
                                 "verify, stored rule"), flush=True)
                started = time.perf_counter()
                with references_scored_once(fingerprint):
                    verdicts = {path: fingerprint.verify(TorchModel(model, shape), references, alpha=alpha)
                                for path, model in models.items()}
                print(verify_row(name, alpha, verdicts[next(iter(verdicts))].calibration, verdicts, truth,
                                 time.perf_counter() - started, "verify --references"), flush=True)
                registry = root / f"registry-{alpha}-stored.sqlite"  # the stored rule, every stage's scores kept
                with Registry(registry) as store:
                    store.add(file, "owner")
                    stored = store.calibrate("owner", references, alpha=alpha)
                started = time.perf_counter()
                report = scan(list(truth), registry=registry, workers=args.workers, control="per-fingerprint",
                              alpha=alpha)
                how = "together, max-T" if stored.decides_jointly() else ", ".join(stored.names)
                print(row(name, alpha, f"scan by the stored rule ({how})", report, truth,
                          time.perf_counter() - started), flush=True)


def row(name: str, alpha: float, stages: str, report, truth: dict[str, tuple[int, bool]], seconds: float) -> str:
    found = {o.source: o.findings[0] for o in report.outcomes if o.findings}
    copies = [p for p, (label, _) in truth.items() if label == 1]
    kept = [p for p, (label, keeps) in truth.items() if label == 1 and keeps]
    independents = [p for p, (label, _) in truth.items() if label == 0]

    def derived(paths: list[str]) -> str:
        hits = sum(found[p].decision == "derived" for p in paths if p in found)
        return f"{hits / max(1, len(paths)):.2f} ({hits}/{len(paths)})"

    undecided = sum(f.decision == "undecided" for f in found.values())
    fired = Counter(found[p].fired()[0] or "first" for p in copies if p in found and found[p].decision == "derived")
    queries = sum(o.queries for o in report.outcomes) / max(1, len(report.outcomes))
    where = ", ".join(f"{k} {v}" for k, v in fired.items()) or "-"
    if undecided:
        where += f" ({undecided} undecided)"
    return (f"| {name} | {alpha:g} | {stages} | {derived(kept)} | {derived(copies)} | {derived(independents)} | "
            f"{where} | {queries:,.0f} | {seconds:.0f} |")


@contextmanager
def references_scored_once(fingerprint: Fingerprint):
    """``tafa verify --references`` scores the references for every suspect; here the same
    references' scores (the rule, and every stage's when the stages decide together) are computed
    once per alpha and reused, which changes no decision (no suspect is among them)."""
    original = Fingerprint._calibrated
    cache: dict = {}

    def once(self, references, alpha, progress, **options):
        key = (id(self), alpha, options.get("joint"))
        if key not in cache:
            cache[key] = original(self, references, alpha, progress, **options)
        return cache[key]

    Fingerprint._calibrated = once
    try:
        yield
    finally:
        Fingerprint._calibrated = original


def verify_row(name: str, alpha: float, rule, verdicts: dict, truth: dict[str, tuple[int, bool]],
               seconds: float, how: str) -> str:
    copies = [p for p, (label, _) in truth.items() if label == 1]
    kept = [p for p, (label, keeps) in truth.items() if label == 1 and keeps]
    independents = [p for p, (label, _) in truth.items() if label == 0]

    def derived(paths: list[str]) -> str:
        hits = sum(verdicts[p].decision.value == "derived" for p in paths)
        return f"{hits / max(1, len(paths)):.2f} ({hits}/{len(paths)})"

    fired: Counter[str] = Counter()
    for path in copies:
        verdict = verdicts[path]
        if verdict.decision.value == "derived":
            own = verdict.calibration.stages  # a rule made for each suspect when the stages decide together
            above = [s["name"] for s, c in zip(verdict.stages, own) if s["score"] is not None and c.fires(s["score"])]
            fired[above[0] if above and above[0] != verdict.scheme else "first"] += 1
    queries = sum(v.queries for v in verdicts.values()) / max(1, len(verdicts))
    together = " (together, max-T)" if rule is not None and rule.joint_p is not None else ""
    return (f"| {name} | {alpha:g} | {how}: {', '.join(rule.names)}{together} | "
            f"{derived(kept)} | {derived(copies)} | {derived(independents)} | "
            f"{', '.join(f'{k} {v}' for k, v in fired.items()) or '-'} | {queries:,.0f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
