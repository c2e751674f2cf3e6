"""Reference models an owner makes itself, with no data.

A learned verifier and the margin report need positive references (copies derived from
the owner) and negative references (models that are not). With no data at all the owner
can still make both, from its model and the declared domain:

- positives: its model pruned, rounded, perturbed, permuted, and fine-tuned on synthetic
  inputs drawn from the domain (:func:`synthetic_data`);
- negatives ("look-alikes"): fresh networks distilled on the owner's outputs at random
  domain inputs, which answer like the owner on the domain but have other internals.

The synthetic targets are *not* the owner's own outputs: fine-tuning a model towards its
own outputs has zero gradient and returns the owner unchanged. A classifier's inputs get
the owner's hard labels, a fifth of them moved to the owner's runner-up class (the targets
pull the boundaries towards other classes, as another data set would); a regressor's or a
generator's get the owner's outputs plus Gaussian noise at a fifth of each output's spread.
The attack library's learning rates then move the copies like real fine-tunes. Each
reference's relative weight change and utility (agreement with the owner on fresh
synthetic inputs) are recorded in :attr:`tafa.references.References.provenance`, and from
there in the fingerprint's metadata.

:func:`data_free_references` returns a :class:`~tafa.references.References` (re-exported
here). The benchmark measures how well references made this way calibrate and train a
verifier compared with references trained on real data.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..domain import Domain
from ..errors import InvalidParameter, TafaError
from ..references import References
from ..training import TrainingData
from .extraction import reinitialised, teacher_outputs
from .registry import AttackContext, get_attack

#: Attacks applied to the owner for data-free positive references (synthetic data where they train).
DATA_FREE_POSITIVES = ("int8", "int4", "noise5", "noise10", "prune50", "prune80", "prune50_ft", "ft_all_small",
                       "ft_all_large", "ft_last_large", "ft_reinit_last_small", "struct25_ft", "permute_rescale",
                       "prune50_ft_int8")

__all__ = ["DATA_FREE_POSITIVES", "PARENT_FINE_TUNES", "References", "data_free_references", "parent_references",
           "reference_record", "synthetic_data"]

#: Fine-tuning attacks applied to a shared parent for its data-free sibling references (cycled).
PARENT_FINE_TUNES = ("ft_all_small", "ft_all_large")

#: Fraction of a classifier's synthetic labels moved to the owner's runner-up class.
LABEL_FLIP = 0.2
#: Standard deviation of the noise added to a regressor's / generator's synthetic targets,
#: relative to the spread of each output over the synthetic inputs.
TARGET_NOISE = 0.2


def is_classifier(outputs: torch.Tensor) -> bool:
    """Whether outputs of shape ``(n, C)`` with ``C >= 2`` (class scores) came back; a
    regressor answers ``(n, 1)`` and a generator an image."""
    return outputs.ndim == 2 and outputs.shape[1] >= 2


def synthetic_data(owner: nn.Module, domain: Domain, n: int, seed: int) -> TrainingData:
    """``n`` inputs drawn from ``domain`` with targets made from (not equal to) the owner's outputs.

    Classifiers: the owner's hard labels, a :data:`LABEL_FLIP` fraction moved to its
    runner-up class (objective ``"classify"``). Anything else: the owner's outputs plus
    Gaussian noise at :data:`TARGET_NOISE` of each output's spread (objective ``"match"``).
    Seeded: the same call gives the same data.
    """
    x = torch.as_tensor(domain.sample(n, seed), dtype=torch.float32)
    outputs = teacher_outputs(owner, x)
    generator = torch.Generator().manual_seed(seed + 1)
    if is_classifier(outputs):
        ranked = outputs.argsort(dim=1, descending=True)
        flip = torch.rand(n, generator=generator) < LABEL_FLIP
        labels = torch.where(flip, ranked[:, 1], ranked[:, 0])
        return TrainingData(x, labels, "classify")
    spread = outputs.std(dim=0, keepdim=True).clamp_min(1e-6)
    noise = torch.randn(outputs.shape, generator=generator) * spread * TARGET_NOISE
    return TrainingData(x, outputs + noise, "match")


def relative_weight_change(owner: nn.Module, copy: nn.Module) -> float | None:
    """``||w_copy - w_owner|| / ||w_owner||`` over all parameters, or ``None`` when the
    two do not have the same parameter shapes (a structurally pruned copy)."""
    mine = [p.detach().double().flatten() for p in owner.parameters()]
    theirs = [p.detach().double().flatten() for p in copy.parameters()]
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
        return None
    owner_norm = float(torch.linalg.vector_norm(torch.cat(mine))) if mine else 0.0
    change = float(torch.linalg.vector_norm(torch.cat(theirs) - torch.cat(mine))) if mine else 0.0
    return change / owner_norm if owner_norm > 0 else math.inf if change > 0 else 0.0


def utility(owner: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    """How well ``model`` does the owner's job on inputs ``x``: for a classifier the fraction
    of the owner's labels it reproduces, otherwise one minus the relative squared error
    of its outputs against the owner's."""
    expected = teacher_outputs(owner, x)
    got = teacher_outputs(model, x).reshape(expected.shape)
    if is_classifier(expected):
        return float((got.argmax(dim=1) == expected.argmax(dim=1)).double().mean())
    total = float(((expected - expected.mean(dim=0)) ** 2).sum())
    residual = float(((got - expected) ** 2).sum())
    return 1.0 - residual / total if total > 0 else float(residual == 0.0)


