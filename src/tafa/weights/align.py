"""Aligning the hidden units of two networks, up to permutation and positive scale.

Permuting a layer's hidden units (and the next layer's inputs alike) or multiplying a ReLU
unit's incoming weights by ``c > 0`` and its outgoing weights by ``1 / c`` changes a network's
weights but not its function (:mod:`tafa.attacks.obfuscation` does both). Both are undone
here: the units of the first layer are matched one to one by the Hungarian assignment
(:func:`assignment`, what :func:`scipy.optimize.linear_sum_assignment` solves) on the cosine
of their weight vectors, which
ignores scale; each matched pair's norm ratio estimates the scale. The next layer's incoming
weights are then carried into the owner's unit order and scale, and its units are matched the
same way, and so on while the layers fit (same kind, fan-in laid over the previous layer's
units in blocks of the same size). Unit counts may differ (structured pruning removes units):
the assignment then matches ``min(owner, suspect)`` pairs.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> owner = rng.normal(size=(6, 4))
>>> order = rng.permutation(6)
>>> matching = match_units(owner, 2.5 * owner[order])
>>> bool(np.all(matching.owner == order[matching.suspect])), bool(np.allclose(matching.cosines, 1))
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import UnitLayer

#: Largest side solved by :func:`assignment`'s own solver; larger matrices go to scipy's
#: (imported only then: ``tafa verify`` of a small model imports no scipy).
OWN_SOLVER_LIMIT = 512


@dataclass(frozen=True)
class Matching:
    """Pairs of matched units: ``suspect[i]`` is matched to ``owner[i]`` with cosine
    ``cosines[i]``; ``scales[i]`` is the suspect unit's norm over the owner unit's."""

    suspect: np.ndarray
    owner: np.ndarray
    cosines: np.ndarray
    scales: np.ndarray

    def __len__(self) -> int:
        return len(self.owner)


def unit_directions(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length (zero rows stay zero) and their norms."""
    norms = np.linalg.norm(vectors, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return vectors / safe[:, None], norms


def cosine_matrix(owner: np.ndarray, suspect: np.ndarray) -> np.ndarray:
    """``(suspect units, owner units)`` cosines of the rows of two unit matrices."""
    return unit_directions(suspect)[0] @ unit_directions(owner)[0].T


def match_units(owner: np.ndarray, suspect: np.ndarray) -> Matching:
    """The one-to-one matching of ``suspect``'s rows to ``owner``'s that maximises the sum of
    their cosines (rectangular when the counts differ). Zero rows (units pruned away) take no
    part: their cosines would all tie, and the assignment would break the ties by index."""
    live_suspect = np.flatnonzero(np.linalg.norm(suspect, axis=1) > 0)
    live_owner = np.flatnonzero(np.linalg.norm(owner, axis=1) > 0)
    cosines = cosine_matrix(owner[live_owner], suspect[live_suspect])
    rows, cols = assignment(cosines)
    suspect_rows, owner_rows = live_suspect[rows], live_owner[cols]
    scales = np.linalg.norm(suspect[suspect_rows], axis=1) / np.linalg.norm(owner[owner_rows], axis=1)
    return Matching(suspect_rows, owner_rows, cosines[rows, cols], scales)


def assignment(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the one-to-one matching that maximises the sum of ``scores`` (as
    :func:`scipy.optimize.linear_sum_assignment` with ``maximize=True``): the shortest
    augmenting path method, one row at a time, with numpy over the columns; rows sorted."""
    if scores.shape[0] > scores.shape[1]:
        cols, rows = assignment(scores.T)
        order = np.argsort(rows)
        return rows[order], cols[order]
    if max(scores.shape) > OWN_SOLVER_LIMIT:
        from scipy.optimize import linear_sum_assignment

        found = linear_sum_assignment(scores, maximize=True)
        return np.asarray(found[0]), np.asarray(found[1])
    cost = -np.asarray(scores, dtype=np.float64)
    n, m = cost.shape
    row_dual, col_dual = np.zeros(n), np.zeros(m)
    col_of_row, row_of_col = np.full(n, -1), np.full(m, -1)
    for start in range(n):
        shortest, path = np.full(m, np.inf), np.full(m, -1)
        reached = np.zeros(m, dtype=bool)
        visited, row, low, sink = [start], start, 0.0, -1
        while sink < 0:
            reduced = low + cost[row] - row_dual[row] - col_dual
            closer = ~reached & (reduced < shortest)
            path[closer], shortest[closer] = row, reduced[closer]
            open_lengths = np.where(reached, np.inf, shortest)
            low = float(open_lengths.min())
            ties = np.flatnonzero(open_lengths == low)
            free = ties[row_of_col[ties] < 0]
            col = int(free[0]) if len(free) else int(ties[0])
            reached[col] = True
            if row_of_col[col] < 0:
                sink = col
            else:
                row = int(row_of_col[col])
                visited.append(row)
        row_dual[start] += low
        for other in visited[1:]:
            row_dual[other] += low - shortest[col_of_row[other]]
        col_dual[reached] -= low - shortest[reached]
        col = sink
        while True:  # flip the augmenting path
            row = int(path[col])
            row_of_col[col] = row
            col_of_row[row], col = col, col_of_row[row]
            if row == start:
                break
    return np.arange(n), col_of_row


def blocks(layer: UnitLayer, previous: UnitLayer) -> int | None:
    """How many consecutive fan-in columns of ``layer`` each unit of ``previous`` feeds (1 for a
    Linear after a Linear, kernel positions for a convolution after a convolution, spatial
    positions for a Linear after a flattened convolution), or ``None`` if they do not fit."""
    if layer.kind == "conv":
        if previous.kind != "conv" or layer.inputs != previous.units or layer.fan_in % layer.inputs:
            return None
        return layer.fan_in // layer.inputs
    if layer.fan_in % previous.units:
        return None
    return layer.fan_in // previous.units


def carry(layer: UnitLayer, matching: Matching, owner_units: int, size: int) -> np.ndarray:
    """``layer``'s unit matrix (a suspect's) with its fan-in moved into the owner's unit order
    and scale: the block of suspect unit ``matching.suspect[i]`` goes where owner unit
    ``matching.owner[i]``'s block is, multiplied by the estimated scale (the outgoing weights of
    a unit scaled by ``c`` were divided by ``c``). Unmatched owner units get zero columns."""
    fan_in = layer.vectors[:, :-1].reshape(layer.units, -1, size)
    moved = np.zeros((layer.units, owner_units, size))
    moved[:, matching.owner, :] = fan_in[:, matching.suspect, :] * matching.scales[None, :, None]
    return np.concatenate([moved.reshape(layer.units, -1), layer.vectors[:, -1:]], axis=1)


def align(owner: list[UnitLayer], suspect: list[UnitLayer]) -> list[Matching]:
    """Matchings of consecutive layers from the first, as far as the two networks fit: the
    first layers must have the same kind and fan-in (else the list is empty: the networks do
    not read their inputs alike); each further layer must fit its predecessor in both."""
    matchings: list[Matching] = []
    if not owner or not suspect:
        return matchings
    first_owner, first_suspect = owner[0], suspect[0]
    if (first_owner.kind, first_owner.inputs, first_owner.fan_in) != (first_suspect.kind, first_suspect.inputs,
                                                                      first_suspect.fan_in):
        return matchings
    matchings.append(match_units(first_owner.vectors, first_suspect.vectors))
    for depth in range(1, min(len(owner), len(suspect))):
        o, s = owner[depth], suspect[depth]
        size = blocks(o, owner[depth - 1])
        if o.kind != s.kind or size is None or blocks(s, suspect[depth - 1]) != size:
            break
        moved = carry(s, matchings[-1], owner[depth - 1].units, size)
        matchings.append(match_units(o.vectors, moved))
    return matchings
