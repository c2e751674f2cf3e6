"""Random probes: uniform (or Gaussian) draws from the declared domain.

The probe set of the random-output baseline, and of the method's black-box ablation:
directions are orthonormal and random, steps a fixed fraction of the domain's width. With
``invert_steps`` the draws are first moved towards inputs the owner is confident on (Adam on its
gradients, :func:`~tafa.probes.relu.invert_in`): the extraction stage's inputs
(:data:`~tafa.scheme.Scheme.extraction`), which need a torch-module owner.

>>> from tafa.domain import Box
>>> from tafa.bench.architectures import build
>>> from tafa.models import TorchModel
>>> owner = TorchModel(build("mlp", input_shape=(4,), output_dim=2, seed=0), (4,))
>>> probes = RandomProbes().select(owner, Box((4,), 0, 1), n=5, k=2, seed=0)
>>> probes.points.shape, probes.directions.shape
((5, 4), (5, 2, 4))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Domain
from ..models.base import Model
from .base import CostPlan, ProbeStrategy, Probes, direction_groups, orthonormal_directions, register_probes
from .cost import search_seconds

if TYPE_CHECKING:
    from ..references import References


@register_probes("random")
class RandomProbes(ProbeStrategy):
    """``n`` points drawn from the domain, ``k`` random orthonormal directions each."""

    def __init__(self, step: float = 0.01, group: int = 1, invert_steps: int = 0) -> None:
        self.step = step
        self.group = group
        self.invert_steps = int(invert_steps)

    def plan(self, owner: Model, domain: Domain, *, n: int, k: int, signature_queries: int,
             budget: float | None) -> CostPlan | None:
        """The pull towards confident inputs (``invert_steps`` gradient steps for every draw) and
        the owner's signature, counted on the owner's network (:mod:`tafa.probes.cost`); ``None``
        without a pull (nothing costly)."""
        module = owner.torch_module()
        if self.invert_steps <= 0 or module is None:
            return None
        return CostPlan(search_seconds(module, domain, n, self.invert_steps, queries=signature_queries),
                        f"{n} draws pulled towards confident inputs by {self.invert_steps} gradient steps")

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        points = domain.sample(n, rng)
        info: dict[str, Any] = {"strategy": "random", "analysis": "none"}
        if self.invert_steps > 0:
            module = owner.torch_module()
            if module is None:
                info["analysis"] = "none (the owner is not a torch module: its draws are not moved to confident inputs)"
            else:
                from ..threads import one_torch_thread
                from .relu import invert_in  # the pull towards inputs the owner is confident on

                with one_torch_thread():  # the same points whatever the thread count (a reproducible hash)
                    points = invert_in(module, points, domain, self.invert_steps, rng)
                info.update(analysis="white-box", inverted=self.invert_steps)
        if k == 0:
            return Probes(points, info=info)
        directions = orthonormal_directions(n, k, domain.shape, rng, self.group)
        steps = np.full(n, self.step * domain.scale())
        return Probes(points, directions, steps, extra={"group": direction_groups(n, self.group).astype(float)},
                      info=info)
