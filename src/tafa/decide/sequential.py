"""Stopping a stage once its threshold is out of reach (futility), so that a suspect the stage will
not judge derived costs fewer queries.

A stage whose score is the mean over its probes of a per-probe value (the boundary geometry:
the mean over its lines of each kink's ``|cosine|`` with the owner's, :mod:`tafa.signature.kinks`)
can be measured a few probes at a time: the first :data:`LOOK` of them, then :data:`THEN` at a
time (:func:`stops`). After each look the stage's final mean over all ``N`` probes is still
unknown, but the ``n`` values measured so far say how far it can plausibly go: the rest's mean
is predicted by the mean so far, ``m``, give or take :data:`REACH` standard errors of that
prediction (the values' spread ``s``),

    ``reach = m + (N - n) / N * REACH * s * sqrt(1 / n + 1 / (N - n))``,

and when ``reach`` is at or below the stage's threshold the measurement stops: the stage does not
fire. Stopping only ever turns a "derived" into a "not derived" (never the reverse), so the
rule's false-positive bound holds as it is, whatever the values do; what it may cost is a copy
the whole measurement would have caught, which the benchmark counts (docs/method.md, "The
second stage stops when out of reach").

>>> round(reach(np.array([0.2, 0.3, 0.1, 0.2]), 29), 4)  # 4 of 29 lines, mean 0.2
0.2379
>>> round(reach(np.array([0.9, 0.8, 0.95, 0.85]), 29), 4)
0.905
>>> stops(29)[:5], stops(3), looks(29)
([4, 5, 6, 7, 8], [3], [4, 8, 12, 16, 20, 24, 28, 29])
>>> out_of_reach(np.array([0.2, 0.3, 0.1, 0.2]), 29, threshold=0.5), out_of_reach(np.ones(4), 29, threshold=0.5)
(True, False)
>>> len(measured_part(np.full(29, 0.2) + np.arange(29) % 3 * 0.1, 0.5)), len(measured_part(np.full(29, 0.9), 0.5))
(4, 29)

A stage whose score is the *bounded mean* (:func:`bounded_mean`, a similarity's ``aggregation``
``"bounded"``) also stops once its threshold is surely passed. Its values lie in ``[0, 1]``, and its
score is not the mean but the highest, over the looks, of the mean so far minus a wider margin
(:data:`KAPPA` standard errors) with the spread at least the widest that mean allows (``sqrt(m (1 - m))``),

    ``floor = m - (N - n) / N * KAPPA * max(s, sqrt(m (1 - m))) * sqrt(1 / n + 1 / (N - n))``

(the mean itself once all are known, so the score is never below the mean): a number computed
from the ``N`` values alone, the references' as the suspect's, so a threshold calibrated on the
references' scores bounds the false positives as it does for the mean. When a look's floor is
above the threshold, the score is above it whatever the rest: the stage fires and stops there.
The widest spread is needed because a stage's lines are not exchangeable: with the few values'
own spread, an independent diabetes regressor whose first four lines read 0.64, 0.67, 0.62 and
0.66 (its mean over all 29: 0.42) scored 0.62, above every reference, and the stage's false
positives at alpha 0.01 rose from none to a fifth of the zoo's independents (docs/method.md,
"Stopping once passed").

>>> values = np.array([0.9, 0.8, 0.95, 0.85] + [0.9] * 25)
>>> round(floor(values[:4], 29), 4), round(bounded_mean(values), 4), round(float(values.mean()), 4)
(0.5679, 0.8966, 0.8966)
>>> len(measured_part(values, 0.5, bounded=True)), len(measured_part(values, 0.5))
(4, 29)
"""

from __future__ import annotations

import math

import numpy as np

#: Probes measured before a stage is first looked at (the spread of fewer says little).
LOOK = 4

#: Probes measured per look after the first (:func:`stops`). Measured beside :data:`REACH` (``python
#: benchmarks/second_stage_cost.py --looks 1 --then 4 2 1``, session 24): looking after every line
#: loses no copy on the seven zoos with a geometry stage, and measures 0.22-0.41 of the lines on
#: their independents at alpha 0.05 where every 4 lines measured 0.28-0.51. A bounded mean's
#: statistic keeps its looks every :data:`LOOK` probes (:func:`looks`).
THEN = 1

#: Standard errors of the prediction above the mean so far that the rest may still bring, before a
#: stage is stopped as out of reach. Measured on the benchmark's seven zoos with a geometry stage
#: (``python benchmarks/second_stage_cost.py --looks 0.5 1 1.5 2``, session 24): 0.5 loses a copy
#: the whole stage catches (a Friedman regressor fine-tuned from the shared parent), 1, 1.5 and 2
#: none; the stage measures 0.28-0.51 of its lines on the independent models it runs on at 1,
#: 0.39-0.72 at 2 (the value until session 24). Stopping never fires, so this moves no false
#: positive, only the copies the benchmark counts: at the benchmark's own thresholds, looked at
#: after every line, one copy keeping 41% of the owner's utility, at alpha 0.01 (``python
#: benchmarks/stop_replay.py RESULTS``; docs/method.md, "Looked at after every line").
REACH = 1.0

