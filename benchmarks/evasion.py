"""A pirate who has read the method (issue 21): copies and independent models served through every
registered evasion (:mod:`tafa.attacks.evasion`), verified by the default scheme, and checked by
:func:`tafa.signature.consistency.check_evasion`.

A digits MLP owner (the demo's recipe: ``tafa.bench.demo.KINDS["classification"]``) is copied by
registered attacks (int8, fine-tuning, pruning then fine-tuning) and fingerprinted with the default
scheme; independent models (three architectures, both data halves, other seeds) are scored, others
are the references (alpha 0.05) and two more are the decoys (never scored). Every copy is served
through every evasion with decoy A, every independent with decoy B; the routers that need the
pirate's data get the other half of digits. Printed per evasion: the lowest copy score, the highest
independent score, the verdicts, how many of each were flagged evasive by the check, the fraction of
the verification's queries the evasion answered from its decoy (or disturbed), and the agreement of
the served copies with the owner's label on every real digit asked one at a time (as users do).

Then the float batch effects behind the re-ask tolerance, and the ripple against derivative
estimates that avoid the fingerprint's symmetric ``x +- h u`` pairs (one-sided) or use other steps.

    python benchmarks/evasion.py [--independents 10] [--references 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
import torch

from tafa import Fingerprint
from tafa.attacks import AttackContext, get_attack
from tafa.attacks.evasion import EVASIONS, RippleModel
from tafa.bench.datasets import load_task
from tafa.bench.demo import KINDS
from tafa.domain import parse_domain
from tafa.models import Model, TorchModel
from tafa.signature.consistency import check_evasion
from tafa.signature.interface import assemble_suspect

COPIES = ("int8", "ft_all_small", "prune50_ft")
ARCHS = ("mlp", "mlp_small", "cnn")


class Recorder(Model):
    """Asks ``inner`` exactly as it is asked (same batches) and keeps every input and answer."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.asked: list[np.ndarray] = []
        self.answered: list[np.ndarray] = []
        super().__init__(inner.input_shape, inner.output_shape, name=inner.name, batch_size=inner.batch_size)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        answers = self.inner(x)
        self.asked.append(x.copy())
        self.answered.append(answers)
        return answers

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def serve(evasion: str, model: torch.nn.Module, decoy: torch.nn.Module, shape: tuple[int, ...], data: np.ndarray,
          seed: int) -> Model:
    plain = TorchModel(model, shape)
    return plain if evasion == "none" else EVASIONS[evasion].apply(plain, TorchModel(decoy, shape), data=data,
                                                                   seed=seed)


