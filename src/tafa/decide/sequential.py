"""Stopping a stage once its threshold is out of reach (futility), so that a suspect the stage will
not judge derived costs fewer queries.

A stage whose score is the mean over its probes of a per-probe value (the boundary geometry:
the mean over its lines of each kink's ``|cosine|`` with the owner's, :mod:`tafa.signature.kinks`)
can be measured a few probes at a time (:data:`LOOK` per look). After each look the stage's
final mean over all ``N`` probes is still unknown, but the ``n`` values measured so far say how
far it can plausibly go: the rest's mean is predicted by the mean so far, ``m``, give or take
:data:`KAPPA` standard errors of that prediction (the values' spread ``s``),

    ``reach = m + (N - n) / N * KAPPA * s * sqrt(1 / n + 1 / (N - n))``,

and when ``reach`` is at or below the stage's threshold the measurement stops: the stage does not
fire. Stopping only ever turns a "derived" into a "not derived" (never the reverse), so the
rule's false-positive bound holds as it is, whatever the values do; what it may cost is a copy
the whole measurement would have caught, which the benchmark counts (docs/method.md, "The
second stage stops when out of reach").

>>> round(reach(np.array([0.2, 0.3, 0.1, 0.2]), 29), 4)  # 4 of 29 lines, mean 0.2
0.2758
>>> round(reach(np.array([0.9, 0.8, 0.95, 0.85]), 29), 4)
0.9349
>>> looks(29), looks(3)
([4, 8, 12, 16, 20, 24, 28, 29], [3])
>>> out_of_reach(np.array([0.2, 0.3, 0.1, 0.2]), 29, threshold=0.5), out_of_reach(np.ones(4), 29, threshold=0.5)
(True, False)
>>> len(measured_part(np.full(29, 0.2) + np.arange(29) % 3 * 0.1, 0.5)), len(measured_part(np.full(29, 0.9), 0.5))
(4, 29)
"""

from __future__ import annotations

import math

import numpy as np

#: Probes measured per look.
LOOK = 4

#: Standard errors of the prediction above the mean so far that the rest may still bring. Measured
#: on the benchmark's seven zoos with a geometry stage (``python benchmarks/second_stage_cost.py
#: --looks 1 1.5 2``): before the stage checked the owner's crossings, 1 lost a copy the whole stage
#: catches (a decoder fine-tuned from the parent) and 1.5 and 2 none; with them, none at any of the
#: three. At 2 the stage measures 0.37-0.73 of its lines on the independent models it runs on.
KAPPA = 2.0


def looks(total: int, look: int = LOOK) -> list[int]:
    """How many probes have been measured at each look: every ``look`` of them, then all."""
    return sorted({*range(look, total, look), total})


def reach(values: np.ndarray, total: int, kappa: float = KAPPA) -> float:
    """How high the mean over ``total`` values can plausibly go, from the first ``len(values)`` of
    them (see module doc); their mean itself when all are known."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n >= total:
        return float(values.mean())
    spread = float(values.std(ddof=1)) if n > 1 else math.inf
    rest = total - n
    return float(values.mean() + rest / total * kappa * spread * math.sqrt(1.0 / n + 1.0 / rest))


def out_of_reach(values: np.ndarray, total: int, threshold: float, kappa: float = KAPPA) -> bool:
    """Whether the mean over ``total`` values can no longer plausibly exceed ``threshold``, from
    the first ``len(values)`` of them."""
    return len(values) < total and reach(values, total, kappa) <= threshold


def measured_part(values: np.ndarray, threshold: float, kappa: float = KAPPA) -> np.ndarray:
    """Of per-probe ``values`` all known (a reference's, a benchmark row's), the first ones a stage
    measured a look at a time measures before ``threshold`` is out of reach (all of them when it
    never is): what ``tafa verify`` would have measured of them."""
    values = np.asarray(values, dtype=np.float64)
    for upto in looks(len(values)):
        if out_of_reach(values[:upto], len(values), threshold, kappa):
            return values[:upto]
    return values
