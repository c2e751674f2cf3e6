"""The first stage behind a top-k list, on the classes it shows (issue 20; measured, not built).

A top-k service returns exact probabilities for its k leading classes and zeros for the rest, so the
derivatives of the shown classes' log-probabilities are exact, up to a shift common to every class
at a probe (the log-sum-exp), which centring across them removes. Per probe, the classes shown at
every one of its inputs are kept; the owner's and the suspect's derivatives of those classes are
centred across them, group-centred with means over the probes that show each class, and compared by
the cosine over the shown entries; the score is the median over probes (at least two classes shown).
The zoo's calibration models answer through the same top-k list. Printed: the calibration models'
top three, each copy's score and how far above their mean it lies (standard deviations of Fisher-z
values), and the scored independent models above the highest calibration model.

    python benchmarks/topk_first_stage.py digits-mlp [K]     # K = 3 (the benchmark's top-3 interface)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.models import TorchModel

COPIES = ("owner", "int8", "ft_all_small", "prune50_ft", "ft_all_large", "prune80_ft")


def top_k(answers: np.ndarray, k: int) -> np.ndarray:
    """Probabilities with all but the ``k`` largest of each row set to 0 (the benchmark's top-3 for k = 3)."""
    z = answers - answers.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    keep = np.argsort(-p, axis=1)[:, :k]
    out = np.zeros_like(p)
    np.put_along_axis(out, keep, np.take_along_axis(p, keep, axis=1), axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    parser.add_argument("k", type=int, nargs="?", default=3)
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    (spec,) = [s for s in FULL if s.name == args.zoo]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    shape = spec.input_shape
    fingerprint = Fingerprint.create(zoo.owner, spec.domain, input_shape=shape, second_stage=False)
    measurement = fingerprint.scheme.make_signature()
    inputs = measurement.inputs(fingerprint.probes)
    n, k = len(fingerprint.probes), fingerprint.probes.directions.shape[1]
    steps = fingerprint.probes.steps
    groups = fingerprint.probes.extra["group"].astype(int)

    def split(answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Central differences ``(n, K, m)`` and every input's answers per probe ``(n, 1 + 2K, m)``."""
        m = answers.shape[1]
        plus = answers[n:n + n * k].reshape(n, k, m)
        minus = answers[n + n * k:].reshape(n, k, m)
        return (plus - minus) / (2 * steps[:, None, None]), np.concatenate([answers[:n, None], plus, minus], axis=1)

    owner = split(TorchModel(zoo.owner, shape)(inputs))[0]
    reference = measurement.assemble(fingerprint.probes, TorchModel(zoo.owner, shape)(inputs))["derivatives"]
    assert np.allclose(owner, reference, atol=1e-5), "the measurement's input layout changed"

    def score(model: torch.nn.Module) -> float:
        if args.k == 3:
            answers = get_interface("top3").apply(TorchModel(model, shape))(inputs)
        else:
            answers = top_k(TorchModel(model, shape)(inputs), args.k)
        every = split(answers)[1]
        shown = (every > 0).all(axis=1)  # (n, m): shown at every input of the probe
        suspect = split(np.log(np.where(answers > 0, answers, 1.0)))[0]

        def centred(d: np.ndarray) -> np.ndarray:
            d = np.where(shown[:, None, :], d, 0.0)
            mean = d.sum(axis=2, keepdims=True) / np.maximum(shown.sum(axis=1), 1)[:, None, None]
            d = np.where(shown[:, None, :], d - mean, 0.0)
            out = d.copy()
            for group in np.unique(groups):
                rows = groups == group
                mean = d[rows].sum(axis=0) / np.maximum(shown[rows].sum(axis=0), 1)[None, :]
                out[rows] = np.where(shown[rows][:, None, :], d[rows] - mean[None], 0.0)
            return out

        a, b = centred(owner), centred(suspect)
        norms = np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))
        cosines = np.where(norms > 0, (a * b).sum(axis=(1, 2)) / np.where(norms > 0, norms, 1.0), 0.0)
        usable = shown.sum(axis=1) >= 2
        return float(np.median(cosines[usable])) if usable.any() else 0.0

    calibration = sorted(score(model) for _, model in zoo.with_role("calibration"))
    fisher = np.arctanh(np.clip(calibration, -0.999, 0.999))

    def z(value: float) -> float:
        return float((np.arctanh(min(value, 0.999)) - fisher.mean()) / fisher.std(ddof=1))

    models = {"owner": zoo.owner, **{r.name: m for r, m in zoo.with_role("scored")}}
    print(f"{args.zoo}, top-{args.k}: calibration top {' '.join(f'{v:.3f}' for v in calibration[-3:])}")
    for name in COPIES:
        value = score(models[name])
        print(f"  {name:<14} {value:.3f} (z {z(value):.1f})")
    independents = [score(m) for r, m in zoo.with_role("scored") if r.label == 0]
    print(f"  scored independents above the highest calibration model: "
          f"{sum(v > calibration[-1] for v in independents)}/{len(independents)}, "
          f"highest z {max(z(v) for v in independents):.1f}")


if __name__ == "__main__":
    main()
