"""Which data-free inputs tell a distilled student from an independent model (issue 22 item 3)?

A student distilled on the owner's answers (fresh weights, trained on the attacker's data to
match the owner's logits) is found by neither stage of the default. This script asks, per
classification zoo, the owner, its students, the calibration models and the scored independent
models at inputs the owner synthesises itself, without data, in several styles:

- ``uniform``: domain draws;
- ``confident``: domain draws moved by Adam to inputs the owner maps confidently to a random
  class (the probes of ``tafa-extract``), ``--steps`` steps;
- ``light``: the same, 10 steps (nearer the draws);
- ``boundary``: IPGuard points where the owner's two leading classes tie within 0.5;
- ``mix``: convex mixtures of two confident inputs of different classes.

Statistics of a model's answers ``g`` against the owner's ``f`` (raw logits):

- ``agree``: the share of inputs where the argmax is the owner's;
- ``corr``: the mean over inputs of the Pearson correlation of the two logit vectors;
- ``rank``: the mean Spearman correlation of the non-leading classes (the owner's dark
  knowledge: how it ranks the classes it did not choose);
- ``values``: ``tafa-extract``'s output agreement (median of ``1 / (1 + |g - f| / s)``);
- ``cvalues``: the same of outputs centred across classes;
- ``svalues``: the same again, the model's centred outputs scaled by the one positive factor that
  brings them nearest the owner's (the extraction stage's ``scaled-agreement``).

Each is thresholded at the highest calibration model, and the share of students and of scored
independent models above it is printed (``students`` / ``independents``), with the students'
values beside the calibration's top four, and how far above the calibration's mean each student
and the highest independent lie, in standard deviations of their Fisher-z values.

``--finetune E`` adds a group: each student then fine-tuned ``E`` epochs (Adam, lr 1e-3) on the
task's labels of the half it was distilled on (a pirate who has read the method and trains the
distilled values away). ``--student-epochs E`` adds another: two students distilled here for ``E``
epochs, as the zoo's are (the owner's architecture re-initialised, and the zoo's other student
architecture; the attacker's half of the data, lr 1e-3), for zoos whose attacks run fewer epochs.

    python benchmarks/extraction_inputs.py [--zoos digits-mlp digits-cnn mnist-lenet] [--finetune 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import copy

import numpy as np
import torch

from tafa.attacks.extraction import distill, reinitialised
from tafa.bench.architectures import build
from tafa.bench.scenarios import FULL
from tafa.bench.zoo import build_zoos
from tafa.domain import parse_domain
from tafa.models import TorchModel
from tafa.probes.ipguard import IPGuardProbes
from tafa.probes.relu import invert
from tafa.training import fit


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ra, rb = a.argsort(axis=1).argsort(axis=1).astype(float), b.argsort(axis=1).argsort(axis=1).astype(float)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    return (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(norm > 0, (a * b).sum(axis=1) / np.where(norm > 0, norm, 1), 0.0)


def statistics(owner: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    top = owner.argmax(axis=1)
    rest = np.ones_like(owner, dtype=bool)
    rest[np.arange(len(owner)), top] = False
    m = owner.shape[1] - 1
    spread = float(np.sqrt(((owner - owner.mean(axis=0)) ** 2).sum(axis=1).mean()))
    return {"agree": float(np.mean(answers.argmax(axis=1) == top)),
            "corr": float(np.mean(pearson(owner, answers))),
            "rank": float(np.mean(spearman(owner[rest].reshape(-1, m), answers[rest].reshape(-1, m)))),
            "values": float(np.median(1 / (1 + np.linalg.norm(owner - answers, axis=1) / spread))),
            "cvalues": scaled_values(owner, answers, fit=False),
            "svalues": scaled_values(owner, answers, fit=True)}


def scaled_values(owner: np.ndarray, answers: np.ndarray, fit: bool) -> float:
    a = owner - owner.mean(axis=1, keepdims=True)
    b = answers - answers.mean(axis=1, keepdims=True)
    if fit:
        b = b * max((a * b).sum(), 0.0) / max((b * b).sum(), 1e-300)
    spread = float(np.sqrt(((a - a.mean(axis=0)) ** 2).sum(axis=1).mean()))
    return float(np.median(1 / (1 + np.linalg.norm(a - b, axis=1) / spread)))


def styles(owner: torch.nn.Module, spec, n: int, steps: int) -> dict[str, np.ndarray]:
    domain = parse_domain(spec.domain, spec.input_shape)
    lo, hi = domain.bounds()
    rng = np.random.default_rng(0)
    draws = domain.sample(n, rng).reshape(n, *spec.input_shape)
    lr = 0.05 * domain.scale()
    confident = invert(owner, draws, lo, hi, steps, 1, lr=lr)
    light = invert(owner, draws, lo, hi, 10, 2, lr=lr)
    model = TorchModel(owner, spec.input_shape, name="owner")
    found = IPGuardProbes(margin=0.5, steps=300).select(model, domain, n=n, k=0, seed=0)
    labels = model(confident).argmax(axis=1)
    partner = np.array([int(rng.choice(np.flatnonzero(labels != c))) if np.any(labels != c) else i
                        for i, c in enumerate(labels)])
    weight = rng.uniform(0.3, 0.7, size=(n,) + (1,) * len(spec.input_shape))
    mix = weight * confident + (1 - weight) * confident[partner]
    return {"uniform": draws, "confident": confident, "light": light,
            "boundary": found.points.reshape(-1, *spec.input_shape), "mix": mix}


def measure(zoo_name: str, args: argparse.Namespace) -> None:
    (spec,) = [spec for spec in FULL if spec.name == zoo_name]
    (zoo,) = build_zoos([spec], Path(args.cache), progress=False, roles=["scored", "calibration"])
    inputs = styles(zoo.owner, spec, args.n, args.steps)
    scored = zoo.with_role("scored")
    groups = {"calibration": [m for _, m in zoo.with_role("calibration")],
              "students": [m for r, m in scored if r.family == "extraction"],
              "independents": [m for r, m in scored if r.label == 0]}
    if args.student_epochs:
        other = spec.other_archs[0] if spec.other_archs else spec.owner_arch
        x = spec.data("other").x
        groups["retrained students"] = [
            distill(zoo.owner, reinitialised(zoo.owner, seed=300), x, epochs=args.student_epochs, lr=1e-3, seed=300),
            distill(zoo.owner, build(other, input_shape=spec.input_shape, output_dim=spec.output_dim, seed=301), x,
                    epochs=args.student_epochs, lr=1e-3, seed=301)]
        task = spec.data("owner")
        with torch.no_grad():
            accuracy = [float((m(task.x).argmax(1) == task.y).float().mean()) for m in
                        [zoo.owner, *groups["students"], *groups["retrained students"]]]
        print(f"  accuracy on the owner's half: owner {accuracy[0]:.3f}, the zoo's students "
              f"{' '.join(f'{a:.3f}' for a in accuracy[1:3])}, retrained {' '.join(f'{a:.3f}' for a in accuracy[3:])}")
    if args.finetune:
        groups["tuned students"] = [fit(copy.deepcopy(m), spec.data("other"), epochs=args.finetune, lr=1e-3, seed=7)
                                    for m in groups["students"]]
    print(f"\n== {zoo_name}: {args.n} inputs per style; {len(groups['students'])} students, "
          f"{len(groups['calibration'])} calibration, {len(groups['independents'])} independents")
    for style, x in inputs.items():
        owner = TorchModel(zoo.owner, spec.input_shape, name="owner")(x)
        stats = {name: [statistics(owner, TorchModel(m, spec.input_shape, name="m")(x)) for m in models]
                 for name, models in groups.items()}
        for stat in stats["calibration"][0]:
            cal = [s[stat] for s in stats["calibration"]]
            line = max(cal)
            top = " ".join(f"{v:.3f}" for v in sorted(cal)[-4:])
            students = " ".join(f"{s[stat]:.3f}" for s in stats["students"])
            caught = np.mean([s[stat] > line for s in stats["students"]])
            false = np.mean([s[stat] > line for s in stats["independents"]])
            zs = " ".join(f"{fisher_z(s[stat], cal):.1f}" for s in stats["students"])
            if "retrained students" in stats:
                again = stats["retrained students"]
                zs += (f" (retrained {np.mean([s[stat] > line for s in again]):.2f}: "
                       + " ".join(f"{s[stat]:.3f}" for s in again) + ")")
            if "tuned students" in stats:
                tuned = stats["tuned students"]
                zs += (f" (tuned {np.mean([s[stat] > line for s in tuned]):.2f}: "
                       + " ".join(f"{s[stat]:.3f}" for s in tuned) + ")")
            worst = max(fisher_z(s[stat], cal) for s in stats["independents"])
            print(f"  {style:<9} {stat:<7} students {caught:.2f} / independents {false:.2f} | cal top {top} | "
                  f"students {students} | z {zs}; independents' max z {worst:.1f}")


def fisher_z(value: float, calibration: list[float]) -> float:
    """How many standard deviations of the calibration models' Fisher-z values ``value`` lies above
    their mean (the parametric tail's scale: 2.58 is one-sided 0.005)."""
    cal = np.arctanh(np.clip(calibration, -0.999999, 0.999999))
    return float((np.arctanh(np.clip(value, -0.999999, 0.999999)) - cal.mean()) / cal.std(ddof=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["digits-mlp", "digits-cnn", "mnist-lenet"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--finetune", type=int, default=0, metavar="E")
    parser.add_argument("--student-epochs", type=int, default=0, metavar="E")
    parser.add_argument("--cache", default=".tafa-cache/zoo")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for zoo_name in args.zoos:
        measure(zoo_name, args)


if __name__ == "__main__":
    main()
