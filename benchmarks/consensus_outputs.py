"""Outputs relative to the references' consensus (issue 21, measured, not built): do a disturbed
regressor copy's answers keep the owner's departure from what independent models agree on?

A fixed-function disturbance (a ripple, a triangle wave, output noise) swamps every fine scale, and
the outputs themselves follow the task's trend in every model (the outputs stage's independents
score 0.91-0.99). What is left of a copy might be the owner's *own* departure from that trend: the
owner's outputs minus the mean of the references' outputs at the same inputs, against the
suspect's outputs minus the same mean (centred, cosine). Each calibration model is scored against
the mean of the others (leave one out), so that it is treated as a suspect would be.

Per zoo (the benchmark's cache): ``N`` domain draws; the calibration models' scores; then the plain
copies and independents, and the copies and independents behind each disturbance family, counted
above every calibration model (the rank threshold at 1 / (n + 1)), beside the plain outputs'
``|cosine|`` (the outputs stage's statistic) counted the same way; the copies missed, with how many
calibration models score at or above them.

    python benchmarks/consensus_outputs.py [--zoos diabetes-mlp friedman-mlp] [--draws 64]   # 30 s
"""

from __future__ import annotations

import argparse

import numpy as np

from tafa.bench.run import evasion_suspects
from tafa.bench.scenarios import cached_zoo
from tafa.domain import parse_domain
from tafa.models import TorchModel

FAMILIES = ("ripple", "ripple_small", "triangle", "noise")


def ask(model, draws: np.ndarray) -> np.ndarray:
    """``model``'s answers at ``draws``, one row per draw."""
    return np.asarray(model(draws), dtype=np.float64).reshape(len(draws), -1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["diabetes-mlp", "friedman-mlp"])
    parser.add_argument("--draws", type=int, default=64)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    print("| zoo | rows | calibration models' highest: consensus / outputs | copies above all: consensus / outputs "
          "| independents above all | copies missed by the consensus (models at or above) |")
    print("|:---|:---|---:|---:|---:|:---|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        draws = parse_domain(spec.domain, shape).sample(args.draws, seed=123).astype(np.float32)

        owner = ask(TorchModel(zoo.owner, shape), draws)
        references = np.stack([ask(TorchModel(model, shape), draws) for _, model in zoo.with_role("calibration")])
        consensus = references.mean(axis=0)
        others = (references.sum(axis=0)[None] - references) / (len(references) - 1)  # each one left out
        own = [cosine(owner - mean, reference - mean) for reference, mean in zip(references, others)]
        plain = [abs(cosine(owner, reference)) for reference in references]
        rows: dict[str, list[tuple[str, int, float, float]]] = {"plain": []}
        for recipe, model in zoo.plain():
            answers = ask(TorchModel(model, shape), draws)
            rows["plain"].append((recipe.name, recipe.label, cosine(owner - consensus, answers - consensus),
                                  abs(cosine(owner, answers))))
        for row, label, family, served in evasion_suspects(zoo):
            if family.split("/")[1] in FAMILIES:
                answers = ask(served, draws)
                rows.setdefault(family.split("/")[1], []).append(
                    (row, label, cosine(owner - consensus, answers - consensus), abs(cosine(owner, answers))))
        top, top_plain = max(own), max(plain)
        for kind, scored in rows.items():
            copies = [r for r in scored if r[1] == 1]
            independents = [r for r in scored if r[1] == 0]
            missed = ", ".join(f"`{r[0]}` ({sum(v >= r[2] for v in own)})" for r in copies if r[2] <= top)
            print(f"| {name} | {kind} | {top:.3f} / {top_plain:.3f} | {sum(r[2] > top for r in copies)} / "
                  f"{sum(r[3] > top_plain for r in copies)} of {len(copies)} | "
                  f"{sum(r[2] > top for r in independents)} of {len(independents)} | {missed or 'none'} |", flush=True)


if __name__ == "__main__":
    main()