def rippled(module: torch.nn.Module, seed: int, frequency: float | None) -> Model:
    """``module`` (digits input shape) plus a ripple of amplitude 0.3 at ``frequency`` (``None``: none)."""
    plain = TorchModel(module, (1, 8, 8))
    return plain if frequency is None else RippleModel(plain, 0.3, frequency, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--independents", type=int, default=10)
    parser.add_argument("--references", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    kind = KINDS["classification"]
    shape = kind.input_shape
    owner = kind.train("mlp", 0, "owner")
    context = AttackContext(data=kind.data("other"), seed=0)
    copies = {name: get_attack(name).apply(owner, context) for name in COPIES}
    independents = {f"{ARCHS[i % 3]}-s{100 + i}": kind.train(ARCHS[i % 3], 100 + i, "other" if i % 2 == 0 else "owner")
                    for i in range(args.independents)}
    references = [TorchModel(kind.train(ARCHS[i % 3], 200 + i, "owner" if i % 2 else "other"), shape,
                             name=f"reference-{i}") for i in range(args.references)]
    decoys = [kind.train("mlp", 300, "other"), kind.train("cnn", 301, "owner")]
    trained = time.perf_counter() - started
    fingerprint = Fingerprint.create(owner, kind.domain, input_shape=shape)
    rule = fingerprint.calibrate(references, alpha=args.alpha)
    measurement = fingerprint.scheme.make_signature()
    inputs = measurement.inputs(fingerprint.probes)
    domain = parse_domain(kind.domain, shape)
    pirate_data = kind.data("other").x.numpy()
    digits = np.asarray(load_task("digits").x)
    owner_labels = TorchModel(owner, shape)(digits).argmax(axis=1)
    print(f"## Evasion on a digits MLP owner (scheme {fingerprint.scheme.name}: {fingerprint.stage_queries()} queries "
          f"per stage; {len(copies)} copies ({', '.join(COPIES)}), {len(independents)} independents, "
          f"{len(references)} references, alpha {args.alpha}: {len(rule.stages)} stage(s), threshold "
          f"{rule.threshold:.3f}, bound {rule.bound:.3f} ({rule.method}, {rule.n_references} references)); "
          f"models trained in {trained:.0f} s\n")

    print("| evasion | copy min | indep max | copies derived / evasive | indep derived / evasive | "
          "answered by decoy (copies) | copies' agreement with owner on real digits (min) | check queries |")
    print("|:---|---:|---:|:---:|:---:|---:|---:|---:|")
    for evasion in ["none", *EVASIONS]:
        rows: dict[str, list[tuple[float, str, bool, float, int]]] = {"copies": [], "independents": []}
        for group, models, decoy in (("copies", copies, decoys[0]), ("independents", independents, decoys[1])):
            for seed, module in enumerate(models.values()):
                served = serve(evasion, module, decoy, shape, pirate_data, seed)
                recorder = Recorder(served)
                verdict = fingerprint.verify(recorder, calibration=rule)
                asked, answered = np.concatenate(recorder.asked), np.concatenate(recorder.answered)
                assert np.array_equal(asked[:len(inputs)], inputs)
                routed = getattr(served, "routed", 0) / max(1, served.queries)
                found = check_evasion(recorder, inputs, answered[:len(inputs)], domain)
                rows[group].append((verdict.score, str(verdict.decision), found.evasive, routed, found.queries))
        agreement = min(
            float((np.concatenate([model(digits[i:i + 1]) for i in range(len(digits))]).argmax(axis=1)
                   == owner_labels).mean())
            for model in (serve(evasion, m, decoys[0], shape, pirate_data, 7) for m in copies.values()))
        c, n = rows["copies"], rows["independents"]
        print(f"| {evasion} | {min(r[0] for r in c):.3f} | {max(r[0] for r in n):.3f} | "
              f"{sum(r[1] == 'derived' for r in c)}/{len(c)} / {sum(r[2] for r in c)}/{len(c)} | "
              f"{sum(r[1] == 'derived' for r in n)}/{len(n)} / {sum(r[2] for r in n)}/{len(n)} | "
              f"{np.mean([r[3] for r in c]):.2f} | {agreement:.3f} | {max(r[4] for r in c + n)} |", flush=True)

    print("\n### Float batch effects: answers asked alone vs in the measurement's batches (fraction of the "
          "answers' spread)\n")
    print("| model | max | median |")
    print("|:---|---:|---:|")
    from tafa.signature.consistency import answer_scale
    for name, module in [("owner", owner), *copies.items(), *list(independents.items())[:3]]:
        model = TorchModel(module, shape)
        batched = model(inputs)
        alone = np.concatenate([model(inputs[i:i + 1]) for i in range(0, len(inputs), 4)])
        gaps = np.abs(alone - batched[::4]).max(axis=1) / answer_scale(batched)
        print(f"| {name} | {gaps.max():.2e} | {np.median(gaps):.2e} |")

    print("\n### The ripple against other derivative estimates (score: copy min / indep max)\n")
    probes = fingerprint.probes
    assert probes.directions is not None and probes.steps is not None
    n, k = probes.directions.shape[:2]

    def score(model: Model, factor: float, one_sided: bool) -> float:
        scaled = dataclasses.replace(probes, steps=probes.steps * factor)
        answers = model(measurement.inputs(scaled))
        if one_sided:  # (f(x + h u) - f(x)) / h: the minus block replaced by its reflection through f(x)
            answers = answers.copy()
            answers[n + n * k:] = 2 * np.repeat(answers[:n], k, axis=0) - answers[n:n + n * k]
        return fingerprint.compare(assemble_suspect(measurement, scaled, answers,
                                                    fingerprint.owner_signature)[0]).value

    estimates = [("central, h (the fingerprint's)", 1.0, False), ("one-sided, h", 1.0, True),
                 ("central, h/4", 0.25, False), ("central, 4h", 4.0, False), ("one-sided, 4h", 4.0, True)]
    print("| estimate | plain: copy min | indep max | ripple 0.3, frequency 100 (registered): copy min | indep max "
          "| ripple 0.3, frequency 10: copy min | indep max |")
    print("|:---|---:|---:|---:|---:|---:|---:|")
    for label, factor, one_sided in estimates:
        cells = []
        for frequency in (None, 100.0, 10.0):
            c = [score(rippled(m, s, frequency), factor, one_sided) for s, m in enumerate(copies.values())]
            i = [score(rippled(m, s, frequency), factor, one_sided) for s, m in enumerate(independents.values())]
            cells += [f"{min(c):.3f}", f"{max(i):.3f}"]
        print(f"| {label} | {' | '.join(cells)} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all (torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
