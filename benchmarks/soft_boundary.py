"""Soft evidence at data-free boundary points (issue 20): do probabilities rounded to 2-3 decimals,
or a top-k list, keep enough of the owner's function near the owner's own decision boundaries to
decide, where data-free probes (mostly confident: probabilities that round to 0 and 1) do not?

For each classification zoo with interface families, 100 points near the owner's boundaries are
found white-box and data-free (IPGuard's optimisation from domain draws at margin 0.5: the owner's
classes ``j`` and ``i`` there lead the rest, ``z_j - z_i = 0.5``). Through each point run lines: the
owner's normal of ``z_j - z_i`` and ``--tilted`` lines at 60 degrees from it, each asked at offsets
where the owner's ``z_j - z_i`` moves by +-0.5, 1, 2, 4 (linearised). A model's soft value at an
asked input is ``log max(y_j, eps) - log max(y_i, eps)`` of its answers ``y`` (probabilities: eps is
half the answers' grid step, or 1e-6; logits: ``y_j - y_i``). Statistics per model:

- ``line corr``: the mean over lines of the Pearson correlation of its soft values with the owner's
  ``z_j - z_i`` along the line (a line where its values are constant counts 0);
- ``pooled corr``: the same correlation over every asked input at once;
- ``pair sign``: the share of asked inputs where the sign of its soft value is the owner's;
- ``crossing``: minus the median distance (in the owner's logit units) between where its soft value
  and the owner's cross zero along each line; ``crossing1``: the share of lines where that is <= 1;
- ``random diff``: at each point, ``--random`` random directions ``u`` and a step ``t`` where the
  owner's ``z_j - z_i`` moves by 1 (root mean square over the directions), the correlation over
  every (point, direction) of its soft value's difference ``x + t u`` minus ``x - t u`` with the
  owner's (how the owner's pair of classes trades off in directions the boundary search never
  chose, the first stage's evidence moved to where probabilities are not saturated).

Each is thresholded at the highest of the zoo's calibration models answering through the same
interface (about 1/41 by rank), and the share of each family's models above it is printed.

    python benchmarks/soft_boundary.py [--zoos digits-mlp digits-cnn mnist-lenet] [--interfaces ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa.attacks.interface import get_interface
from tafa.bench.run import INTERFACE_COPIES, INTERFACE_NEGATIVES
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.domain import parse_domain
from tafa.models import TorchModel
from tafa.probes.ipguard import IPGuardProbes

DELTAS = np.array([-4.0, -2.0, -1.0, -0.5, 0.5, 1.0, 2.0, 4.0])


def soft_values(answers: np.ndarray, i: np.ndarray, j: np.ndarray, logits: bool) -> np.ndarray:
    flat = answers.reshape(len(answers), -1)
    a, b = flat[np.arange(len(flat)), j], flat[np.arange(len(flat)), i]
    if logits:
        return a - b
    values = np.unique(flat)
    steps = np.diff(values)
    grid = steps[steps > 1e-9].min() if len(steps) and len(values) < 200 else 2e-6
    eps = grid / 2
    return np.log(np.maximum(a, eps)) - np.log(np.maximum(b, eps))


def first_crossing(grid: np.ndarray, values: np.ndarray) -> float:
    """Where ``values`` along ``grid`` first go from <= 0 to > 0 (interpolated), or 8."""
    for k in range(len(grid) - 1):
        if values[k] <= 0 < values[k + 1]:
            return float(grid[k] + (grid[k + 1] - grid[k]) * (-values[k]) / (values[k + 1] - values[k]))
    return 8.0


def corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    norm = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / norm) if norm > 0 else 0.0


def measure(zoo_name: str, args: argparse.Namespace) -> None:
    """Print every statistic of one zoo (see the module doc)."""
    (spec,) = [spec for spec in FULL if spec.name == zoo_name]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    owner = TorchModel(zoo.owner, spec.input_shape, name="owner")
    domain = parse_domain(spec.domain, spec.input_shape)
    lo, hi = domain.bounds()
    found = IPGuardProbes(margin=args.margin, steps=300).select(owner, domain, n=args.points, k=0, seed=0)
    n = args.points
    base = found.points.reshape(n, -1)
    i, j = (found.extra["classes"][:, k].astype(int) for k in (0, 1))
    x = torch.tensor(base, dtype=torch.float32, requires_grad=True)
    out = zoo.owner(x.reshape(-1, *spec.input_shape))
    ti, tj = torch.tensor(i)[:, None], torch.tensor(j)[:, None]
    (out.gather(1, tj) - out.gather(1, ti)).sum().backward()
    grad = x.grad.numpy().astype(np.float64)
    gnorm = np.linalg.norm(grad, axis=1, keepdims=True)
    normal = grad / gnorm
    rng = np.random.default_rng(1)
    lines = [normal]
    for _ in range(args.tilted):
        r = rng.normal(size=base.shape)
        r -= (r * normal).sum(axis=1, keepdims=True) * normal
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        lines.append(0.5 * normal + np.sqrt(0.75) * r)
    # offsets: the owner's z_j - z_i moves by DELTAS along each line (linearised)
    asked = []
    for u in lines:
        rate = (grad * u).sum(axis=1, keepdims=True)  # d(z_j - z_i)/dt
        t = DELTAS[None, :] / rate
        pts = np.concatenate([base[:, None, :], base[:, None, :] + t[:, :, None] * u[:, None, :]], axis=1)
        asked.append(pts)
    points = np.clip(np.stack(asked, axis=1), lo.reshape(-1), hi.reshape(-1))  # (n, L, 9, d)
    rand = np.random.default_rng(2).normal(size=(n, args.random, base.shape[1]))
    rand /= np.linalg.norm(rand, axis=2, keepdims=True)
    rate = (rand * grad[:, None, :]).sum(axis=2)
    step = 1.0 / np.sqrt((rate ** 2).mean(axis=1, keepdims=True))
    pairs = np.clip(np.concatenate([base[:, None, :] + step[:, :, None] * rand,
                                    base[:, None, :] - step[:, :, None] * rand], axis=1),
                    lo.reshape(-1), hi.reshape(-1)).reshape(-1, *spec.input_shape)
    pi, pj = np.repeat(i, 2 * args.random), np.repeat(j, 2 * args.random)

    def random_diffs(answers: np.ndarray, logits: bool) -> np.ndarray:
        values = soft_values(answers, pi, pj, logits=logits).reshape(n, 2, args.random)
        return (values[:, 0] - values[:, 1]).reshape(-1)

    owner_random = random_diffs(owner(pairs), True)
    shape = points.shape[:3]
    flat_points = points.reshape(-1, *spec.input_shape)
    ii = np.broadcast_to(i[:, None, None], shape).reshape(-1)
    jj = np.broadcast_to(j[:, None, None], shape).reshape(-1)
    owner_values = soft_values(owner(flat_points), ii, jj, logits=True).reshape(shape)
    queries = points[0].size // points.shape[-1] * n + len(pairs)
    print(f"\n== {zoo_name}: {n} points, {len(lines)} lines each, {queries} queries;"
          f" owner's values at the points: median {np.median(owner_values[:, 0, 0]):.2f}")

    def statistics(model: TorchModel, interface: str) -> dict[str, float]:
        served = model if interface == "raw" else get_interface(interface).apply(model)
        answers = served(flat_points)
        logits = interface in ("raw", "integer_logits")
        random = corr(random_diffs(served(pairs), logits), owner_random)
        values = soft_values(answers, ii, jj, logits=logits).reshape(shape)
        per_line = [corr(values[a, b], owner_values[a, b]) for a in range(shape[0]) for b in range(shape[1])]
        order = np.argsort(np.concatenate([[0.0], DELTAS]))
        grid = np.concatenate([[0.0], DELTAS])[order]
        crossing = []
        for a in range(shape[0]):
            for b in range(shape[1]):
                mine, theirs = values[a, b][order], owner_values[a, b][order]
                crossing.append(abs(first_crossing(grid, mine) - first_crossing(grid, theirs)))
        return {"crossing": -float(np.median(crossing)), "crossing1": float(np.mean(np.array(crossing) <= 1)),
                "line corr": float(np.mean(per_line)),
                "pooled corr": corr(values.reshape(-1), owner_values.reshape(-1)),
                "pair sign": float(np.mean(np.sign(values) == np.sign(owner_values))),
                "random diff": random}

    calibration = [TorchModel(m, spec.input_shape, name=r.name) for r, m in zoo.with_role("calibration")]
    scored = zoo.with_role("scored")
    copies = [("owner", owner)] + [(r.name, TorchModel(m, spec.input_shape, name=r.name)) for r, m in scored
                                   if r.label == 1 and r.name in INTERFACE_COPIES]
    negatives = [(r.name, TorchModel(m, spec.input_shape, name=r.name)) for r, m in scored
                 if r.label == 0][:INTERFACE_NEGATIVES]
    allcopies = [(r.name, TorchModel(m, spec.input_shape, name=r.name)) for r, m in scored if r.label == 1]
    allneg = [(r.name, TorchModel(m, spec.input_shape, name=r.name)) for r, m in scored if r.label == 0]
    for interface in args.interfaces:
        cal = [statistics(m, interface) for m in calibration]
        rows = {"copies (interface bases)": [statistics(m, interface) for _, m in copies],
                "independents (interface bases)": [statistics(m, interface) for _, m in negatives],
                "all copies": [statistics(m, interface) for _, m in allcopies],
                "all independents": [statistics(m, interface) for _, m in allneg]}
        print(f"  -- {interface}")
        for stat in cal[0]:
            line = max(c[stat] for c in cal)
            text = ", ".join(f"{name} {np.mean([r[stat] > line for r in group]):.2f} ({len(group)})"
                             for name, group in rows.items())
            detail = " ".join(f"{r[stat]:.2f}" for r in rows["copies (interface bases)"])
            top = sorted(c[stat] for c in cal)[-4:]
            print(f"    {stat:<12} cal top {' '.join(f'{v:.2f}' for v in top)} | {text} | bases {detail}")



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "digits-cnn", "mnist-lenet"])
    parser.add_argument("--interfaces", nargs="+", default=["raw", "softmax_round3", "softmax_round2", "top3",
                                                               "one_hot"])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--tilted", type=int, default=1)
    parser.add_argument("--random", type=int, default=8)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    for zoo_name in args.zoos:
        measure(zoo_name, args)


if __name__ == "__main__":
    main()
