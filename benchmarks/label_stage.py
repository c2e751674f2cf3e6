"""The label stage on the benchmark's classification zoos (issue 20): copies and independent models
behind the interfaces that keep little more than labels, decided as ``tafa verify`` decides them.

For each classification zoo with interface families (digits MLP, digits CNN, MNIST LeNet; from the
benchmark's cache), the owner is fingerprinted with the default scheme and a label stage made from
its own half of the task's data (``Fingerprint.create(..., owner_data=X)``, what ``tafa fingerprint
--owner-data`` does). The suspects are the benchmark's interface rows (``tafa.bench.run.
interface_suspects``: the owner, its int8, lightly fine-tuned and pruned-and-fine-tuned copies, and
six independent models, each behind every interface); each is verified with
``Fingerprint.verify`` against the zoo's 40 calibration models at alpha 0.05 and 0.01 (parametric
where 40 are too few by rank, as the benchmark does). Printed per interface family: the copies
judged derived, and the independents judged derived (a false claim) with the binomial interval;
then the same without the label stage (the data-free fingerprint), for comparison. Last, every
scored model of the zoo behind a one-hot label (the label stage's score is the same behind any
interface that keeps the argmax), per family: the copies that keep at least 90% of the owner's
utility judged derived, and every independent model judged derived. And a pirate who has read this:
a copy behind a one-hot label that answers the inputs it is itself unsure of (the ``quantile`` least
confident of its own users' inputs, :class:`tafa.attacks.evasion.ConfidenceRouter`) from an
independent model, at several quantiles: the decisions, and the share of the label stage's points
it routed.

    python benchmarks/label_stage.py --router-only   # the last part alone

``--margins`` instead measures how the label stage's margin was chosen: IPGuard's points from the
owner's data at logit margins 0.01, 0.5 and 2, and per family of scored models the share above
every calibration model's label agreement (and above the second highest), with the lowest and
highest agreement:

    python benchmarks/label_stage.py --margins --zoos digits-mlp digits-cnn

    python benchmarks/label_stage.py [--zoos digits-mlp digits-cnn mnist-lenet] [--cache .tafa-cache/zoo]

The references answer each batch once (a memo keyed by the batch's bytes): verify re-scores them
for every suspect, and the answers would be the same.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from tafa import Fingerprint
from tafa.bench.metrics import binomial_ci
from tafa.attacks.interface import get_interface
from tafa.bench.run import interface_suspects
from tafa.bench.utility import zoo_utilities
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.decide.threshold import references_needed
from tafa.models import TorchModel

LABEL_LEVEL = ("softmax_round2", "softmax_round3", "top3", "one_hot", "integer_logits")


class Memo(TorchModel):
    """A torch model that answers a batch it was asked before from memory."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memo: dict[bytes, np.ndarray] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        key = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).digest()
        if key not in self.memo:
            self.memo[key] = super().__call__(x)
        return self.memo[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "digits-cnn", "mnist-lenet"])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    parser.add_argument("--router-only", action="store_true", help="only the confidence router")
    parser.add_argument("--margins", action="store_true", help="how the margin was chosen")
    args = parser.parse_args()
    if args.margins:
        margin_choice(args.zoos, args.cache)
        return
    alphas = (0.05, 0.01)
    for name in args.zoos:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        data = np.asarray(spec.data("owner").x).reshape(-1, *spec.input_shape)
        started = time.perf_counter()
        labelled = Fingerprint.create(owner, spec.domain, seed=0, owner_data=data)
        made = time.perf_counter() - started
        plain = Fingerprint.create(owner, spec.domain, seed=0)
        references = [Memo(model, spec.input_shape, name=recipe.name) for recipe, model in zoo.with_role("calibration")]
        if args.router_only:
            confidence_router(zoo, labelled, references)
            continue
        rows = [row for row in interface_suspects(zoo) if row[2].split("/")[1] in LABEL_LEVEL]
        print(f"\n## {name}: label stage of {len(labelled.labels.probes)} points from {len(data)} owner inputs "
              f"({made:.1f} s with the data-free stages), {len(references)} references")
        print("\n| interface | fingerprint | copies derived a=0.05 / 0.01 (n) | independents derived a=0.05 "
              "[95% CI] / 0.01 (n) | copies: lowest label margin |")
        print("|:---|:---|---:|---:|---:|")
        for interface in LABEL_LEVEL:
            family = [row for row in rows if row[2].split("/")[1] == interface]
            for label, fingerprint in (("with labels", labelled), ("data-free", plain)):
                found: dict[tuple[int, float], list[bool]] = {}
                margins = []
                for _, truth, _, suspect in family:
                    for alpha in alphas:
                        verdict = fingerprint.verify(suspect, references, alpha=alpha, check_evasion=False,
                                                     parametric=len(references) < references_needed(alpha / 2))
                        found.setdefault((truth, alpha), []).append(verdict.decision.value == "derived")
                        if truth == 1 and alpha == 0.05 and verdict.stages and fingerprint is labelled:
                            own = verdict.to_dict()["stages"][-1]
                            if own.get("threshold") is not None:
                                margins.append(own["score"] - own["threshold"])
                copies = " / ".join(f"{np.mean(found[(1, a)]):.2f}" for a in alphas)
                wrong = found[(0, 0.05)]
                low, high = binomial_ci(sum(wrong), len(wrong))
                independents = (f"{sum(wrong)}/{len(wrong)} [{low:.2f}, {high:.2f}] / "
                                f"{sum(found[(0, 0.01)])}/{len(found[(0, 0.01)])}")
                print(f"| {interface} | {label} | {copies} ({len(found[(1, 0.05)])}) | {independents} | "
                      f"{min(margins):.2f} |" if margins else
                      f"| {interface} | {label} | {copies} ({len(found[(1, 0.05)])}) | {independents} | - |")
        utilities = zoo_utilities(zoo, Path(args.cache), roles=("scored",))
        one_hot = get_interface("one_hot")
        by_family: dict[tuple[int, str], list[tuple[bool, bool]]] = {}
        for recipe, model in zoo.with_role("scored"):
            kept = utilities[recipe.name] >= 0.9 * utilities["owner"]
            if recipe.label == 1 and not kept:
                continue
            suspect = one_hot.apply(TorchModel(model, spec.input_shape, name=recipe.name))
            decided = [labelled.verify(suspect, references, alpha=alpha, check_evasion=False,
                                       parametric=len(references) < references_needed(alpha / 2)).decision.value
                       == "derived" for alpha in alphas]
            by_family.setdefault((recipe.label, recipe.family), []).append((decided[0], decided[1]))
        print(f"\nEvery scored model of {name} behind a one-hot label, with the label stage (copies keeping >= 90% "
              "of the owner's utility):\n")
        print("| family | copies / independents | judged derived a=0.05 / 0.01 (n) |")
        print("|:---|:---|---:|")
        for (truth, family), found_ in sorted(by_family.items(), key=lambda item: (-item[0][0], item[0][1])):
            rates = " / ".join(f"{np.mean([f[i] for f in found_]):.2f}" for i in range(2))
            print(f"| {family} | {'copies' if truth else 'independents'} | {rates} ({len(found_)}) |")
        confidence_router(zoo, labelled, references)


