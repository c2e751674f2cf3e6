"""ModelDiff's input pairs (Li, Zhang, Liu, Yang, Liu, ISSTA 2021).

ModelDiff compares two models by their *decision distance vectors*: for each input pair
``(x_i, x'_i)`` a model's distance between its outputs at ``x_i`` and at ``x'_i``. The
pairs are made once, on the owner:

- ``x_i``: the owner's own inputs (``data``), or draws from the domain when no data is given;
- ``x'_i``: a perturbation of ``x_i`` crafted on the owner to make its decision at
  ``x'_i`` as different as possible from its decision at ``x_i``, while ``x'_i`` stays
  close: projected signed-gradient ascent of the owner's decision distance (the
  signature's: cosine distance of the output vectors; absolute difference for a scalar
  output) within an L-infinity ball of ``radius`` around ``x_i``, clipped to the domain.

Defaults and where they come from:

- 300 pairs, 600 queries per verification: ``N_INPUT_PAIRS = 300`` of the authors'
  artifact (ModelDiff, Zenodo record 4723301) and of the public fingerprinting
  benchmarks that re-run it.
- The paper searches for the second inputs (mutations that raise the divergence of each
  pair and the diversity of the set); this port keeps the divergence objective and
  reaches it with a few gradient steps on the owner instead of the artifact's random
  single-feature mutations (``epsilon = 0.2`` on normalised images), the usual
  white-box shortcut. ``radius = 0.1`` of the domain's width (0.1 on pixels in
  ``[0, 1]``, a common L-infinity budget for small images), ``steps = 10`` of
  ``radius / 4`` each from a uniform random start in the ball (PGD's step rule).
- A black-box owner (no torch module) gets random perturbations within the same ball;
  the probes record ``"analysis": "black-box (...)"``.

>>> from tafa.domain import Box
>>> from tafa.bench.architectures import build
>>> from tafa.models import TorchModel
>>> owner = TorchModel(build("mlp", input_shape=(4,), output_dim=3, seed=0), (4,))
>>> probes = ModelDiffProbes().select(owner, Box((4,), 0, 1), n=5, k=0, seed=0)
>>> probes.points.shape, probes.extra["pair"].shape
((5, 4), (5, 4))
>>> bool(np.all(np.abs(probes.extra["pair"] - probes.points) <= 0.1 + 1e-12))
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..models.base import Model, module_dtype
from ..threads import one_torch_thread
from .base import ProbeStrategy, Probes, register_probes, seed_inputs

if TYPE_CHECKING:
    import torch

    from ..references import References


def _decision_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row decision distance of two output batches (differentiable twin of the
    ``decision-distance`` signature's)."""
    import torch

    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape[1] == 1:
        return (a - b).abs()[:, 0]
    return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)


@register_probes("modeldiff")
class ModelDiffProbes(ProbeStrategy):
    """Input pairs ``(points[i], extra["pair"][i])`` (see module doc).

    ``radius``: the L-infinity budget of the perturbation, as a fraction of the domain's
    width (:meth:`~tafa.domain.Domain.scale`); ``steps``: gradient steps on the owner;
    ``step_fraction``: each step's size as a fraction of the radius.
    """

    def __init__(self, radius: float = 0.1, steps: int = 10, step_fraction: float = 0.25) -> None:
        check_param("radius", radius, "a number > 0", float(radius) > 0, caller="ModelDiffProbes")
        check_param("steps", steps, "an integer >= 0", isinstance(steps, int) and steps >= 0,
                    caller="ModelDiffProbes")
        self.radius = float(radius)
        self.steps = steps
        self.step_fraction = float(step_fraction)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        points, source = seed_inputs(domain, n, rng, data)
        radius = self.radius * domain.scale()
        start = domain.clip(points + rng.uniform(-radius, radius, size=points.shape))
        module = owner.torch_module()
        info: dict[str, Any] = {"strategy": "modeldiff", "source": source, "radius": radius, "steps": self.steps}
        if module is None:
            info["analysis"] = "black-box (owner has no torch module: random perturbations)"
            return Probes(points, extra={"pair": start}, info=info)
        pair = self._ascend(module, domain, points, start, radius)
        info["analysis"] = "white-box"
        return Probes(points, extra={"pair": pair}, info=info)

    def _ascend(self, module: torch.nn.Module, domain: Domain, points: np.ndarray, start: np.ndarray,
                radius: float) -> np.ndarray:
        """Projected signed-gradient ascent of the owner's decision distance at each pair."""
        import torch

        dtype = module_dtype(module)
        lo, hi = domain.bounds()
        lower = torch.from_numpy(np.maximum(points - radius, lo))
        upper = torch.from_numpy(np.minimum(points + radius, hi))
        with torch.no_grad():
            anchor = module(torch.from_numpy(points).to(dtype))
        pair = torch.from_numpy(start)
        step = self.step_fraction * radius
        with one_torch_thread():
            for _ in range(self.steps):
                moving = pair.to(dtype).requires_grad_(True)
                distance = _decision_distance(anchor, module(moving)).sum()
                (gradient,) = torch.autograd.grad(distance, moving)
                pair = torch.minimum(torch.maximum(pair + step * gradient.sign().double(), lower), upper)
        return pair.numpy()