#: Standard errors below the mean so far of a bounded mean's floor (:func:`floor`): a stage scored
#: by it fires on the floor, so the margin is part of its statistic and stays wide (the first
#: looks' lines are not exchangeable with the rest; see module doc).
KAPPA = 2.0


def looks(total: int, look: int = LOOK) -> list[int]:
    """How many probes have been measured at each look of a bounded mean (:func:`bounded_mean`):
    every ``look`` of them, then all."""
    return sorted({*range(look, total, look), total})


def stops(total: int, first: int = LOOK, then: int = THEN) -> list[int]:
    """How many probes have been measured at each look of a stage that may stop: ``first``, then
    every ``then`` more, then all."""
    return sorted({*range(first, total, then), total})


def margin(values: np.ndarray, total: int, kappa: float = REACH, widest: bool = False) -> float:
    """How far the mean over ``total`` values can plausibly be from the mean of the first
    ``len(values)`` of them (see module doc); 0 when all are known. ``widest``: values in
    ``[0, 1]`` whose spread is taken as at least the widest their mean ``m`` allows,
    ``sqrt(m (1 - m))``, not the few values' own."""
    n = len(values)
    if n >= total:
        return 0.0
    spread = float(np.std(values, ddof=1)) if n > 1 else math.inf
    if widest:
        mean = float(np.mean(values))
        spread = max(spread, math.sqrt(max(mean * (1.0 - mean), 0.0)))
    rest = total - n
    return rest / total * kappa * spread * math.sqrt(1.0 / n + 1.0 / rest)


def reach(values: np.ndarray, total: int, kappa: float = REACH) -> float:
    """How high the mean over ``total`` values can plausibly go, from the first ``len(values)`` of
    them (see module doc); their mean itself when all are known."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) + margin(values, total, kappa)


def floor(values: np.ndarray, total: int, kappa: float = KAPPA) -> float:
    """How low the mean over ``total`` values in ``[0, 1]`` can plausibly go, from the first
    ``len(values)`` of them, their spread at least the widest their mean allows (see module doc);
    their mean itself when all are known."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) - margin(values, total, kappa, widest=True)


def bounded_mean(values: np.ndarray, total: int | None = None, look: int = LOOK, kappa: float = KAPPA) -> float:
    """The highest :func:`floor` over the looks made of the first ``len(values)`` of ``total``
    values (all of them by default, when it is at least their mean): the score of a stage that
    also stops once its threshold is surely passed (see module doc)."""
    values = np.asarray(values, dtype=np.float64)
    total = len(values) if total is None else total
    return max(floor(values[:n], total, kappa) for n in looks(total, look) if n <= len(values))


def out_of_reach(values: np.ndarray, total: int, threshold: float, kappa: float = REACH) -> bool:
    """Whether the mean over ``total`` values can no longer plausibly exceed ``threshold``, from
    the first ``len(values)`` of them."""
    return len(values) < total and reach(values, total, kappa) <= threshold


def passed(values: np.ndarray, total: int, threshold: float, kappa: float = KAPPA) -> bool:
    """Whether the :func:`bounded_mean` over ``total`` values is above ``threshold`` whatever the
    rest, from the first ``len(values)`` of them."""
    return bounded_mean(values, total, kappa=kappa) > threshold


def measured_part(values: np.ndarray, threshold: float, kappa: float = REACH, bounded: bool = False,
                  then: int = THEN, first: int = LOOK) -> np.ndarray:
    """Of per-probe ``values`` all known (a reference's, a benchmark row's), the first ones a stage
    measured a look at a time measures before ``threshold`` is out of reach (at ``kappa``), or
    (``bounded``: a stage scored by :func:`bounded_mean`) surely passed (all of them when neither
    happens), looked at as :func:`stops` says (``first``: probes at the first look; ``then``: per
    look after it): what ``tafa verify`` would have measured of them."""
    values = np.asarray(values, dtype=np.float64)
    for upto in stops(len(values), first, then):
        if out_of_reach(values[:upto], len(values), threshold, kappa) or (
                bounded and passed(values[:upto], len(values), threshold)):
            return values[:upto]
    return values


def stopped_score(values: np.ndarray, total: int, bounded: bool = False) -> float:
    """The score of a stage stopped after the first ``len(values)`` of its ``total`` values: their
    mean, or (``bounded``) their :func:`bounded_mean` so far."""
    return bounded_mean(values, total) if bounded else float(np.mean(values))
