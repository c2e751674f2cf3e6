"""``tafa bench``: every scheme on the same zoos, in one run, with one set of metrics.

For each zoo and each scheme that applies to its task kind: fingerprint the owner (timed),
score every scored and calibration model (timed, queries counted), calibrate the threshold
on the calibration models exactly as ``tafa verify`` does (``alpha = 0.01``), and compute
AUC, ARUC (over the similarity's score range), TPR at FPR <= 1% and at FPR = 0 (with
bootstrap intervals), the calibrated rule's true/false rates on the scored models, and the
detection rate per attack family. Extraction (distillation) is reported in its own family
and kept out of the post-processing metrics. Each scenario also gets a pooled entry over
its zoos (scores against each zoo's own owner; the rule uses each zoo's own threshold).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..references import References
from ..decide.learned import LearnedSimilarity
from ..decide.threshold import calibrate
from ..fingerprint import Fingerprint
from ..models.base import TorchModel
from ..probes.base import CandidateCache
from ..scheme import SCHEMES, get_scheme
from . import metrics
from .report import write_report
from .scenarios import SIZES
from .zoo import Zoo, ZooSpec, build_zoos

#: The false-positive level the calibrated rule is asked for (the CLI's default).
ALPHA = 0.01
EXTRACTION = "extraction"


@dataclass
class Scored:
    """One model's score under one scheme."""

    model: str
    label: int
    family: str
    role: str
    score: float


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> str:
    """A one-line description of this machine."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def applicable(scheme_name: str, spec: ZooSpec) -> bool:
    return spec.scenario in get_scheme(scheme_name).tasks


def zoo_references(zoo: Zoo, kind: str) -> tuple[References, list[str]] | None:
    """The reference models a learned scheme trains on: ``"data"`` (made by the owner from its
    own data: the zoo's ``training`` role) or ``"data-free"`` (the ``free`` role)."""
    role = {"data": "training", "data-free": "free"}.get(kind)
    if role is None:
        return None
    rows = zoo.with_role(role)
    refs = References(positives=[m for r, m in rows if r.label == 1], negatives=[m for r, m in rows if r.label == 0],
                      positive_names=[r.name for r, _ in rows if r.label == 1],
                      negative_names=[r.name for r, _ in rows if r.label == 0])
    return refs, [r.family for r, _ in rows if r.label == 1]


def evaluate_scheme(zoo: Zoo, scheme_name: str) -> dict[str, Any]:
    """Fingerprint ``zoo``'s owner with one scheme and score every other model.

    A learned scheme trains on the zoo's reference role for it and is also scored
    leave-one-family-out: the models of each attack family are scored by a verifier refitted
    without any reference of that family (``lofo`` rows), and the negatives by that same
    refitted verifier, so each family's figures come from one verifier.
    """
    spec = zoo.spec
    # one candidate cache per owner and scheme: the leave-one-family-out re-selections reuse
    # the candidate probes (their region LPs) of the first fingerprint
    scheme = replace(get_scheme(scheme_name), candidate_cache=CandidateCache())
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    data = None if spec.latent else np.asarray(spec.data("owner").x)
    references = zoo_references(zoo, scheme.references)
    started = time.perf_counter()
    fingerprint = Fingerprint.create(owner, spec.domain, scheme=scheme, seed=0, data=data,
                                     references=references[0] if references else None)
    fingerprint_seconds = time.perf_counter() - started
    rows: list[Scored] = []
    models = []
    signatures = []
    seconds = []
    for role in ("scored", "calibration"):
        for recipe, model in zoo.with_role(role):
            suspect = TorchModel(model, spec.input_shape, name=recipe.name)
            started = time.perf_counter()
            signature = fingerprint.measure(suspect)
            value = fingerprint.compare(signature).value
            seconds.append(time.perf_counter() - started)
            rows.append(Scored(recipe.name, recipe.label, recipe.family, role, value))
            models.append(model)
            signatures.append(signature)
    lofo: dict[str, list[Scored]] = {}
    if references is not None:
        refs, families = references
        positive_signatures = [fingerprint.measure(TorchModel(m, spec.input_shape)) for m in refs.positives]
        negative_signatures = [fingerprint.measure(TorchModel(m, spec.input_shape)) for m in refs.negatives]
        learned = isinstance(fingerprint.similarity(), LearnedSimilarity)
        for family in sorted({r.family for r in rows if r.label == 1 and r.role == "scored"}):
            if learned:  # refit the verifier without the family's references
                kept = [sig for sig, fam in zip(positive_signatures, families) if fam != family]
                again = fingerprint.refit(kept, negative_signatures)
            else:  # references chose the probes: choose them again without the family's references
                held_out = References(positives=[m for m, fam in zip(refs.positives, families) if fam != family],
                                      negatives=refs.negatives)
                again = Fingerprint.create(owner, spec.domain, scheme=scheme, seed=0, data=data,
                                           references=held_out)
            lofo[family] = [Scored(r.model, r.label, r.family, r.role, again.compare(
                                sig if learned else again.measure(TorchModel(model, spec.input_shape))).value)
                            for r, model, sig in zip(rows, models, signatures) if r.label == 0 or r.family == family]
    similarity = fingerprint.similarity()
    return {"rows": rows, "lofo": lofo, "queries": fingerprint.queries(), "fingerprint_seconds": fingerprint_seconds,
            "verify_seconds": float(np.mean(seconds)), "score_range": similarity.score_range}


def summarise_lofo(lofo: dict[str, list[Scored]], score_range: tuple[float, float]) -> dict[str, Any]:
    """Leave-one-family-out figures: per family, its models against the negatives, both scored
    by the verifier refitted without that family; averaged over families weighted by size."""
    weights, aucs, arucs, tprs, rules = [], [], [], [], []
    per_family = {}
    for family, rows in lofo.items():
        pos = [r.score for r in rows if r.label == 1 and r.role == "scored"]
        neg = [r.score for r in rows if r.label == 0 and r.role == "scored"]
        threshold = calibrate([r.score for r in rows if r.role == "calibration"], ALPHA, parametric=True).threshold
        detected = float(np.mean(np.asarray(pos) > threshold))
        per_family[family] = {"n": len(pos), "detection_rate": detected}
        if family == EXTRACTION:
            continue
        weights.append(len(pos))
        aucs.append(metrics.roc_auc(pos, neg))
        arucs.append(metrics.aruc(pos, neg, score_range=score_range))
        tprs.append(metrics.tpr_at_fpr(pos, neg, 0.01))
        rules.append(detected)
    average = lambda values: float(np.average(values, weights=weights))  # noqa: E731
    return {"auc": average(aucs), "aruc": average(arucs), "tpr_at_fpr_1pct": average(tprs), "rule_tpr": average(rules),
            "per_family": per_family}


def summarise(rows: list[Scored], thresholds: dict[str, float], score_range: tuple[float, float],
              alpha_bound: float, n_boot: int) -> dict[str, Any]:
    """Metrics over scored rows; ``thresholds`` maps a zoo prefix ('' for one zoo) to its threshold."""
    def threshold_of(row: Scored) -> float:
        prefix = row.model.split("/")[0] if "/" in row.model else ""
        return thresholds[prefix]

    scored = [r for r in rows if r.role == "scored"]
    pos = np.array([r.score for r in scored if r.label == 1 and r.family != EXTRACTION])
    neg = np.array([r.score for r in scored if r.label == 0])
    extraction = [r for r in scored if r.family == EXTRACTION]
    aruc = partial(metrics.aruc, score_range=score_range)
    tpr1 = partial(metrics.tpr_at_fpr, max_fpr=0.01)
    detected = [r.score > threshold_of(r) for r in scored if r.label == 1 and r.family != EXTRACTION]
    false_alarms = [r.score > threshold_of(r) for r in scored if r.label == 0]
    families: dict[str, dict[str, Any]] = {}
    for row in scored:
        entry = families.setdefault(row.family, {"n": 0, "hits": 0, "label": row.label})
        entry["n"] += 1
        entry["hits"] += int(row.score > threshold_of(row))
    result = {
        "n_pos": int(pos.size), "n_neg": int(neg.size),
        "auc": metrics.roc_auc(pos, neg), "auc_ci": list(metrics.bootstrap_ci(metrics.roc_auc, pos, neg, n_boot=n_boot)),
        "aruc": aruc(pos, neg), "aruc_ci": list(metrics.bootstrap_ci(aruc, pos, neg, n_boot=n_boot)),
        "tpr_at_fpr_1pct": tpr1(pos, neg), "tpr_at_fpr_0": metrics.tpr_at_fpr(pos, neg, 0.0),
        "tpr_at_fpr_1pct_ci": list(metrics.bootstrap_ci(tpr1, pos, neg, n_boot=n_boot)),
        "rule": {"threshold": float(np.mean(list(thresholds.values()))), "alpha": alpha_bound,
                 "tpr": float(np.mean(detected)), "fpr": float(np.mean(false_alarms))},
        "per_family": {family: {"n": v["n"], "detection_rate": v["hits"] / v["n"]} for family, v in families.items()},
        "scores": [{"model": r.model, "label": r.label, "family": r.family, "score": r.score} for r in scored],
    }
    if extraction:
        ext = np.array([r.score for r in extraction])
        result["extraction"] = {"n": int(ext.size), "tpr_at_fpr_1pct": tpr1(ext, neg),
                                "detection_rate": float(np.mean([r.score > threshold_of(r) for r in extraction]))}
    return result


def run_benchmark(size: str = "full", *, schemes: Iterable[str] | None = None, out: Path | None = None,
                  cache: Path = Path(".tafa-cache/zoo"), jobs: int = 2, progress: bool = True,
                  command: str = "tafa bench", n_boot: int = 1000,
                  zoo_filter: Callable[[ZooSpec], bool] | None = None) -> dict[str, Any]:
    """Run the benchmark; write ``results.json``, ``results.md`` and plots to ``out`` if given."""
    started = time.perf_counter()
    specs = [spec for spec in SIZES[size] if zoo_filter is None or zoo_filter(spec)]
    zoos = build_zoos(specs, cache, jobs=jobs, progress=progress)
    zoo_seconds = time.perf_counter() - started
    names = list(schemes) if schemes is not None else [name for name in SCHEMES if SCHEMES[name].benchmark]
    results: dict[str, Any] = {
        "command": command, "machine": machine(), "git_commit": _git_commit(), "size": size,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "zoo_seconds": zoo_seconds, "scenarios": {}}
    pooled: dict[str, dict[str, dict[str, Any]]] = {}
    bar = tqdm(total=sum(applicable(n, z.spec) for z in zoos for n in names), desc="bench: schemes",
               disable=not progress)
    for zoo in zoos:
        spec = zoo.spec
        entry: dict[str, Any] = {"scenario": spec.scenario, "owner": f"{spec.owner_arch} on {spec.task}",
                                 "domain": spec.domain, "schemes": {}}
        for name in names:
            if not applicable(name, spec):
                continue
            evaluation = evaluate_scheme(zoo, name)
            rows = evaluation["rows"]
            calibration = calibrate([r.score for r in rows if r.role == "calibration"], ALPHA, parametric=True)
            summary = summarise(rows, {"": calibration.threshold}, evaluation["score_range"], calibration.bound, n_boot)
            summary["rule"]["method"] = calibration.method
            if evaluation["lofo"]:
                summary["lofo"] = summarise_lofo(evaluation["lofo"], evaluation["score_range"])
            summary.update({key: evaluation[key] for key in ("queries", "fingerprint_seconds", "verify_seconds")})
            entry["schemes"][name] = summary
            entry["n_pos"], entry["n_neg"] = summary["n_pos"], summary["n_neg"]
            group = pooled.setdefault(spec.scenario, {}).setdefault(name, {"rows": [], "thresholds": {}, "cost": [],
                                                                            "range": evaluation["score_range"],
                                                                            "bound": calibration.bound})
            group["rows"] += [Scored(f"{spec.name}/{r.model}", r.label, r.family, r.role, r.score) for r in rows]
            group["thresholds"][spec.name] = calibration.threshold
            group["cost"].append(evaluation)
            bar.update(1)
        results["scenarios"][f"{spec.scenario}: {spec.name}"] = entry
    bar.close()
    for scenario, by_scheme in pooled.items():
        entry = {"scenario": scenario, "owner": "pooled over the scenario's zoos", "schemes": {}}
        for name, group in by_scheme.items():
            summary = summarise(group["rows"], group["thresholds"], group["range"], group["bound"], n_boot)
            summary["queries"] = int(max(c["queries"] for c in group["cost"]))
            summary["fingerprint_seconds"] = float(np.mean([c["fingerprint_seconds"] for c in group["cost"]]))
            summary["verify_seconds"] = float(np.mean([c["verify_seconds"] for c in group["cost"]]))
            if all(c["lofo"] for c in group["cost"]):
                merged: dict[str, list[Scored]] = {}
                for cost, zoo_name in zip(group["cost"], group["thresholds"]):
                    for family, rows in cost["lofo"].items():
                        merged.setdefault(f"{zoo_name}/{family}", []).extend(rows)
                pooled_lofo = summarise_lofo(merged, group["range"])
                families: dict[str, list[float]] = {}
                for key, value in pooled_lofo["per_family"].items():
                    families.setdefault(key.split("/", 1)[1], []).extend([value["detection_rate"]] * value["n"])
                pooled_lofo["per_family"] = {f: {"n": len(v), "detection_rate": float(np.mean(v))}
                                             for f, v in families.items()}
                summary["lofo"] = pooled_lofo
            entry["schemes"][name] = summary
            entry["n_pos"], entry["n_neg"] = summary["n_pos"], summary["n_neg"]
        results["scenarios"][f"{scenario} (pooled)"] = entry
    results["seconds"] = time.perf_counter() - started
    if out is not None:
        write_report(results, Path(out))
    return results
