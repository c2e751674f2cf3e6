"""IPGuard's fingerprinting points near the owner's classification boundary
(Cao, Jia, Gong, AsiaCCS 2021).

Each point starts from one of the owner's inputs (``data``; draws from the domain when
no data is given) whose owner label is ``i``; a target label ``j != i`` is drawn at
random, and the point is moved (white-box, on the owner's logits ``g``) to minimise the
paper's loss

    ``ReLU(g_i(x) - g_j(x) + k) + ReLU(max_{t != i, j} g_t(x) - g_i(x))``

which is zero once ``j`` leads ``i`` by the margin ``k`` and ``i`` is still second: the
point sits just across the boundary between ``i`` and ``j``. A point stops moving at the
first Adam step that brings its loss to (nearly) zero, and that last step is shortened by
bisection to where the loss is first reached, so the point lands at a logit gap close to
``k`` rather than wherever the step happened to carry it (the paper stops at the step);
every point stays within the domain (projected Adam).

Defaults and where they come from:

- 100 points (100 queries per verification), the size IPGuard is usually run at.
- Starting points from the owner's data, Adam, up to ``steps = 1000`` iterations of
  learning rate ``lr = 0.01`` (in units of the domain's width: 0.01 on pixels in
  ``[0, 1]``), stopping at loss ``<= 1e-5``, target ``j`` drawn uniformly among the other
  labels: the settings of a public re-implementation of IPGuard (``Adv.IPGuard``, in a
  fingerprinting benchmark that also re-runs ModelDiff); the paper names the loss and
  Adam, not these numbers.
- ``k = 0.01``: the paper treats ``k`` as the robustness-uniqueness knob; the same
  re-implementation notes that ``k`` must be small because logits are small, and uses
  0.01. Raise it (``probe_params={"margin": ...}``) for more robustness to post-processing.

A classifier only (at least two outputs, argmax labels), and a white-box owner only (the
points are found on its gradients, as in the paper).

>>> from tafa.domain import Box
>>> from tafa.bench.architectures import build
>>> from tafa.models import TorchModel
>>> owner = TorchModel(build("mlp", input_shape=(4,), output_dim=3, seed=0), (4,))
>>> probes = IPGuardProbes(steps=50).select(owner, Box((4,), 0, 1), n=5, k=0, seed=0)
>>> probes.points.shape, probes.extra["classes"].shape
((5, 4), (5, 2))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..models.base import Model, module_dtype
from ..threads import one_torch_thread
from .base import CostPlan, ProbeStrategy, Probes, register_probes, seed_inputs
from .cost import search_seconds

if TYPE_CHECKING:
    import torch

    from ..references import References


#: Bisection rounds that shorten each point's last step to where its loss is first reached.
SHORTEN_ROUNDS = 30


def boundary_loss(logits: torch.Tensor, i: torch.Tensor, j: torch.Tensor, margin: float) -> torch.Tensor:
    """IPGuard's per-point loss (see module doc); ``logits`` is ``(N, C)``, ``i``/``j`` ``(N,)``."""
    import torch

    rows = torch.arange(len(logits))
    g_i, g_j = logits[rows, i], logits[rows, j]
    loss = torch.relu(g_i - g_j + margin)
    if logits.shape[1] > 2:
        others = logits.clone()
        others[rows, i] = -torch.inf
        others[rows, j] = -torch.inf
        loss = loss + torch.relu(others.max(dim=1).values - g_i)
    return loss


