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
    signs = np.where(lin.switch_values[keep] > 0, 1.0, -1.0)
    unit = lin.switch_jacobian[keep] / norms[keep, None]
    dist = np.abs(lin.switch_values[keep]) / norms[keep]
    return signs[:, None] * unit, dist


def _solve(oriented: np.ndarray, dist: np.ndarray, flat: np.ndarray, low: np.ndarray, high: np.ndarray,
           delta: float, move: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """LP over ``[t; r]``: ``oriented`` (P x q) in the move's coordinates, ``x = x0 + move @ t``
    (``move`` None: ``t`` is the full-space move). Returns ``[move @ t; r]``."""
    d = flat.size
    q = oriented.shape[1]
    ones_region, ones_box = np.ones((len(dist), 1)), np.ones((d, 1))
    region = np.hstack([-oriented, ones_region])
    if move is None:
        a_ub = np.vstack([region, np.hstack([np.eye(d), ones_box]), np.hstack([-np.eye(d), ones_box])])
        b_ub = np.concatenate([dist, high - flat, flat - low])
        bounds = [*zip(np.maximum(low - flat, -delta), np.minimum(high - flat, delta)), (0, None)]
    else:
        zeros = np.zeros((d, 1))
        a_ub = np.vstack([region, np.hstack([move, ones_box]), np.hstack([-move, ones_box]),
                          np.hstack([move, zeros]), np.hstack([-move, zeros])])
        b_ub = np.concatenate([dist, high - flat, flat - low, np.full(2 * d, delta)])
        bounds = [(None, None)] * q + [(0, None)]
    cost = np.zeros(q + 1)
    cost[-1] = -1.0
    from scipy.optimize import linprog  # imported here: verifying a suspect never solves an LP

    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status != 0 or result.x is None:
        return None
    t = result.x[:-1]
    return np.concatenate([t if move is None else move @ t, result.x[-1:]]), t


def chebyshev_centre(lin: Linearisation, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     delta: float, move: np.ndarray | None = None, max_rounds: int = 20) -> Centre:
    """Centre of the largest ball in (region at ``x0``) x (domain box) x (``delta``-box around ``x0``).

    ``move`` (d x q, orthonormal columns) is the basis ``lin`` was taken in (see
    :func:`~tafa.relu.linearise.linearise`): the point then moves within ``x0 + span(move)``
    and the ball is the largest within that slice of the region, which is what steps along
    directions in the span need; the LP has ``q + 1`` variables. Solved by constraint
    generation: the LP starts with the switches nearest to ``x0`` and adds every violated
    one until none is left, so the answer is the exact optimum while the matrices stay small
    even with thousands of switches.
    """
    flat, low, high = x0.ravel(), lo.ravel(), hi.ravel()
    oriented, dist = _active(lin)
    chunk = max(4 * oriented.shape[1], 256)
    working = np.argsort(dist)[:chunk]
    for _ in range(max_rounds):
        solved = _solve(oriented[working], dist[working], flat, low, high, delta, move)
        if solved is None:
            break
        solution, t = solved
        y, radius = solution[:-1], float(solution[-1])
        slack = dist + oriented @ t - radius
        violated = np.flatnonzero(slack < -1e-9 * max(1.0, radius))
        if violated.size == 0:
            return Centre((flat + y).reshape(x0.shape), radius, "lp")
        violated = violated[np.argsort(slack[violated])][:chunk]
        working = np.union1d(working, violated)
    box = np.concatenate([high - flat, flat - low])
    return Centre(x0.copy(), float(max(0.0, min(dist.min(initial=np.inf), box.min()))), "none")


def centre(lin: Linearisation, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, delta: float,
           move: np.ndarray | None = None) -> Centre:
    """The Chebyshev centre of ``x0``'s region within the domain and ``delta`` (see module doc)."""
    return chebyshev_centre(lin, x0, lo, hi, delta, move)
