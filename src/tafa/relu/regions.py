"""Linear regions: moving a point to the centre of its region, so small steps stay inside.

With the activation pattern at ``x0`` fixed, the region is the polytope
``{x : s_j (phi_j + G_j (x - x0)) >= 0}``. Its Chebyshev centre (the centre of the largest
inscribed ball, radius ``r``) within the domain box and within ``delta`` of ``x0`` is a
linear program, solved by scipy's HiGHS::

    maximise r  s.t.  -s_j g_j . y + r <= dist_j      (g_j = G_j / |G_j|, dist_j >= 0)
                      y_i + r <= hi_i - x0_i,  -y_i + r <= x0_i - lo_i
                      |y_i| <= delta,  r >= 0,   x = x0 + y

Networks with thousands of switches are handled by constraint generation (start from the
nearest switches, add violated ones), which keeps every LP small and the answer exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linearise import Linearisation

@dataclass
class Centre:
    """A point moved inside its linear region, and the radius of the ball around it."""

    point: np.ndarray
    radius: float
    method: str  # "lp", or "none" when the LP failed and the point was kept


def _active(lin: Linearisation) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(lin.switch_jacobian, axis=1)
    keep = norms > 1e-12
    unit = lin.switch_jacobian[keep] / norms[keep, None]
    signs = np.where(lin.switch_values[keep] > 0, 1.0, -1.0).astype(unit.dtype)
    dist = np.abs(lin.switch_values[keep]) / norms[keep]
    return signs[:, None] * unit, dist.astype(np.float64)


def _solve(oriented: np.ndarray, dist: np.ndarray, flat: np.ndarray, low: np.ndarray, high: np.ndarray,
           delta: float) -> np.ndarray | None:
    """LP over ``[y; r]`` in the full input space (``oriented`` is P x d). Returns ``[y; r]``."""
    d = flat.size
    ones_region, ones_box = np.ones((len(dist), 1)), np.ones((d, 1))
    region = np.hstack([-oriented, ones_region])
    a_ub = np.vstack([region, np.hstack([np.eye(d), ones_box]), np.hstack([-np.eye(d), ones_box])])
    b_ub = np.concatenate([dist, high - flat, flat - low])
    bounds = [*zip(np.maximum(low - flat, -delta), np.minimum(high - flat, delta)), (0, None)]
    return _linprog(a_ub, b_ub, bounds)


def _linprog(a_ub: np.ndarray, b_ub: np.ndarray, bounds: list) -> np.ndarray | None:
    cost = np.zeros(a_ub.shape[1])
    cost[-1] = -1.0
    from scipy.optimize import linprog  # imported here: verifying a suspect never solves an LP

    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status != 0 or result.x is None:
        return None
    return np.asarray(result.x)


def _centre_in_full_space(oriented: np.ndarray, dist: np.ndarray, flat: np.ndarray, low: np.ndarray,
                          high: np.ndarray, delta: float, max_rounds: int) -> tuple[np.ndarray, float] | None:
    chunk = max(4 * oriented.shape[1], 256)
    working = np.argsort(dist)[:chunk]
    for _ in range(max_rounds):
        solution = _solve(oriented[working], dist[working], flat, low, high, delta)
        if solution is None:
            return None
        y, radius = solution[:-1], float(solution[-1])
        slack = dist + oriented @ y - radius
        violated = np.flatnonzero(slack < -1e-9 * max(1.0, radius))
        if violated.size == 0:
            return y, radius
        violated = violated[np.argsort(slack[violated])][:chunk]
        working = np.union1d(working, violated)
    return None


def _centre_in_slice(lin: Linearisation, flat: np.ndarray, low: np.ndarray, high: np.ndarray, delta: float,
                     move: np.ndarray, max_rounds: int) -> tuple[np.ndarray, float] | None:
    """The LP over ``[t; r]`` with ``x = x0 + move @ t``, every family of rows generated.

    Rows: region ``-o_j . t + r <= dist_j``; domain ``+-(move_i . t) + r <= hi_i - x0_i`` or
    ``x0_i - lo_i``; move ``+-(move_i . t) <= delta``. In the slice the domain and move rows
    are 4 d dense rows of q entries (for d = 150,528 inputs, 600,000 rows), so they are
    generated like the region's: the LP starts with the nearest switches and the nearest
    domain faces, and adds the most violated rows of each family until none is violated:
    the optimum is the exact one. Implied bounds keep every intermediate LP bounded:
    ``|t_j| <= ||y||_2 <= sqrt(d) delta`` (orthonormal columns) and ``2 r <= min(hi - lo)``.
    """
    d, q = move.shape
    jacobian = lin.switch_jacobian
    # no P x q temporaries: oriented_j = scale_j G_j, built only for the rows in use
    norms = np.sqrt(np.einsum("ij,ij->i", jacobian, jacobian, dtype=np.float64))
    live = norms > 1e-12
    safe = np.where(live, norms, 1.0)
    scale = np.where(live, np.where(lin.switch_values > 0, 1.0, -1.0) / safe, 0.0)
    dist = np.where(live, np.abs(lin.switch_values) / safe, np.inf)
    chunk = max(4 * q, 256)
    to_high, to_low = high - flat, flat - low
    ones = np.ones((d, 1))
    zeros = np.zeros((d, 1))
    families = [  # (rows of [t, r], right-hand sides), built lazily from the indices in use
        (lambda idx: np.hstack([-scale[idx, None] * jacobian[idx], np.ones((len(idx), 1))]), dist),
        (lambda idx: np.hstack([move[idx], ones[idx]]), to_high),
        (lambda idx: np.hstack([-move[idx], ones[idx]]), to_low),
        (lambda idx: np.hstack([move[idx], zeros[idx]]), np.full(d, delta)),
        (lambda idx: np.hstack([-move[idx], zeros[idx]]), np.full(d, delta)),
    ]
    start = max(q, 16)
    working = [_nearest(dist, chunk), _nearest(to_high, start), _nearest(to_low, start),
               np.zeros(0, dtype=int), np.zeros(0, dtype=int)]
    t_bound = float(np.sqrt(d) * delta)
    bounds = [(-t_bound, t_bound)] * q + [(0, max(0.0, 0.5 * float((high - low).min())))]
    for _ in range(max_rounds):
        a_ub = np.vstack([rows(idx) for (rows, _), idx in zip(families, working)])
        b_ub = np.concatenate([rhs[idx] for (_, rhs), idx in zip(families, working)])
        solution = _linprog(a_ub, b_ub, bounds)
        if solution is None:
            return None
        t, radius = solution[:-1], float(solution[-1])
        y = move @ t
        slacks = [dist + scale * (jacobian @ t.astype(jacobian.dtype)) - radius, to_high - y - radius,
                  to_low + y - radius, delta - y, delta + y]
        added = False
        for index, slack in enumerate(slacks):
            violated = np.flatnonzero(slack < -1e-9 * max(1.0, radius, delta))
            violated = np.setdiff1d(violated, working[index])
            if violated.size:
                violated = violated[np.argsort(slack[violated])][:chunk]
                working[index] = np.union1d(working[index], violated)
                added = True
        if not added:
            return y, radius
    return None


def _nearest(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` smallest ``values``, in increasing order."""
    if count < values.size:
        part = np.argpartition(values, count)[:count]
        return part[np.argsort(values[part])]
    return np.argsort(values)