@register_probes("ipguard")
class IPGuardProbes(ProbeStrategy):
    """Points just across the owner's boundary between two classes (see module doc).

    ``margin``: the paper's ``k``; ``lr``: Adam's learning rate as a fraction of the
    domain's width; ``steps``: the most iterations; ``tolerance``: the loss at which a
    point stops.
    """

    def __init__(self, margin: float = 0.01, lr: float = 0.01, steps: int = 1000, tolerance: float = 1e-5) -> None:
        check_param("margin", margin, "a number >= 0", float(margin) >= 0, caller="IPGuardProbes")
        check_param("steps", steps, "an integer >= 1", isinstance(steps, int) and steps >= 1,
                    caller="IPGuardProbes")
        self.margin = float(margin)
        self.lr = float(lr)
        self.steps = steps
        self.tolerance = float(tolerance)

    def starts(self, owner: Model, domain: Domain, *, n: int, seed: int,
               data: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """The starting points, their owner labels ``i``, the target labels ``j`` and where the
        points came from (what :meth:`select` then optimises)."""
        check_param("owner", owner.name, "a classifier with at least 2 outputs (IPGuard)",
                    int(np.prod(owner.output_shape)) >= 2, caller="IPGuardProbes.select")
        rng = np.random.default_rng(seed)
        points, source = seed_inputs(domain, n, rng, data)
        logits = owner(points).reshape(n, -1)
        i = logits.argmax(axis=1)
        classes = logits.shape[1]
        j = (i + rng.integers(1, classes, size=n)) % classes  # uniform over the other labels
        return points, i, j, source

    def plan(self, owner: Model, domain: Domain, *, n: int, k: int, signature_queries: int,
             budget: float | None) -> CostPlan | None:
        """The most the search costs (every point for all its steps, then its bisection) and
        the owner's signature, counted on the owner's network (:mod:`tafa.probes.cost`). Never
        cut to fit ``budget``: fewer steps would leave the points short of the boundary."""
        module = owner.torch_module()
        if module is None:
            return None
        shortening = n * (SHORTEN_ROUNDS + 1)
        return CostPlan(search_seconds(module, domain, n, self.steps + 1, queries=shortening + signature_queries),
                        f"{n} boundary points, at most {self.steps} gradient steps each")

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        module = owner.torch_module()
        check_param("owner", owner.name, "a white-box model (IPGuard finds its points on the owner's gradients)",
                    module is not None, caller="IPGuardProbes.select")
        assert module is not None  # check_param raised otherwise
        points, i, j, source = self.starts(owner, domain, n=n, seed=seed, data=data)
        with one_torch_thread():
            moved, loss = self._optimise(module, domain, points, i, j)
        return Probes(moved, extra={"classes": np.stack([i, j], axis=1).astype(np.float64)},
                      info={"strategy": "ipguard", "analysis": "white-box", "source": source,
                            "margin": self.margin, "reached": float(np.mean(loss <= self.tolerance))})

    def _optimise(self, module: torch.nn.Module, domain: Domain, points: np.ndarray, i: np.ndarray,
                  j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projected Adam on the boundary loss; a point stops at the first step that reaches
        the tolerance, and that step is shortened by bisection to where the loss is first
        reached (one Adam step can carry a point far across the boundary)."""
        import torch

        dtype = module_dtype(module)
        lo, hi = (torch.from_numpy(bound).to(dtype) for bound in domain.bounds())
        x = torch.from_numpy(points).to(dtype).requires_grad_(True)
        i_t, j_t = torch.from_numpy(i), torch.from_numpy(j)
        optimiser = torch.optim.Adam([x], lr=self.lr * domain.scale())
        done = torch.zeros(len(points), dtype=torch.bool)
        before = x.detach().clone()  # each point's last position with the loss not yet reached
        after = x.detach().clone()   # its first position with the loss reached
        for _ in range(self.steps + 1):
            loss = boundary_loss(module(x), i_t, j_t, self.margin)
            newly = (loss.detach() <= self.tolerance) & ~done
            after[newly] = x.detach()[newly]
            done |= newly
            if bool(done.all()):
                break
            before[~done] = x.detach()[~done]
            optimiser.zero_grad()
            (loss * (~done)).sum().backward()
            optimiser.step()
            with torch.no_grad():
                x.copy_(torch.minimum(torch.maximum(x, lo), hi))
        after[~done] = x.detach()[~done]
        with torch.no_grad():
            final = self._shorten(module, before[done], after[done], i_t[done], j_t[done])
            after[done] = final
            loss = boundary_loss(module(after), i_t, j_t, self.margin)
        return after.double().numpy(), loss.double().numpy()

    def _shorten(self, module: torch.nn.Module, before: torch.Tensor, after: torch.Tensor, i: torch.Tensor,
                 j: torch.Tensor, rounds: int = SHORTEN_ROUNDS) -> torch.Tensor:
        """Bisect each segment ``before -> after`` for the first point where the loss is reached
        (keeping an end where it is reached, so the result always satisfies it)."""
        import torch

        shape = (-1,) + (1,) * (before.dim() - 1)
        low = torch.zeros(len(before), dtype=before.dtype)
        high = torch.ones(len(before), dtype=before.dtype)
        for _ in range(rounds):
            middle = (low + high) / 2
            reached = boundary_loss(module(before + middle.reshape(shape) * (after - before)), i, j,
                                    self.margin) <= self.tolerance
            high = torch.where(reached, middle, high)
            low = torch.where(reached, low, middle)
        return before + high.reshape(shape) * (after - before)
