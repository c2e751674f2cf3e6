"""Lines that cross the owner's first-layer boundaries at known points (boundary geometry).

Each first-layer ReLU unit ``j`` of a piecewise-linear network is a hyperplane in input
space, ``{x : w_j . x + b_j = 0}`` (for a convolutional first layer: one filter at one
position). Crossing it, the network's Jacobian jumps by a rank-one matrix ``c w_j^T``: the
jump is parallel to the unit's weights, whatever the layers above do. A derived copy keeps
its units' orientations much better than their positions (fine-tuning moves biases), so
the black-box evidence compares the *orientation* of the strongest kink a suspect shows on
each line with the owner's normal (:mod:`tafa.signature.kinks`).

White-box (the owner is a torch module the analysis can freeze): candidates are drawn from
the domain; at each, :func:`~tafa.relu.linearise.first_switches` gives the first layer's switches,
and its nearest first-layer hyperplanes are tried in turn (one unit at most once). A
crossing point ``p`` (the candidate projected onto the hyperplane) must lie in the domain,
be isolated (no other switch of the owner within a few steps, in the slice of the directions
a measurement steps along) and be visible (the owner's derivative along the line jumps
there by at least ``min_jump`` of its size: a unit whose output nothing downstream reads, e.g.
one that loses its max-pooling window, shows no kink). A first layer whose units' gradients
over the input are more than :data:`MAX_SWITCH_VALUES` values (a convolution over a large image)
is not aimed at: the black-box lines below are made instead, and the default scheme then has
no second stage. Per line the probes hold:

- ``points``: the crossing point ``p`` (the line is ``p + t u``, crossing at ``t = 0``);
- ``directions``: ``K`` orthonormal directions in which the jump is measured, the first being
  the owner's unit normal, the others random and orthogonal to it: for a unit that sees part of
  the input (a convolution's filter at one position), random within what it sees
  (:func:`local_support`: the filter's pixels, widened by neighbouring positions when they are
  fewer than ``K + 1``), where its copy's unit's jump lies, and other units' hyperplanes are fewer;
- ``steps``: the finite-difference step along the line and the directions (smaller on a local
  unit's line: many filters' positions cross near any point, and the owner's kink must be
  isolated from them by a few steps);
- ``extra["line"]``: the line's direction ``u`` (by default the normal itself: the unit a
  suspect shows most strongly along it is then its unit best aligned with the owner's);
- ``extra["window"]``: how far along the line the suspect's kinks are scanned (by default the
  domain's width each way: fine-tuning moves hyperplanes far, see :mod:`tafa.signature.kinks`);
- ``extra["normal"]``: the owner's unit normal in the measured directions (``(N, K)``);
- ``extra["spread"]``: ``(d - 1) / (K - 1)`` per line (``d``: the input's values, or the local
  unit's support's): how many unmeasured dimensions each
  measured direction other than the first stands for (the K - 1 random directions are a
  random sample of the d - 1 orthogonal to the normal), so that a similarity can estimate a
  unit's full-space cosine with the normal from its K measured components
  (:class:`~tafa.decide.similarity.BoundaryOrientation`).

Black-box owners (no torch module, or operations the analysis cannot freeze): random lines
through random domain points with random directions and no ``normal``: the owner's own
strongest kinks are then located and measured exactly like a suspect's, and they are the
reference.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..models.base import Model
from .base import ProbeStrategy, Probes, register_probes, unavailable_reason

if TYPE_CHECKING:
    import torch

    from ..references import References


@register_probes("boundary")
class BoundaryProbes(ProbeStrategy):
    """Lines crossing the owner's first-layer hyperplanes (see module doc).

    ``line_angle``: degrees between a line and the unit's normal (0: along it, so that the
    unit the suspect shows most strongly on the line is its best-aligned one); ``window``: how
    far along the line (fraction of the domain's width) the suspect's kinks are scanned;
    ``step``: the finite-difference step (fraction of the domain's width); ``min_jump``: the
    smallest relative jump of the owner's derivative along the line that makes a crossing
    visible; ``oversample``: how many candidates per line are drawn at most;
    ``per_candidate``: how many of a candidate's nearest first-layer hyperplanes are tried;
    ``local_step``: the step (fraction of the domain's width) on a line whose unit sees part of the
    input (a filter at one position: :func:`local_support`), where other units' hyperplanes lie
    closer than for a dense unit; ``small_filters``: aim lines at filters that see fewer values than
    the ``k`` measured directions need too (their directions widened to neighbouring positions: measured
    in ``benchmarks/conv_geometry.py``, not used by default, :func:`filter_size`).
    """

    def __init__(self, line_angle: float = 0.0, window: float = 1.0, step: float = 1e-3, min_jump: float = 0.05,
                 oversample: int = 20, per_candidate: int = 1, local_step: float = 2e-4,
                 small_filters: bool = False) -> None:
        check_param("line_angle", line_angle, "a number of degrees in [0, 85]", 0 <= line_angle <= 85,
                    caller="BoundaryProbes")
        check_param("window", window, "a fraction in (0, 10]", 0 < window <= 10, caller="BoundaryProbes")
        check_param("step", step, "a fraction in (0, 0.01]", 0 < step <= 0.01, caller="BoundaryProbes")
        check_param("local_step", local_step, "a fraction in (0, 0.01]", 0 < local_step <= 0.01,
                    caller="BoundaryProbes")
        self.line_angle = float(line_angle)
        self.window = float(window)
        self.step = float(step)
        self.min_jump = float(min_jump)
        self.oversample = int(oversample)
        self.per_candidate = int(per_candidate)
        self.local_step = float(local_step)
        self.small_filters = bool(small_filters)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        module = owner.torch_module()
        reason = unavailable_reason(owner) if module is None else ""
        if module is not None:
            from ..relu.linearise import NotPiecewiseLinear, check_head_on_top

            analysed = copy.deepcopy(module).double().eval()
            try:
                check_head_on_top(analysed, domain.sample(1, rng)[0])
                return self._white_box(analysed, domain, n, k, rng)
            except NotPiecewiseLinear as error:
                reason = str(error)
        return self._black_box(domain, n, k, rng, reason)

    def _sizes(self, domain: Domain) -> tuple[float, float]:
        """The step and the window, in the domain's units."""
        return self.step * domain.scale(), self.window * domain.scale()

    def _white_box(self, module: torch.nn.Module, domain: Domain, n: int, k: int,
                   rng: np.random.Generator) -> Probes:
        from ..relu.linearise import NotPiecewiseLinear, first_switch_values, first_switches, linearise

        lo, hi = domain.bounds()
        shape = domain.shape
        d = int(np.prod(shape))
        start = domain.sample(2, 0)  # their own draws: the lines keep theirs
        units = len(first_switch_values(module, start[0]))
        if units * (d + 1) > MAX_SWITCH_VALUES:  # the units' gradients over the input are held at once
            raise NotPiecewiseLinear(f"its first layer's {units:,} units over {d:,} input values are too many to aim "
                                     f"lines at (at most {MAX_SWITCH_VALUES:,} gradient values)")
        # a first layer's hyperplanes are fixed in input space: their gradients are asked once, their
        # values at each candidate (checked at a second point: the values there must be the affine
        # map's, else the gradients are asked at every candidate)
        values, gradients = first_switches(module, start[0])
        predicted = values + gradients @ (start[1] - start[0]).reshape(-1)
        same = np.allclose(first_switch_values(module, start[1]), predicted, rtol=1e-7,
                           atol=1e-9 * max(float(np.abs(values).max(initial=0.0)), 1.0))
        fixed = gradients if same else None
        fixed_norms = None if fixed is None else np.linalg.norm(fixed, axis=1)
        sees = None if fixed is None else filter_size(fixed)
        if sees is not None and sees < k + 1 and not self.small_filters:
            raise NotPiecewiseLinear(f"its first layer's filters see {sees} input values, fewer than the {k + 1} its "
                                     f"{k} measured directions need: a filter that small has too little orientation to "
                                     "tell a copy's from an independent model's")
        step, window = self._sizes(domain)
        cos, sin = np.cos(np.radians(self.line_angle)), np.sin(np.radians(self.line_angle))
        points: list[np.ndarray] = []
        lines: list[np.ndarray] = []
        directions: list[np.ndarray] = []
        normals: list[np.ndarray] = []
        steps: list[float] = []
        isolations: list[float] = []
        jumps: list[float] = []
        spreads: list[float] = []
        local = 0
        used: set[int] = set()
        tried = 0
        tiny = 1e-7 * domain.scale()
        while len(points) < n and tried < n * self.oversample:
            tried += 1
            x0 = domain.sample(1, rng)[0]
            # the first layer's switches: hyperplanes fixed in input space
            if fixed is None:
                values, gradients = first_switches(module, x0)
                norms = np.linalg.norm(gradients, axis=1)
            else:
                values, gradients, norms = first_switch_values(module, x0), fixed, fixed_norms
            # divided only where the gradient is not ~0 (a huge pre-activation over a tiny norm overflows)
            distance = np.full(len(norms), np.inf)
            distance[norms > 1e-12] = np.abs(values[norms > 1e-12]) / norms[norms > 1e-12]
            distance[list(used)] = np.inf
            # the nearest units' hyperplanes, until one makes a line
            for j in np.argsort(distance, kind="stable")[:self.per_candidate]:
                if not np.isfinite(distance[j]) or len(points) == n:
                    break
                normal = gradients[j] / norms[j]
                crossing = x0.reshape(-1) - values[j] / norms[j] * normal
                if np.any(crossing < lo.reshape(-1) - 1e-12) or np.any(crossing > hi.reshape(-1) + 1e-12):
                    continue
                # a unit that sees part of the input (a filter at one position) is measured in
                # directions within what it sees: the jump of its copy's unit lies there
                support = None if sees is None else local_support(normal, shape, k)  # a convolution's unit
                seen = 1.0 if support is None else support.astype(np.float64)
                line_step = step if support is None else self.local_step * domain.scale()
                # the line: at line_angle from the normal, towards a random direction orthogonal to it
                line = cos * normal + sin * _orthogonal_unit(rng.normal(size=d) * seen, normal)
                basis = [normal]
                while len(basis) < k:
                    basis.append(_orthogonal_unit(rng.normal(size=d) * seen, *basis))
                measured = np.stack(basis)
                # first, cheaply, whether the unit's kink shows along the line at all (the owner's own
                # slopes just either side): most filters' positions lose their max-pooling window
                if _rough_jump(module, crossing, normal, line, tiny, shape) < 0.5 * self.min_jump:
                    continue
                # the owner's pieces on both sides, in the slice its measurement steps in
                # (the K directions and the line): isolation and jump are what a suspect's
                # measurement will meet there
                slice_basis = np.linalg.qr(np.vstack([measured, line[None]]).T)[0]
                above = linearise(module, (crossing + tiny * normal).reshape(shape), slice_basis)
                # the unit's own hyperplane lies ``tiny`` away, and so do the switches that coincide
                # with it (a max-pooling window the unit wins: its winner-minus-others margins)
                others = above.distances()
                others = others[others > 10 * tiny]
                isolation = float(others.min()) if others.size else np.inf
                if isolation < 4 * line_step:  # the owner's own kink must be measurable
                    continue
                below = linearise(module, (crossing - tiny * normal).reshape(shape), slice_basis)
                along = slice_basis.T @ line
                slope_above, slope_below = above.jacobian @ along, below.jacobian @ along
                size = max(float(np.linalg.norm(slope_above)), float(np.linalg.norm(slope_below)), 1e-12)
                jump = float(np.linalg.norm(slope_above - slope_below)) / size
                if jump < self.min_jump:
                    continue
                used.add(int(j))
                points.append(crossing.reshape(shape))
                lines.append(line.reshape(shape))
                directions.append(measured.reshape(k, *shape))
                steps.append(line_step)
                local += support is not None
                spreads.append(((d if support is None else int(support.sum())) - 1) / (k - 1) if k > 1 else 1.0)
                normals.append(measured @ normal)
                isolations.append(isolation)
                jumps.append(jump)
        if not points:
            raise NotPiecewiseLinear("no isolated, visible first-layer boundary crosses the domain")
        count = len(points)
        info: dict[str, Any] = {
            "strategy": "boundary", "analysis": "white-box", "lines": count, "requested_lines": n,
            "candidates_tried": tried, "line_angle": self.line_angle,
            "isolation_median": float(np.median(isolations)), "relative_jump_median": float(np.median(jumps)),
            "local_lines": local,
        }
        extra = {"line": np.stack(lines), "window": np.full(count, window), "normal": np.stack(normals),
                 "spread": np.asarray(spreads)}
        return Probes(np.stack(points), np.stack(directions), np.asarray(steps), extra=extra, info=info)

    def _black_box(self, domain: Domain, n: int, k: int, rng: np.random.Generator, reason: str) -> Probes:
        shape = domain.shape
        d = int(np.prod(shape))
        step, window = self._sizes(domain)
        points = domain.sample(n, rng)
        lines = np.stack([_orthogonal_unit(rng.normal(size=d)) for _ in range(n)])
        directions = np.stack([np.linalg.qr(rng.normal(size=(d, k)))[0].T for _ in range(n)])
        info = {"strategy": "boundary", "analysis": f"black-box ({reason})", "lines": n}
        extra = {"line": lines.reshape(n, *shape), "window": np.full(n, window)}
        return Probes(points, directions.reshape(n, k, *shape), np.full(n, step), extra=extra, info=info)


#: The most first-layer gradient values (units times input values) the lines are aimed with: each
#: candidate holds them all (float64), so a convolution over a large image is left out (2^25 values,
#: 256 MiB; LeNet on MNIST needs 2.7 million).
MAX_SWITCH_VALUES = 1 << 25

def filter_size(gradients: np.ndarray) -> int | None:
    """How many input values a first layer's filters see (the median over its units), when its units
    are a few filters shared across positions (a convolution: at most half as many distinct sets of
    non-zero weights as units), from their gradients ``(P, d)``; ``None`` otherwise (a fully connected
    layer, pruned or not: its lines are dense, :func:`local_support` is for a convolution's). Random
    3x3 filters over one channel (9 values) already match some filter of an independent network at a
    cosine of 0.57-0.76 (LeNet's 5x5: 0.27-0.49; ``python benchmarks/conv_geometry.py``): too little
    orientation for the stage to tell copies by.

    >>> dense, conv = np.random.default_rng(0).normal(size=(4, 64)), np.zeros((4, 64))
    >>> for i in range(4): conv[i, i:i + 25] = np.arange(1.0, 26.0)  # one filter at four positions
    >>> filter_size(dense), filter_size(conv)
    (None, 25)
    """
    flat = np.asarray(gradients, dtype=np.float64)
    scale = np.maximum(np.abs(flat).max(axis=1, keepdims=True), 1e-300)
    seen = np.abs(flat) > 1e-12 * scale
    kinds = {tuple(np.round(np.sort(row[mask] / top), 9)) for row, mask, top in zip(flat, seen, scale[:, 0])}
    if len(kinds) > 0.5 * len(flat):
        return None
    return int(np.median(seen.sum(axis=1)))


def local_support(normal: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """Where a convolution's unit's ``normal`` (flattened, for inputs of ``shape``) is non-zero (its
    filter at one position), widened by whole positions along the input's last axes (all channels)
    until it holds more than ``k`` values (the ``k`` measured directions lie in it).

    >>> normal = np.zeros((1, 8, 8)); normal[0, 2:5, 2:5] = 1.0  # a 3 x 3 filter
    >>> [int(local_support(normal.reshape(-1), (1, 8, 8), k).sum()) for k in (4, 16)]
    [9, 25]
    """
    flat = np.abs(np.asarray(normal, dtype=np.float64).reshape(-1))
    support = flat > 1e-12 * max(float(flat.max()), 1e-300)
    grid = support.reshape(shape) if len(shape) >= 2 else support.reshape(1, -1)
    grid = np.broadcast_to(grid.any(axis=0, keepdims=True), grid.shape).copy()  # every channel at a position
    while int(grid.sum()) < min(k + 1, grid.size):
        for axis in range(1, grid.ndim):  # one position more each way along each axis in turn: a square
            before = grid.copy()
            grid[tuple(slice(1, None) if a == axis else slice(None) for a in range(grid.ndim))] |= \
                before[tuple(slice(None, -1) if a == axis else slice(None) for a in range(grid.ndim))]
            grid[tuple(slice(None, -1) if a == axis else slice(None) for a in range(grid.ndim))] |= \
                before[tuple(slice(1, None) if a == axis else slice(None) for a in range(grid.ndim))]
    return grid.reshape(-1)


def _rough_jump(module: torch.nn.Module, crossing: np.ndarray, normal: np.ndarray, line: np.ndarray, tiny: float,
                shape: tuple[int, ...]) -> float:
    """The relative jump of the owner's derivative along ``line`` across its unit's hyperplane at
    ``crossing``, from four forward passes (differences of ``tiny / 2`` just either side): what
    the exact test measures from the two linearisations, a screen before them."""
    import torch

    half = 0.5 * tiny
    rows = np.stack([crossing + tiny * normal, crossing + tiny * normal + half * line,
                     crossing - tiny * normal, crossing - tiny * normal - half * line])
    dtype = next((p.dtype for p in module.parameters()), torch.float64)
    with torch.no_grad():
        out = module(torch.as_tensor(rows.reshape(4, *shape), dtype=dtype)).reshape(4, -1).double().numpy()
    above, below = (out[1] - out[0]) / half, (out[2] - out[3]) / half
    size = max(float(np.linalg.norm(above)), float(np.linalg.norm(below)), 1e-300)
    return float(np.linalg.norm(above - below)) / size


def _orthogonal_unit(vector: np.ndarray, *against: np.ndarray) -> np.ndarray:
    """``vector`` made orthogonal to the unit vectors ``against`` (Gram-Schmidt), then unit length."""
    v = np.asarray(vector, dtype=np.float64).copy()
    for u in against:
        v -= (v @ u) * u
    return v / np.linalg.norm(v)