def chebyshev_centre(lin: Linearisation, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     delta: float, move: np.ndarray | None = None, max_rounds: int = 20) -> Centre:
    """Centre of the largest ball in (region at ``x0``) x (domain box) x (``delta``-box around ``x0``).

    ``move`` (d x q, orthonormal columns) is the basis ``lin`` was taken in (see
    :func:`~tafa.relu.linearise.linearise`): the point then moves within ``x0 + span(move)``
    and the ball is the largest within that slice of the region, which is what steps along
    directions in the span need; the LP has ``q + 1`` variables. Solved by constraint
    generation: the LP starts with the switches nearest to ``x0`` (and, in a slice, the
    nearest faces of the domain) and adds every violated row until none is left, so the
    answer is the exact optimum while the matrices stay small even with thousands of
    switches and inputs.
    """
    flat, low, high = x0.ravel(), lo.ravel(), hi.ravel()
    if move is None:
        oriented, dist = _active(lin)
        solved = _centre_in_full_space(oriented, dist, flat, low, high, delta, max_rounds)
    else:
        solved = _centre_in_slice(lin, flat, low, high, delta, np.asarray(move, dtype=np.float64), 2 * max_rounds)
    if solved is not None:
        y, radius = solved
        return Centre((flat + y).reshape(x0.shape), radius, "lp")
    return Centre(x0.copy(), slice_radius(lin, x0, lo, hi), "none")


def slice_radius(lin: Linearisation, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Without a linear program: the distance from ``x0`` to the nearest switch within the
    slice ``lin`` was taken in, and to the domain's faces (a lower bound on the radius)."""
    flat = x0.ravel()
    box = np.concatenate([hi.ravel() - flat, flat - lo.ravel()])
    return float(max(0.0, min(lin.radius(), box.min())))


def centre(lin: Linearisation, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, delta: float,
           move: np.ndarray | None = None) -> Centre:
    """The Chebyshev centre of ``x0``'s region within the domain and ``delta`` (see module doc)."""
    return chebyshev_centre(lin, x0, lo, hi, delta, move)