def reference_record(name: str, kind: str, owner: nn.Module, model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """One provenance record: name, kind (``"positive"``/``"negative"``), relative weight
    change and utility on the owner's synthetic inputs ``x`` (both rounded to 4 digits)."""
    change = relative_weight_change(owner, model)
    return {"name": name, "kind": kind,
            "relative_weight_change": None if change is None or not math.isfinite(change) else round(change, 4),
            "utility": round(utility(owner, model, x), 4)}


def data_free_references(owner: nn.Module, domain: Domain, *, seed: int = 0, n_synthetic: int = 2000,
                         positives: tuple[str, ...] = DATA_FREE_POSITIVES, lookalikes: int = 8,
                         student_factories: tuple[Callable[[int], nn.Module], ...] = (),
                         epochs: int | None = None) -> References:
    """Positive and look-alike negative references made from ``owner`` and ``domain`` alone.

    Positives: the ``positives`` attacks applied with :func:`synthetic_data` as the attacker's
    data (at the attack library's learning rates). Look-alikes are re-initialised copies of
    the owner's architecture (and, if given, the ``student_factories``' architectures)
    distilled on the owner's outputs at synthetic inputs. Attacks that do not apply to the
    owner's architecture are left out (``positive_names`` lists those made). Every reference
    gets a :func:`reference_record` in ``provenance``, measured on fresh synthetic inputs.
    """
    data = synthetic_data(owner, domain, n_synthetic, seed)
    held_out = torch.as_tensor(domain.sample(min(n_synthetic, 1000), seed + 999_983), dtype=torch.float32)
    refs = References()
    for i, name in enumerate(positives):
        try:
            copy = get_attack(name).apply(owner, AttackContext(data=data, seed=seed + 1 + i, epochs=epochs))
        except (TafaError, ValueError, TypeError):
            continue  # an attack that does not apply to this architecture (e.g. permutation of a graph)
        refs.positives.append(copy)
        refs.positive_names.append(f"data-free {name}")
        refs.provenance.append(reference_record(f"data-free {name}", "positive", owner, copy, held_out))
    if not refs.positives:
        raise InvalidParameter("None of the data-free reference attacks applies to this owner model.")
    from .extraction import distill

    for i in range(lookalikes):
        student_seed = seed + 1000 + i
        factories = (None, *student_factories)
        factory = factories[i % len(factories)]
        student = reinitialised(owner, seed=student_seed) if factory is None else factory(student_seed)
        inputs = torch.as_tensor(domain.sample(n_synthetic, student_seed), dtype=torch.float32)
        lookalike = distill(owner, student, inputs, epochs=epochs or 30, seed=student_seed)
        refs.negatives.append(lookalike)
        refs.negative_names.append(f"look-alike {i}")
        refs.provenance.append(reference_record(f"look-alike {i}", "negative", owner, lookalike, held_out))
    return refs


def parent_references(parent: nn.Module, owner: nn.Module, domain: Domain, *, count: int = 19, seed: int = 0,
                      n_synthetic: int = 2000, epochs: int | None = None) -> References:
    """Negative references for a fingerprint taken relative to a shared public ``parent``, made
    without data: the parent itself and ``count`` fine-tunes of it (:data:`PARENT_FINE_TUNES`,
    cycled, each with its own seed) on :func:`synthetic_data` labelled by the ``owner``, the
    most sibling-like model an owner can make with no data (a fine-tune of the same parent
    towards the same task). They calibrate a threshold against models fine-tuned from the same
    parent; how well they stand in for siblings trained on real data is measured in the
    benchmark (docs/method.md, "Shared public parents"). Each gets a provenance record."""
    held_out = torch.as_tensor(domain.sample(min(n_synthetic, 1000), seed + 999_983), dtype=torch.float32)
    refs = References(negatives=[parent], negative_names=["parent"],
                      provenance=[reference_record("parent", "negative", owner, parent, held_out)])
    for i in range(count):
        name = PARENT_FINE_TUNES[i % len(PARENT_FINE_TUNES)]
        data = synthetic_data(owner, domain, n_synthetic, seed + 2000 + i)
        tuned = get_attack(name).apply(parent, AttackContext(data=data, seed=seed + 2000 + i, epochs=epochs))
        refs.negatives.append(tuned)
        refs.negative_names.append(f"parent {name} {i}")
        refs.provenance.append(reference_record(f"parent {name} {i}", "negative", owner, tuned, held_out))
    return refs
