"""Points near the owner's decision boundaries, with random directions to step along: where a
service that answers rounded probabilities, a top-k list or a label still shows the owner's
function (the data-free label stage, :mod:`tafa.label_stage`).

Data-free probes are mostly confident, and confident probabilities round to 0 and 1. Near a
boundary between two classes ``i`` and ``j`` they do not: the two share most of the probability,
and ``log p_j - log p_i = z_j - z_i`` survives rounding to 0.01, a top-3 list, and (as its sign)
a one-hot label. So the points are IPGuard's (:class:`~tafa.probes.ipguard.IPGuardProbes`,
started from domain draws, at the margin ``margin``: ``j`` leads ``i`` there and the two lead the
rest), found white-box on the owner. At each point the suspect is asked at ``x + t u`` and
``x - t u`` for ``K`` random unit directions ``u`` shared by every point; the step ``t`` is the
point's own, where the owner's ``z_j - z_i`` moves by ``change`` (root mean square over the
directions, linearised on the owner's gradient). Every input is clipped into the domain
(``extra["low"]``, ``extra["high"]``).

Stored: ``points`` ``(N, *shape)``, ``steps`` ``(N,)``; ``extra["directions"]`` ``(K, d)``,
``extra["classes"]`` ``(N, 2)`` (``i``, ``j``), ``extra["low"]`` and ``extra["high"]`` ``(d,)``.
``directions`` is left empty (every point shares the same ``K``: storing them per point would
take ``N`` times the space).

>>> from tafa.domain import Box
>>> from tafa.bench.architectures import build
>>> from tafa.models import TorchModel
>>> owner = TorchModel(build("mlp", input_shape=(4,), output_dim=3, seed=0), (4,))
>>> probes = PairBoundaryProbes(steps=50).select(owner, Box((4,), 0, 1), n=5, k=3, seed=0)
>>> probes.points.shape, probes.extra["directions"].shape, probes.extra["classes"].shape, probes.steps.shape
((5, 4), (3, 4), (5, 2), (5,))
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..models.base import Model
from ..threads import one_torch_thread
from .base import CostPlan, ProbeStrategy, Probes, register_probes
from .ipguard import IPGuardProbes

if TYPE_CHECKING:
    from ..references import References


@register_probes("pair-boundary")
class PairBoundaryProbes(ProbeStrategy):
    """IPGuard's boundary points from domain draws, with shared random directions and per-point
    steps (see module doc). ``margin``: the owner's logit gap at each point; ``steps``: IPGuard's
    iterations at most; ``change``: how far the owner's ``z_j - z_i`` moves over one step."""

    def __init__(self, margin: float = 0.5, steps: int = 300, change: float = 1.0) -> None:
        check_param("change", change, "a number > 0", float(change) > 0, caller="PairBoundaryProbes")
        self.margin = float(margin)
        self.steps = int(steps)
        self.change = float(change)

    def plan(self, owner: Model, domain: Domain, *, n: int, k: int, signature_queries: int,
             budget: float | None) -> CostPlan | None:
        """IPGuard's search for the points (:meth:`IPGuardProbes.plan`), one gradient pass more at
        them, and the owner's signature."""
        return IPGuardProbes(margin=self.margin, steps=self.steps).plan(
            owner, domain, n=n, k=0, signature_queries=signature_queries + 3 * n, budget=budget)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        import torch

        check_param("k", k, "at least 2 directions", k >= 2, caller="PairBoundaryProbes.select")
        found = IPGuardProbes(margin=self.margin, steps=self.steps).select(owner, domain, n=n, k=0, seed=seed)
        module = owner.torch_module()
        assert module is not None  # IPGuardProbes refused a black-box owner
        points = found.points.reshape(n, -1).astype(np.float64)
        classes = found.extra["classes"].astype(np.int64)
        analysed = copy.deepcopy(module).double().eval()
        with one_torch_thread():
            x = torch.tensor(points.reshape(n, *owner.input_shape), dtype=torch.float64, requires_grad=True)
            logits = analysed(x).reshape(n, -1)
            rows = torch.arange(n)
            gap = logits[rows, torch.as_tensor(classes[:, 1])] - logits[rows, torch.as_tensor(classes[:, 0])]
            (gradient,) = torch.autograd.grad(gap.sum(), x)
        gradient_np = gradient.reshape(n, -1).numpy()
        rng = np.random.default_rng([seed, 0x9A1])
        directions = rng.normal(size=(k, points.shape[1]))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        rates = gradient_np @ directions.T  # (n, k): d(z_j - z_i)/dt along each direction
        spread = np.sqrt(np.mean(rates ** 2, axis=1))
        steps = self.change / np.maximum(spread, 1e-12)
        steps = np.minimum(steps, 2.0 * domain.scale() * np.sqrt(points.shape[1]))  # a flat owner: a bounded step
        lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in domain.bounds())
        return Probes(found.points, steps=steps,
                      extra={"directions": directions, "classes": classes.astype(np.float64), "low": lo, "high": hi},
                      info={"strategy": "pair-boundary", "analysis": "white-box", "source": found.info.get("source"),
                            "margin": self.margin, "change": self.change,
                            "reached": found.info.get("reached")})


__all__ = ["PairBoundaryProbes"]
