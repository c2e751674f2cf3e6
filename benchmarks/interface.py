"""Copies and independent models behind every classification interface, scored by the default
scheme's first stage with and without the interface recognition of :mod:`tafa.signature.interface`.

A digits owner (the demo's recipe: ``tafa.bench.demo.KINDS["classification"]``, MLP or CNN) is
trained, copied by registered attacks (int8, fine-tuning, pruning then fine-tuning) and
fingerprinted with the default scheme (its first stage: second stage off); independent models are
trained with other seeds, architectures and data halves. Every model is wrapped in every registered
classification interface (:mod:`tafa.attacks.interface`; ``none``: raw logits). Printed per owner and
interface: the lowest copy score and the highest independent score, without recognition (the
answers compared as they come) and with it (:meth:`Fingerprint.score`), and how many of the wrapped
models the recognition identified as the interface's kind (and the grid step it reports).

Then label-level evidence, for answers that keep only the top-1 label: the suspect's argmax
against the owner's at the fingerprint's probe points, and at pairs of points 2 * ``delta`` apart
straddling the owner's decision boundary (found by bisection, owner side, between random
points of the box with different owner labels): the fraction of pairs where the suspect gives the
owner's label on both sides.

    python benchmarks/interface.py [--owners mlp cnn] [--independents 10] [--delta 0.01 0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tafa import Fingerprint
from tafa.attacks import AttackContext, get_attack
from tafa.attacks.interface import get_interface, interfaces_for
from tafa.bench.demo import KINDS
from tafa.models import Model, TorchModel
from tafa.signature.interface import measure_suspect

COPIES = ("int8", "ft_all_small", "prune50_ft")
#: The kind the recognition should report for each interface.
EXPECTED = {"none": "raw", "softmax": "probabilities", "log_softmax": "log-probabilities",
            "softmax_t05": "probabilities", "softmax_t3": "probabilities", "softmax_round2": "probabilities",
            "softmax_round3": "probabilities", "top3": "top-k probabilities", "integer_logits": "integers",
            "one_hot": "one-hot labels"}
ARCHS = ("mlp", "mlp_small", "cnn")


def wrap(model: Model, name: str) -> Model:
    return model if name == "none" else get_interface(name).apply(model)


def boundary_pairs(owner: Model, count: int, delta: float, seed: int = 0) -> np.ndarray:
    """``(2 * count, 1, 8, 8)`` inputs: for each of ``count`` segments between random points of
    the box with different owner labels, the point of the segment where the owner's label changes
    (bisection, 30 halvings) moved ``delta`` (input units) back and forth along the segment."""
    rng = np.random.default_rng(seed)
    pairs = []
    while len(pairs) < count:
        a, b = rng.random((2, 1, 8, 8)).astype(np.float64)
        labels = owner(np.stack([a, b])).argmax(axis=1)
        if labels[0] == labels[1]:
            continue
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if owner((a + mid * (b - a))[None]).argmax(axis=1)[0] == labels[0]:
                lo = mid
            else:
                hi = mid
        direction = (b - a) / np.linalg.norm(b - a)
        centre = a + (lo + hi) / 2 * (b - a)
        pairs.append((np.clip(centre - delta * direction, 0, 1), np.clip(centre + delta * direction, 0, 1)))
    return np.array([p for pair in pairs for p in pair])


def label_agreement(owner_labels: np.ndarray, suspect: Model, inputs: np.ndarray, paired: bool) -> float:
    labels = suspect(inputs).argmax(axis=1)
    same = labels == owner_labels
    return float(same.reshape(-1, 2).all(axis=1).mean() if paired else same.mean())


def run_owner(arch: str, independents: int, deltas: list[float]) -> None:
    kind = KINDS["classification"]
    started = time.perf_counter()
    owner = kind.train(arch, 0, "owner")
    context = AttackContext(data=kind.data("other"), seed=0)
    copies = {name: get_attack(name).apply(owner, context) for name in COPIES}
    negatives = {f"{ARCHS[i % 3]}-s{100 + i}": kind.train(ARCHS[i % 3], 100 + i, "other" if i % 2 == 0 else "owner")
                 for i in range(independents)}
    fingerprint = Fingerprint.create(owner, kind.domain, input_shape=kind.input_shape, second_stage=False)
    print(f"\n## Owner: digits {arch} (scheme {fingerprint.scheme.name}, first stage, {fingerprint.queries()} "
          f"queries); {len(copies)} copies ({', '.join(COPIES)}), {len(negatives)} independent models; "
          f"models trained and fingerprinted in {time.perf_counter() - started:.0f} s\n")
    measurement = fingerprint.scheme.make_signature()

    def scores(modules: dict[str, torch.nn.Module], interface: str) -> tuple[list[float], list[float], list[str],
                                                                          set[float | None]]:
        plain, recognised_scores, kinds, steps = [], [], [], set()
        for name, module in modules.items():
            model = wrap(TorchModel(module, kind.input_shape, name=name), interface)
            plain.append(fingerprint.compare(measurement.measure(model, fingerprint.probes)).value)
            signature, recognised = measure_suspect(measurement, model, fingerprint.probes,
                                                    fingerprint.owner_signature)
            recognised_scores.append(fingerprint.compare(signature).value)
            kinds.append(recognised.kind)
            steps.add(recognised.quantised)
        return plain, recognised_scores, kinds, steps

    print("| interface | without: copy min | indep max | with recognition: copy min | indep max | separated | "
          "recognised (of all models) | grid step |")
    print("|:---|---:|---:|---:|---:|:---:|:---|---:|")
    for interface in ["none", *(i.name for i in interfaces_for("classification"))]:
        copy_plain, copy_with, copy_kinds, copy_steps = scores(copies, interface)
        neg_plain, neg_with, neg_kinds, neg_steps = scores(negatives, interface)
        kinds = copy_kinds + neg_kinds
        right = sum(k == EXPECTED[interface] for k in kinds)
        steps = sorted(f"{s:.3g}" for s in copy_steps | neg_steps if s is not None) or ["-"]
        print(f"| {interface} | {min(copy_plain):.3f} | {max(neg_plain):.3f} | {min(copy_with):.3f} | "
              f"{max(neg_with):.3f} | {'yes' if min(copy_with) > max(neg_with) else 'no'} | "
              f"{EXPECTED[interface]}: {right}/{len(kinds)} | {', '.join(steps)} |")

    owner_model = TorchModel(owner, kind.input_shape, name="owner")
    probe_inputs = fingerprint.probes.points.astype(np.float32)
    rows = [("probe points", probe_inputs, False)]
    rows += [(f"boundary pairs, delta {delta:g}", boundary_pairs(owner_model, 64, delta), True) for delta in deltas]
    print("\n| label evidence (one-hot answers) | copies (min / each) | independents (max / median) | separated |")
    print("|:---|:---|:---|:---:|")
    for label, inputs, paired in rows:
        owner_labels = owner_model(inputs).argmax(axis=1)
        copy_agree = [label_agreement(owner_labels, wrap(TorchModel(m, kind.input_shape), "one_hot"), inputs, paired)
                      for m in copies.values()]
        neg_agree = [label_agreement(owner_labels, wrap(TorchModel(m, kind.input_shape), "one_hot"), inputs, paired)
                     for m in negatives.values()]
        print(f"| {label} ({len(inputs)} queries) | {min(copy_agree):.3f} / "
              f"{' '.join(f'{v:.2f}' for v in copy_agree)} | {max(neg_agree):.3f} / {np.median(neg_agree):.3f} | "
              f"{'yes' if min(copy_agree) > max(neg_agree) else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--owners", nargs="+", default=["mlp", "cnn"], choices=list(ARCHS))
    parser.add_argument("--independents", type=int, default=10)
    parser.add_argument("--delta", nargs="+", type=float, default=[0.01, 0.05])
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    for arch in args.owners:
        run_owner(arch, args.independents, args.delta)
    print(f"\n{time.perf_counter() - started:.0f} s in all (torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
