"""Reference models an owner makes itself, with no data.

A learned verifier and the margin report need positive references (copies derived from
the owner) and negative references (models that are not). With no data at all the owner
can still make both, from its model and the declared domain:

- positives: its model pruned, rounded, perturbed, permuted, and fine-tuned on synthetic
  inputs drawn from the domain and labelled by the model itself (objective ``"match"``);
- negatives ("look-alikes"): fresh networks distilled on the owner's outputs at random
  domain inputs, which answer like the owner on the domain but have other internals.

:func:`synthetic_data` makes the labelled inputs; :func:`data_free_references` makes both
sets (a :class:`~tafa.references.References`, re-exported here). The benchmark measures how
well references made this way calibrate and train a verifier compared with references
trained on real data.
"""

from __future__ import annotations

from typing import Callable

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


def synthetic_data(owner: nn.Module, domain: Domain, n: int, seed: int) -> TrainingData:
    """``n`` inputs drawn from ``domain``, labelled with the owner's outputs (``"match"``)."""
    x = torch.as_tensor(domain.sample(n, seed), dtype=torch.float32)
    return TrainingData(x, teacher_outputs(owner, x), "match")


def data_free_references(owner: nn.Module, domain: Domain, *, seed: int = 0, n_synthetic: int = 2000,
                         positives: tuple[str, ...] = DATA_FREE_POSITIVES, lookalikes: int = 8,
                         student_factories: tuple[Callable[[int], nn.Module], ...] = (),
                         epochs: int | None = None) -> References:
    """Positive and look-alike negative references made from ``owner`` and ``domain`` alone.

    Look-alikes are re-initialised copies of the owner's architecture (and, if given, the
    ``student_factories``' architectures) distilled on the owner's outputs at synthetic inputs.
    Attacks that do not apply to the owner's architecture are left out (``positive_names``
    lists those made).
    """
    data = synthetic_data(owner, domain, n_synthetic, seed)
    refs = References()
    for i, name in enumerate(positives):
        try:
            copy = get_attack(name).apply(owner, AttackContext(data=data, seed=seed + 1 + i, epochs=epochs))
        except (TafaError, ValueError, TypeError):
            continue  # an attack that does not apply to this architecture (e.g. permutation of a graph)
        refs.positives.append(copy)
        refs.positive_names.append(f"data-free {name}")
    if not refs.positives:
        raise InvalidParameter("None of the data-free reference attacks applies to this owner model.")
    from .extraction import distill

    for i in range(lookalikes):
        student_seed = seed + 1000 + i
        factories = (None, *student_factories)
        factory = factories[i % len(factories)]
        student = reinitialised(owner, seed=student_seed) if factory is None else factory(student_seed)
        inputs = torch.as_tensor(domain.sample(n_synthetic, student_seed), dtype=torch.float32)
        refs.negatives.append(distill(owner, student, inputs, epochs=epochs or 30, seed=student_seed))
        refs.negative_names.append(f"look-alike {i}")
    return refs


__all__ = ["DATA_FREE_POSITIVES", "References", "data_free_references", "synthetic_data"]
