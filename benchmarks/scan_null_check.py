"""Is the family-wise scan's bound true for the suspects that matter? A check with fresh nulls.

``benchmarks/bench_scan.py`` measures false matches on 800 copies of 20 owners: 20 draws, not
800. This script measures the rate directly on models that are null for *every* fingerprint
and drawn like the owners (digits MLPs, the owners' data, seeds 5000 and up, never in any
panel), scored in this process against the bench's 20 fingerprints:

- the share of them that match some fingerprint under the scan's rule (max-T at ``--alpha``,
  each panel group alone) with the panel of the last ``bench_scan`` scan;
- panels of n drawn from the fresh models themselves (``--repeats`` draws each): the average
  rate (the marginal bound, exact if max-T is) and how much the rate *for one panel* varies.

Usage, after ``bench_scan.py`` has run a scan in ``--work`` (about 3 minutes for 400 models)::

    python benchmarks/scan_null_check.py --work /tmp/scanfw/bench --models 400
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np


def fresh_scores(work: Path, models: int, first_seed: int = 5000) -> tuple[list[str], np.ndarray]:
    """(fingerprint names, models x fingerprints scores) of ``models`` owner-like models (cached)."""
    cache = work / f"fresh-nulls-{first_seed}-{models}.json"
    if cache.is_file():
        data = json.loads(cache.read_text())
        return data["columns"], np.array(data["scores"])
    import torch

    from tafa.bench.architectures import build as build_net
    from tafa.bench.datasets import load_task
    from tafa.models import TorchModel
    from tafa.registry import Registry
    from tafa.scanning import Panel
    from tafa.training import fit

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    with Registry(work / "registry-20.sqlite") as registry:
        panel = Panel.from_registry(registry)
    columns = [entry.name for entry in panel.entries]
    part = load_task("digits").split("owner")
    rows, started = [], time.perf_counter()
    for seed in range(first_seed, first_seed + models):
        net = fit(build_net("mlp", input_shape=(1, 8, 8), output_dim=10, seed=seed), part, epochs=4, lr=2e-3,
                  seed=seed)
        model = TorchModel(net, input_shape=(1, 8, 8))
        entries = panel.fitting(model)
        plan = panel.plan(entries)
        answers = model(plan.inputs)
        scores = {entry.name: entry.judge(answers[plan.index[entry.name]]).score for entry in entries}
        rows.append([scores[name] for name in columns])
    print(f"scored {models} fresh owner-like models ({time.perf_counter() - started:.0f} s)", flush=True)
    cache.write_text(json.dumps({"columns": columns, "scores": rows}))
    return columns, np.array(rows, dtype=np.float64)


def any_match(scores: np.ndarray, table: np.ndarray, groups: list[str], alpha: float) -> np.ndarray:
    """Whether each row of ``scores`` matches some fingerprint under max-T, each group alone."""
    from tafa.decide.multiple import attained_bound, by_group, max_t

    sizes = {g: groups.count(g) for g in set(groups)}
    if min(attained_bound(alpha, n) for n in sizes.values()) == 0:
        return np.zeros(len(scores), dtype=bool)
    return np.array([np.nanmin(by_group(max_t, row, table, groups)) <= alpha for row in scores])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/tafa-bench-scan")
    parser.add_argument("--models", type=int, default=400)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--sizes", default="19,49,99")
    args = parser.parse_args()

    from tafa.registry import Registry
    from tafa.scanning import ErrorControl

    work = Path(args.work)
    columns, fresh = fresh_scores(work, args.models)
    with Registry(work / "run-local-20.sqlite") as registry:
        control = ErrorControl.from_dict(registry.scans()[-1].config["control"])
    if control.columns != columns:
        raise SystemExit("the scan's fingerprints are not the registry's")
    sizes = control.group_sizes()
    matched = any_match(fresh, control.table(), control.groups(), args.alpha)
    print(f"the scan's panel ({', '.join(f'{g} {n}' for g, n in sizes.items())}): "
          f"{100 * matched.mean():.2f} % of {len(fresh)} fresh owner-like models match some fingerprint "
          f"at alpha {args.alpha:g}")
    rng = np.random.default_rng(0)
    print("\n| panel of n fresh models | mean rate (marginal) | sd of the rate for one panel | "
          "share of panels above alpha | worst panel |\n|---|---|---|---|---|")
    for n in (int(v) for v in args.sizes.split(",")):
        if n >= len(fresh) - 20:
            continue
        rates = []
        for _ in range(args.repeats):
            order = rng.permutation(len(fresh))
            rates.append(any_match(fresh[order[n:]], fresh[order[:n]], ["fresh"] * n, args.alpha).mean())
        values = np.array(rates)
        print(f"| {n} | {100 * values.mean():.1f} % | {100 * values.std():.1f} | "
              f"{100 * np.mean(values > args.alpha):.0f} % | {100 * values.max():.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
