"""Which similarity features should the evidence verifier weigh? (docs/method.md)

For every zoo of ``tafa bench --size full``: fingerprint the owner with the ``tafa`` probes,
compute the evidence features of every model, then fit a logistic regression on the
owner-made references (zoo role ``training``) or the data-free ones (role ``free``) with a
feature subset and an L2 strength ``C``, and score the scored models. Prints AUC / TPR at
1% FPR per zoo and their means.

    python benchmarks/evidence_features.py [--cache .tafa-cache/zoo]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from tafa import Fingerprint
from tafa.bench import metrics
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.decide.learned import evidence_features
from tafa.models import TorchModel

SUBSETS = (("local",), ("derivatives",), ("outputs",), ("local", "derivatives"), ("local", "outputs"),
           ("local", "derivatives", "outputs"), ("derivatives", "derivatives_q25", "local", "local_q25", "local_q75",
                                                 "outputs", "outputs_point"))


def features(cache: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for zoo in build_zoos(FULL, cache, jobs=2, progress=False):
        spec = zoo.spec
        fingerprint = Fingerprint.create(TorchModel(zoo.owner, spec.input_shape), spec.domain)
        rows[spec.name] = [{"role": recipe.role, "label": recipe.label, "family": recipe.family,
                            "f": evidence_features(fingerprint.owner_signature,
                                                   fingerprint.measure(TorchModel(zoo.models[name], spec.input_shape)))}
                           for name, recipe in zoo.recipes.items() if recipe.role != "owner"]
    return rows


def evaluate(rows: dict[str, list[dict]], names: tuple[str, ...], role: str, c: float) -> list[tuple[float, float]]:
    def matrix(subset: list[dict]) -> np.ndarray:
        return np.arctanh(np.clip([[r["f"][n] for n in names] for r in subset], -0.999, 0.999))

    out = []
    for zoo_rows in rows.values():
        train = [r for r in zoo_rows if r["role"] == role]
        scored = [r for r in zoo_rows if r["role"] == "scored"]
        if len(names) == 1:
            scores = [r["f"][names[0]] for r in scored]
        else:
            x = matrix(train)
            mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000)
            model.fit((x - mean) / std, [r["label"] for r in train])
            scores = model.decision_function((matrix(scored) - mean) / std)
        pos = [s for s, r in zip(scores, scored) if r["label"] == 1 and r["family"] != "extraction"]
        neg = [s for s, r in zip(scores, scored) if r["label"] == 0]
        out.append((metrics.roc_auc(pos, neg), metrics.tpr_at_fpr(pos, neg, 0.01)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    rows = features(Path(args.cache))
    print("zoos:", ", ".join(rows))
    print(f"{'features':<52} {'references':<10} {'C':>4}  per zoo AUC/TPR@1%FPR ... | mean AUC, mean TPR")
    for names in SUBSETS:
        for role in (("training", "free") if len(names) > 1 else ("-",)):
            for c in ((0.3, 1.0, 3.0) if len(names) > 1 else (0.0,)):
                result = evaluate(rows, names, role, c)
                cells = " ".join(f"{a:.3f}/{t:.2f}" for a, t in result)
                print(f"{'+'.join(names):<52} {role:<10} {c:>4}  {cells} | {np.mean([a for a, _ in result]):.3f} "
                      f"{np.mean([t for _, t in result]):.3f}")


if __name__ == "__main__":
    main()
