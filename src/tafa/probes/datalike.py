"""Data-like probes: inputs in the style of real data, made from the domain alone.

The first stage's region-centred probes are dense: every feature has a value no image or table
row would carry. A pirate who has read the method can serve a copy to inputs that look like its
users' data and another model to the rest, and can blend the two continuously
(:class:`~tafa.attacks.evasion.BlendingRouter`), so that the evasion check finds no jump to flag. Such a
router must pass its users' inputs to the copy; these probes look like them on what a router can
key on without a model of the data: many features exactly at rest (0 where the domain holds 0,
else its lower bound: a blank pixel, a table's mean), the others on a grid of :data:`LEVELS` steps
of the domain's range, strictly inside it. Points come in groups of ``group`` that share which
features are not at rest and ``k`` orthonormal directions moving those features alone, by a step of
``step`` times the domain's width: a central difference keeps every feature at rest exactly there,
every other inside the domain, and moves it off its grid by far less than a grid step. The
derivative signature at these points is the data-like stage (``tafa-datalike``,
:attr:`~tafa.scheme.Scheme.data_style`).

No owner analysis: the points depend on the domain and the seed alone.

>>> from tafa.domain import Box
>>> probes = DataLikeProbes().select(None, Box((16,), 0, 1), n=16, k=2, seed=0)  # the owner is not read
>>> probes.points.shape, probes.directions.shape, probes.info["strategy"]
((16, 16), (16, 2, 16), 'data-like')
>>> at_rest = np.broadcast_to((probes.points == 0)[:, None], probes.directions.shape)
>>> bool(np.all(probes.directions[at_rest] == 0))  # features at rest stay there
True
>>> bool(np.all((probes.points == 0) | (probes.points * 16 % 1 == 0)))
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..domain import Domain, bounds_and_rest
from ..errors import check_param
from ..models.base import Model
from .base import ProbeStrategy, Probes, direction_groups, register_probes

if TYPE_CHECKING:
    from ..references import References

#: Steps of the domain's range a feature not at rest is put on (digit pixels are k/16).
LEVELS = 16


@register_probes("data-like")
class DataLikeProbes(ProbeStrategy):
    """``n`` data-like points in groups of ``group`` (module doc), ``k`` orthonormal directions per
    group on the features its points do not keep at rest, step ``step`` times the domain's width.
    ``active``: the range of the fraction of features not at rest, drawn per group."""

    def __init__(self, step: float = 1e-4, group: int = 8, active: tuple[float, float] = (0.2, 0.5)) -> None:
        check_param("step", step, "a number in (0, 0.01]", 0 < float(step) <= 0.01, caller="DataLikeProbes")
        check_param("group", group, "an integer >= 2", isinstance(group, int) and group >= 2, caller="DataLikeProbes")
        low, high = (float(a) for a in active)
        check_param("active", active, "a pair 0 < low <= high <= 1", 0 < low <= high <= 1, caller="DataLikeProbes")
        self.step, self.group, self.active = float(step), group, (low, high)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        lo, hi, rest = bounds_and_rest(domain)
        features = lo.size
        groups = direction_groups(n, self.group)
        points = np.empty((n, features))
        directions = np.zeros((n, k, features))
        for label in range(int(groups.max()) + 1):
            members = np.flatnonzero(groups == label)
            active = rng.random(features) < rng.uniform(*self.active)
            if active.sum() < max(k, 1):  # room for k directions
                active[rng.choice(features, size=max(k, 1), replace=False)] = True
            levels = rng.integers(1, LEVELS, size=(len(members), features))  # strictly inside the range
            # never at rest (a Gaussian's mean is on the grid): one level towards the middle
            levels += (lo + levels * (hi - lo) / LEVELS == rest) * np.where(levels < LEVELS // 2, 1, -1)
            points[members] = np.where(active, lo + levels * (hi - lo) / LEVELS, rest)
            if k:
                q, _ = np.linalg.qr(rng.normal(size=(int(active.sum()), k)))
                directions[np.ix_(members, np.arange(k), np.flatnonzero(active))] = q.T[None]
        info = {"strategy": "data-like", "analysis": "none", "levels": LEVELS}
        points = points.reshape(n, *domain.shape)
        if k == 0:
            return Probes(points, info=info)
        return Probes(points, directions.reshape(n, k, *domain.shape), np.full(n, self.step * domain.scale()),
                      extra={"group": groups.astype(float)}, info=info)
