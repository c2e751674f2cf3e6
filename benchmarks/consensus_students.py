"""The extraction stage's outputs relative to the references' consensus (issue 22 item 3; measured, not
built: docs/results.md, session 27).

A student copies its teacher's output values; independent models of the task share much of them
too. Here each model's answers at the stage's inputs are centred across classes and scaled to unit
RMS, the 40 calibration models' mean is the consensus (without the model itself when it is one of
them), and a model's score is the projection of its departure from the consensus on the owner's:
``<c - m, o - m> / ||o - m||^2`` (the owner 1, the consensus 0). The parent-relative comparison of a
shared parent, with the references as the parent. Inputs: the extraction stage's confident inputs
(factor 1) and the same pulled at half the resolution (factor 2,
``benchmarks/extraction_resolution.py``). Prints, per zoo and factor, the calibration models'
highest score, the students', ``prune80_ft``'s and how many scored independent models are above
that highest.

    python benchmarks/consensus_students.py                         # ResNet, 1 minute
    python benchmarks/consensus_students.py --zoos mnist-lenet digits-cnn
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from extraction_resolution import answers, confident_inputs

from tafa.bench.scenarios import cached_zoo


def standardised(outputs: np.ndarray) -> np.ndarray:
    """Answers centred across classes at each input, scaled to unit RMS over all of them."""
    centred = outputs - outputs.mean(axis=1, keepdims=True)
    return centred / np.sqrt(np.mean(centred ** 2))


def projections(owner: np.ndarray, models: list[np.ndarray], consensus: list[np.ndarray],
                leave_out: bool) -> list[float]:
    """Each model's departure from the consensus projected on the owner's (the model left out of
    the consensus when it is one of the references: ``leave_out``)."""
    mine, pool = standardised(owner), [standardised(a) for a in consensus]
    values = []
    for index, outputs in enumerate(models):
        others = [a for k, a in enumerate(pool) if not (leave_out and k == index)]
        mean = np.mean(others, axis=0)
        away = mine - mean
        values.append(float(np.sum((standardised(outputs) - mean) * away) / np.sum(away * away)))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["mnist-resnet"])
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| zoo | factor | calibration models' highest | students | `prune80_ft` | independents above it |")
    print("|:---|---:|---:|:---|---:|---:|")
    for name in args.zoos:
        spec, zoo = cached_zoo(name, args.cache)
        shape = spec.input_shape
        owner = zoo.owner.eval()
        calibration = [model.eval() for _, model in zoo.with_role("calibration")]
        scored = [(recipe, model.eval()) for recipe, model in zoo.with_role("scored")]
        for factor in args.factors:
            if factor > 1 and len(shape) != 3:
                continue
            x = confident_inputs(owner, spec, factor)
            mine = answers(owner, shape, x)
            references = [answers(model, shape, x) for model in calibration]
            top = max(projections(mine, references, references, leave_out=True))
            values = projections(mine, [answers(model, shape, x) for _, model in scored], references, leave_out=False)
            students = ", ".join(f"`{r.name}` {v:.3f}" for (r, _), v in zip(scored, values) if r.family == "extraction")
            pruned = next((f"{v:.3f}" for (r, _), v in zip(scored, values) if r.name == "prune80_ft"), "-")
            independents = [v for (r, _), v in zip(scored, values) if r.label == 0]
            print(f"| {name} | {factor} | {top:.3f} | {students} | {pruned} | "
                  f"{sum(v > top for v in independents)}/{len(independents)} |", flush=True)


if __name__ == "__main__":
    main()