def margin_choice(names: list[str], cache: str) -> None:
    from dataclasses import replace

    from tafa.scheme import get_scheme

    for name in names:
        (spec,) = [spec for spec in FULL if spec.name == name]
        (zoo,) = build_zoos([spec], Path(cache), progress=False, roles=["scored", "calibration"])
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
        data = np.asarray(spec.data("owner").x).reshape(-1, *spec.input_shape)
        for margin in (0.01, 0.5, 2.0):
            stage = Fingerprint.create(owner, spec.domain, seed=0, data=data,
                                       scheme=replace(get_scheme("ipguard"), probe_params={"margin": margin}))
            calibration = sorted(stage.score(TorchModel(m, spec.input_shape)).value
                                 for _, m in zoo.with_role("calibration"))
            print(f"\n{name}, margin {margin:g}: calibration models' agreement highest {calibration[-1]:.3f}, second "
                  f"{calibration[-2]:.3f}, median {np.median(calibration):.3f}")
            families: dict[tuple[int, str], list[float]] = {}
            for recipe, model in zoo.with_role("scored"):
                families.setdefault((recipe.label, recipe.family), []).append(
                    stage.score(TorchModel(model, spec.input_shape)).value)
            for (label, family), values in sorted(families.items()):
                v = np.array(values)
                print(f"  {'copies' if label else 'independents'} {family:24s} n={len(v):2d} above highest "
                      f"{np.mean(v > calibration[-1]):.2f}, above second {np.mean(v > calibration[-2]):.2f}, "
                      f"agreement {v.min():.3f}-{v.max():.3f}")


def confidence_router(zoo, labelled: Fingerprint, references: list[Memo]) -> None:
    """The int8 and lightly fine-tuned copies behind a confidence router (decoy: the first scored
    independent), behind a one-hot label and answering raw logits."""
    from tafa.attacks import evasion

    spec = zoo.spec
    scored = zoo.with_role("scored")
    decoy = TorchModel(next(m for r, m in scored if r.label == 0), spec.input_shape, name="decoy")
    copies = [(r.name, m) for r, m in scored if r.name in ("int8", "ft_all_small")]
    users = np.asarray(spec.data("other").x).reshape(-1, *spec.input_shape)
    print(f"\nA confidence router in front of copies of {spec.name} (decoy: an independent model):\n")
    print("| copy | answers | users routed | label points routed | decision a=0.05 (label stage / coarse) |")
    print("|:---|:---|---:|---:|:---|")
    for quantile in (0.01, 0.05, 0.1, 0.25):
        for name, model in copies:
            for answers in ("one_hot", "raw"):
                served = evasion.ConfidenceRouter(TorchModel(model, spec.input_shape, name=name), decoy, users,
                                                  quantile)
                points = labelled.labels.probes.points
                routed_points = float(np.mean(served.route(points)))
                suspect = get_interface("one_hot").apply(served) if answers == "one_hot" else served
                verdict = labelled.verify(suspect, references, alpha=0.05,
                                          parametric=len(references) < references_needed(0.025))
                stages = ", ".join(f"{s['score']:.2f} vs {s['threshold']:.2f}" for s in verdict.to_dict()["stages"]
                                   if s.get("score") is not None and s.get("threshold") is not None)
                print(f"| {name} | {answers} (q={quantile:g}) | {quantile:.0%} | {routed_points:.0%} | "
                      f"{verdict.decision.value} ({stages or f'{verdict.score:.2f} vs {verdict.threshold:.2f}'}) |")


if __name__ == "__main__":
    main()
