"""SAC-m's CutMix samples (Guan, Liang, He, "Are You Stealing My Model? Sample Correlation
for Fingerprinting Deep Neural Networks", NeurIPS 2022).

Each sample is one of the owner's inputs (``data``; draws from the domain when no data is
given) with a rectangle pasted in from another of them, at the same place (CutMix, Yun et
al. 2019). No model is consulted: the probes depend on the data and the seed only.

Defaults and where they come from (the authors' code, github.com/guanjiyang/SAC,
``cut_mix.py`` and ``correlation_wrong.py``):

- 100 samples (100 queries per verification): one batch of 100 test images.
- The rectangle's sides are a fixed ``cut = 0.2`` of the image's height and width (the
  code fixes the cut ratio instead of drawing it from CutMix's Beta distribution), and
  at least one pixel.
- Placement: the authors' script keeps the rectangle's centre in the outer sixth of
  both axes (near a corner); on digits and MNIST the corners are blank in almost every
  image, so pasting there changes nothing. The default is therefore CutMix's own
  uniform placement; ``corners=True`` restores the script's rule. Each sample gets its
  own rectangle and partner (the script uses one rectangle per batch).

For an input of shape ``(C, H, W)`` (or ``(H, W)``) the rectangle spans the last two axes
and every channel; for a vector input it is a run of ``cut`` of the features.

>>> from tafa.domain import Box
>>> data = np.zeros((6, 1, 10, 10)); data[3:] = 1.0
>>> probes = SACmProbes().select(None, Box((1, 10, 10), 0, 1), n=4, k=0, seed=0, data=data)
>>> probes.points.shape, np.unique(probes.points).tolist(), probes.info["box"]
((4, 1, 10, 10), [0.0, 1.0], [2, 2])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..domain import Domain
from ..errors import check_param
from ..models.base import Model
from .base import ProbeStrategy, Probes, register_probes
from .base import seed_inputs

if TYPE_CHECKING:
    from ..references import References


def _span(size: int, side: int, rng: np.random.Generator, corners: bool) -> slice:
    """Where a run of ``side`` cells lies along an axis of ``size`` (centre uniform, or only in
    the outer sixths when ``corners``), clipped to the axis."""
    if corners:
        centres = [c for c in range(size) if not size / 6 < c < 5 * size / 6] or list(range(size))
        centre = int(rng.choice(centres))
    else:
        centre = int(rng.integers(size))
    start = min(max(centre - side // 2, 0), size - side)
    return slice(start, start + side)


@register_probes("sac-m")
class SACmProbes(ProbeStrategy):
    """CutMix samples of the owner's inputs (see module doc).

    ``cut``: the rectangle's side as a fraction of each spatial side; ``corners``: keep
    the rectangle near a corner, as the authors' script does.
    """

    def __init__(self, cut: float = 0.2, corners: bool = False) -> None:
        check_param("cut", cut, "a number in (0, 1]", 0 < float(cut) <= 1, caller="SACmProbes")
        self.cut = float(cut)
        self.corners = bool(corners)

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        base, source = seed_inputs(domain, n, rng, data)
        partners, _ = seed_inputs(domain, n, rng, data)
        shape = domain.shape
        spatial = shape[-2:] if len(shape) >= 2 else shape[-1:]
        sides = [max(1, round(self.cut * size)) for size in spatial]
        points = base.copy()
        for index in range(n):
            box = tuple(_span(size, side, rng, self.corners) for size, side in zip(spatial, sides))
            where: tuple[Any, ...] = (index, Ellipsis, *box)
            points[where] = partners[where]
        return Probes(points, info={"strategy": "sac-m", "analysis": "none", "source": source,
                                   "cut": self.cut, "box": sides, "corners": self.corners})
