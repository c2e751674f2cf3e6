"""``tafa demo``: the whole job on bundled data, in well under a minute.

An owner trains a network on its half of a bundled data set. A pirate steals it, prunes
half its weights and fine-tunes it on other data; another developer trains an independent
model of the same task. The owner fingerprints its model with no data, calibrates the
threshold on independently trained reference models, and verifies both suspects.

Called by ``tafa demo`` (``tafa.cli.demo``); it lives beside the benchmark because it builds
its models with the benchmark's architectures and data sets. ``tafa demo`` tells the story
on the digits classifier; ``tafa demo --all-kinds`` runs the
same algorithm on a classifier, a regressor and a generator and prints one table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..attacks import AttackContext, get_attack, quantize
from ..decide.rule import Rule
from ..decide.threshold import BoundMethod, references_needed
from ..fingerprint import Fingerprint
from ..models import TorchModel
from ..training import TrainingData, fit
from .architectures import build
from .datasets import load_task


@dataclass(frozen=True)
class DemoKind:
    """One task kind of the demo: data, architectures, training, the probe domain."""

    name: str
    task: str
    owner_arch: str
    reference_archs: tuple[str, ...]
    domain: str
    epochs: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    latent: int | None = None

    def data(self, part: str) -> TrainingData:
        split = load_task(self.task).split(part)
        return TrainingData(split.x, None, "vae") if self.latent else split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.latent,) if self.latent else load_task(self.task).input_shape

    def train(self, arch: str, seed: int, part: str) -> torch.nn.Module:
        task = load_task(self.task)
        output_dim = 64 if self.latent else task.output_dim
        model = build(arch, input_shape=self.input_shape, output_dim=output_dim, seed=seed)
        return fit(model, self.data(part), epochs=self.epochs, lr=self.lr, seed=seed, weight_decay=self.weight_decay)


KINDS = {
    "classification": DemoKind("classification", "digits", "mlp",
                               ("mlp", "mlp", "mlp_wide", "mlp_deep", "cnn", "mlp", "mlp_small", "cnn"), "box:0,1", 20),
    "regression": DemoKind("regression", "diabetes", "mlp_small", ("mlp_small", "mlp", "mlp_small", "mlp") * 2,
                           "box:-2,2", 60, weight_decay=1e-3),
    "generation": DemoKind("generation", "digits", "decoder", ("decoder", "decoder_wide") * 4, "gaussian", 15,
                           lr=2e-3, latent=8),
}


class Steps:
    """The demo's story, its steps numbered as they are told (no two share a number).

    >>> told = []
    >>> step = Steps(told.append)
    >>> step("Train."); step("Verify:", gap=True)
    >>> told
    ['1. Train.', '\\n2. Verify:']
    """

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.number = 0

    def __call__(self, text: str, *, gap: bool = False) -> None:
        self.number += 1
        self.say(("\n" if gap else "") + f"{self.number}. {text}")


def _run_kind(kind: DemoKind, seed: int, progress: bool, out: Callable[[str], None] | None) -> dict[str, Any]:
    say = out or (lambda _: None)
    step = Steps(say)
    started = time.perf_counter()
    step(f"The owner trains a {kind.owner_arch} on its half of the {kind.task} data.")
    owner = kind.train(kind.owner_arch, seed, "owner")
    step("A pirate steals it, prunes 50% of its weights and fine-tunes it on its own data;")
    pirated = get_attack("prune50_ft").apply(owner, AttackContext(data=kind.data("other"), seed=seed + 1))
    say("   another developer trains an independent model of the same task.")
    independent = kind.train(kind.owner_arch, seed + 100, "other")
    step(f"The owner trains {len(kind.reference_archs)} independent reference models "
        "(other seeds, both halves of the data, other architectures) to calibrate the threshold.")
    references = [TorchModel(kind.train(arch, seed + 200 + i, "owner" if i % 2 else "other"), kind.input_shape,
                             name=f"reference-{i}-{arch}") for i, arch in enumerate(kind.reference_archs)]
    trained = time.perf_counter() - started
    step(f"Fingerprint the owner: no data, only the domain {kind.domain}.")
    fingerprint = Fingerprint.create(owner, kind.domain, input_shape=kind.input_shape, seed=seed, progress=progress)
    info = fingerprint.describe()
    stages = list(zip(fingerprint.stage_names(), fingerprint.stage_queries()))
    later = ", ".join(f"{name} {count:,}" for name, count in stages[1:])
    queries = (f"{stages[0][1]:,} queries per verification, then, each only when the earlier stages do not decide: "
               f"{later}" if later else f"{info['queries_per_verification']:,} queries per verification")
    say(f"   {info['points']} probes x {info['directions']} directions ({info['analysis']}), {queries}, "
        f"{info['fingerprint_seconds']:.1f} s")
    calibration = fingerprint.calibrate(references, alpha=ALPHA, progress=progress, parametric=True)
    say(f"   {which_bound(calibration)}")
    suspects = {"owner itself": owner, "int8 copy": quantize(owner, 8),
                "pirated copy (prune 50% + fine-tune)": pirated, "independent model": independent}
    verdicts = {}
    for name, model in suspects.items():
        verdicts[name] = fingerprint.verify(TorchModel(model, kind.input_shape, name=name), calibration=calibration)
    for name in ("pirated copy (prune 50% + fine-tune)", "independent model"):
        step(f"Verify the {name}:", gap=True)
        say("\n".join("   " + line for line in verdicts[name].render().splitlines()))
    return {"kind": kind, "verdicts": verdicts, "fingerprint_seconds": info["fingerprint_seconds"],
            "train_seconds": trained, "threshold": calibration.threshold,
            "parametric": any(stage.method is BoundMethod.PARAMETRIC for stage in calibration.stages)}


#: The false-positive rate the demo asks for (with its 8 references, a parametric bound).
ALPHA = 0.01


def which_bound(rule: Rule) -> str:
    """One sentence saying which bound the demo's threshold rests on: the distribution-free rank
    bound when the references support the alpha asked for by rank, else the parametric tail,
    with how many references the rank bound would need."""
    n, alpha = rule.n_references, rule.alpha_requested
    first = rule.stages[0]
    if all(stage.method is BoundMethod.RANK for stage in rule.stages):
        return (f"Threshold {rule.threshold:.4f}: distribution-free bound, false-positive rate <= {rule.bound:.3g} "
                f"by rank among the {n} references.")
    return (f"Threshold {rule.threshold:.4f}: parametric bound, a normal tail fitted to the {n} references' scores "
            f"(false-positive rate <= {rule.bound:.3g} if their scores are normal after Fisher's z); by rank, "
            f"{n} references support only {first.rank_bound:.3g}: {alpha:g} needs {references_needed(alpha)}"
            + (f" for one stage, {references_needed(alpha / len(rule.stages))} for all {len(rule.stages)}"
               if len(rule.stages) > 1 else "")
            + " (tafa verify decides by rank unless --parametric).")


def run_demo(seed: int = 0, progress: bool = True, out: Callable[[str], None] = print,
             all_kinds: bool = False) -> dict[str, str]:
    """Run the demo, printing as it goes; returns the decision for each suspect."""
    started = time.perf_counter()
    if not all_kinds:
        result = _run_kind(KINDS["classification"], seed, progress, out)
        out(f"\nDone in {time.perf_counter() - started:.1f} s.")
        return {name: verdict.decision for name, verdict in result["verdicts"].items()}
    decisions = {}
    rows = []
    results = []
    for kind in KINDS.values():
        result = _run_kind(kind, seed, progress, None)
        results.append(result)
        for name, verdict in result["verdicts"].items():
            decisions[f"{kind.name}: {name}"] = verdict.decision
            rows.append((kind.name, name, verdict.score, result["threshold"], verdict.decision, verdict.queries,
                         verdict.seconds, result["fingerprint_seconds"]))
    out(f"{'kind':<15} {'suspect':<37} {'score':>7} {'threshold':>9} {'decision':<11} {'queries':>7} "
        f"{'verify s':>8} {'fingerprint s':>13}")
    for kind_name, name, score, threshold, decision, queries, seconds, fp_seconds in rows:
        out(f"{kind_name:<15} {name:<37} {score:>7.4f} {threshold:>9.4f} {decision:<11} {queries:>7} "
            f"{seconds:>8.3f} {fp_seconds:>13.2f}")
    for line in _misses(rows):
        out(line)
    bounds = sorted({"parametric" if result["parametric"] else "rank" for result in results})
    out(f"\nDone in {time.perf_counter() - started:.1f} s (scheme tafa, threshold at alpha {ALPHA:g} from "
        f"{len(KINDS['classification'].reference_archs)} references: {' and '.join(bounds)} bound; "
        f"by rank, {ALPHA:g} needs {references_needed(ALPHA)}).")
    return decisions


#: The demo's suspects that are not derived from the owner (every other one is).
INDEPENDENT = frozenset({"independent model"})


def _misses(rows: list[tuple]) -> list[str]:
    """One plain sentence per wrong call: a derived copy not judged derived, an independent
    model judged derived (the table alone leaves the reader to spot them)."""
    lines = []
    for kind_name, name, score, threshold, decision, *_ in rows:
        if name not in INDEPENDENT and decision != "derived":
            lines.append(f"MISSED: the {kind_name} {name} is derived from the owner but scored {score:.4f}, "
                         f"below the threshold {threshold:.4f}: judged {decision}.")
        elif name in INDEPENDENT and decision == "derived":
            lines.append(f"FALSE MATCH: the {kind_name} {name} is not derived from the owner but scored "
                         f"{score:.4f}, above the threshold {threshold:.4f}.")
    if lines:
        lines.insert(0, "")
    return lines
