"""Kinks near the owner's boundary crossings, located and measured from outputs only.

Along a line ``x(t) = p + t u`` a piecewise-linear network is piecewise linear in ``t``: its
derivative along ``u`` is constant between kinks and changes where the line crosses a unit's
boundary. For each line of a :mod:`~tafa.probes.boundary` probe set, against any
:class:`~tafa.models.Model` (black box, outputs only):

1. **Bracket.** The derivative along ``u`` (central difference, step ``h``) is compared at
   ``t = -w`` and ``t = +w`` for ``w = 4h, 8h, ...`` up to the line's window; the first ``w``
   at which they differ (by more than ``tolerance`` of their size) brackets a kink near the
   crossing.
2. **Bisect.** The bracket is halved (the derivative at its middle says which half holds the
   change; when both do, the half nearer the crossing) until it is ``4h`` wide: the kink's
   position ``t*`` is known to ``2h``. This is how Carlini, Jagielski and Mironov (CRYPTO 2020)
   and Rolnick and Kording (ICML 2020) locate critical points from queries.
3. **Measure the jump.** At ``t* -+ delta`` (``delta`` twice the bracket, outside it) the
   derivatives along the ``K`` measured directions are taken; their difference ``J``
   (``K x m``) is, for a single unit switching, ``(v_k . w) c``: rank one, its ``K``-vector is
   the unit's normal ``w`` projected onto the directions. The derivative along ``u`` is taken
   there too: it must still equal the bracket's ends (within ``consistency`` of the jump),
   else another kink or an unstable answer was crossed and the kink counts as not found.

The signature holds, per line: ``jump`` (the unit ``K``-vector: ``J``'s leading left singular
vector, sign-free), ``found`` (1 or 0), ``position`` (``t*``) and, from white-box probes, the
owner's ``normal`` in the measured directions. At most ``budget`` queries are sent, in
batches covering every line still searched (a service sees few, large requests); lines the
budget cannot finish are not found. A suspect that answers NaN or inf, or changes its answers
from query to query, gets "not found" for the lines it spoiled, never an exception.

The queries depend on the answers (adaptive), so this measurement has no fixed input list:
:meth:`Kinks.inputs` refuses, :meth:`Kinks.queries` gives the budget's upper bound.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidParameter, NonFiniteOutput, check_param
from ..functional import central_differences, stepped_inputs
from ..models.base import Model
from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


class _Spent(Exception):
    """The suspect stopped giving usable answers (non-finite): stop measuring."""


@register_signature("kinks")
class Kinks(Measurement):
    """Locate the kink near each boundary crossing and measure its gradient jump (module doc).

    ``budget``: the most queries one measurement sends; ``tolerance``: how much (relative) two
    derivatives along the line must differ to show a kink between them; ``consistency``: how far
    (relative to the jump) the derivatives beside the located kink may stray from the bracket's.
    """

    adaptive = True

    def __init__(self, budget: int = 5000, tolerance: float = 1e-2, consistency: float = 0.25) -> None:
        check_param("budget", budget, "an integer >= 1", isinstance(budget, int) and budget >= 1, caller="Kinks")
        self.budget = budget
        self.tolerance = float(tolerance)
        self.consistency = float(consistency)

    # -- the fixed-list interface does not apply to an adaptive measurement
    def inputs(self, probes: Probes) -> np.ndarray:
        raise InvalidParameter("The 'kinks' signature chooses its queries from the suspect's answers (adaptive); "
                               "it has no fixed input list: measure a model with Kinks.measure.")

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        raise InvalidParameter("The 'kinks' signature is adaptive: measure a model with Kinks.measure.")

    def signature_shapes(self, probes: Probes, output_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        n, k = _sizes(probes)
        shapes = {"jump": (n, k), "found": (n,), "position": (n,)}
        if "normal" in probes.extra:
            shapes["normal"] = (n, k)
        return shapes

    def queries(self, probes: Probes) -> int:
        """The most queries one measurement can send (the budget, or less for few lines)."""
        n, k = _sizes(probes)
        steps, window = _line_arrays(probes)[2:]
        levels = np.ceil(np.log2(np.maximum(window / (4 * steps), 1.0))) + 1
        per_line = 4 * levels + 2 * (levels + 1) + 4 * k + 4
        return int(min(self.budget, per_line.sum()))

    # -- the measurement
    def measure(self, model: Model, probes: Probes) -> Signature:
        n, k = _sizes(probes)
        points, lines, steps, window = _line_arrays(probes)
        directions = probes.directions.reshape(n, k, -1)  # type: ignore[union-attr]
        shape = probes.points.shape[1:]
        spent = 0

        def ask(inputs: np.ndarray) -> np.ndarray:
            nonlocal spent
            spent += len(inputs)
            try:
                return model(inputs.reshape(len(inputs), *shape)).reshape(len(inputs), -1)
            except NonFiniteOutput:
                raise _Spent from None

        def affordable(index: np.ndarray, per_line: int) -> np.ndarray:
            return index[:max(0, (self.budget - spent) // per_line)]

        def slopes(index: np.ndarray, t: np.ndarray) -> np.ndarray:
            """Derivatives along the line at ``p + t u`` (central differences, step h), ``(len, m)``."""
            at = points[index] + t[:, None] * lines[index]
            answers = ask(stepped_inputs(at, lines[index][:, None], steps[index]))
            return central_differences(answers, len(index), 1, steps[index])[:, 0]

        found = np.zeros(n)
        position = np.zeros(n)
        jump = np.zeros((n, k))
        low, high = np.zeros(n), np.zeros(n)
        slope_low: np.ndarray | None = None
        slope_high: np.ndarray | None = None
        bracketed = np.zeros(n, dtype=bool)
        try:
            # 1. bracket: widen a symmetric window until the derivative differs across it
            searching = np.arange(n)
            width = 4 * steps
            while searching.size:
                searching = affordable(searching, 4)
                if not searching.size:
                    break
                w = np.minimum(width[searching], window[searching])
                left, right = slopes(searching, -w), slopes(searching, w)
                if slope_low is None:
                    m = left.shape[1]
                    slope_low, slope_high = np.zeros((n, m)), np.zeros((n, m))
                assert slope_high is not None
                change = self._differ(left, right)
                hit = searching[change]
                low[hit], high[hit] = -w[change], w[change]
                slope_low[hit], slope_high[hit] = left[change], right[change]
                bracketed[hit] = True
                done = change | (w >= window[searching])
                searching = searching[~done]
                width[searching] *= 2
            # 2. bisect each bracket down to 4 steps
            active = np.flatnonzero(bracketed & (high - low > 4 * steps))
            while active.size and slope_low is not None and slope_high is not None:
                active = affordable(active, 2)
                if not active.size:
                    break
                middle = 0.5 * (low[active] + high[active])
                s = slopes(active, middle)
                on_left = self._differ(slope_low[active], s)
                on_right = self._differ(s, slope_high[active])
                both = on_left & on_right
                # the middle's stencil straddles the kink: its derivative is a mix of the two sides
                straddle = both & _between(s, slope_low[active], slope_high[active], self.tolerance)
                both &= ~straddle
                go_left = (on_left & ~on_right) | (both & (middle > 0))
                go_right = (on_right & ~on_left) | (both & (middle <= 0))
                lost = ~(on_left | on_right)
                left_index, right_index = active[go_left], active[go_right]
                high[left_index], slope_high[left_index] = middle[go_left], s[go_left]
                low[right_index], slope_low[right_index] = middle[go_right], s[go_right]
                close = active[straddle]
                low[close], high[close] = middle[straddle] - steps[close], middle[straddle] + steps[close]
                bracketed[active[lost]] = False
                active = active[~lost]
                active = active[high[active] - low[active] > 4 * steps[active]]
            # 3. the jump across the located kink, in the K directions (and along the line, to check)
            ready = affordable(np.flatnonzero(bracketed & (high - low <= 4 * steps + 1e-15)), 4 * k + 4)
            if ready.size and slope_low is not None and slope_high is not None:
                kink = 0.5 * (low[ready] + high[ready])
                delta = 2 * (high[ready] - low[ready])
                sides = []
                for sign in (-1.0, 1.0):
                    at = points[ready] + (kink + sign * delta)[:, None] * lines[ready]
                    stencil = np.concatenate([directions[ready], lines[ready][:, None]], axis=1)
                    answers = ask(stepped_inputs(at, stencil, 0.5 * steps[ready]))
                    sides.append(central_differences(answers, len(ready), k + 1, 0.5 * steps[ready]))
                before, after = sides
                change = slope_high[ready] - slope_low[ready]
                size = np.linalg.norm(change, axis=1)
                stray = np.maximum(np.linalg.norm(before[:, k] - slope_low[ready], axis=1),
                                   np.linalg.norm(after[:, k] - slope_high[ready], axis=1))
                steady = stray <= self.consistency * size
                for row, line_index in enumerate(ready):
                    difference = after[row, :k] - before[row, :k]
                    if not steady[row] or not np.all(np.isfinite(difference)) or not np.any(difference):
                        continue
                    vector = np.linalg.svd(difference, full_matrices=False)[0][:, 0]
                    jump[line_index] = vector * (1.0 if vector[np.argmax(np.abs(vector))] >= 0 else -1.0)
                    found[line_index] = 1.0
                    position[line_index] = kink[row]
        except _Spent:
            pass
        signature = {"jump": jump, "found": found, "position": position}
        if "normal" in probes.extra:
            signature["normal"] = np.asarray(probes.extra["normal"], dtype=np.float64)
        return signature

    def _differ(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether two rows of derivatives differ by more than the tolerance (relative)."""
        size = np.maximum(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
        return np.linalg.norm(a - b, axis=1) > self.tolerance * size + 1e-12


def _between(middle: np.ndarray, low: np.ndarray, high: np.ndarray, tolerance: float) -> np.ndarray:
    """Whether each row of ``middle`` is a mix ``(1 - a) low + a high`` with ``0 <= a <= 1`` (to
    ``tolerance`` of the change): what a central difference straddling one kink measures."""
    change = high - low
    size = np.maximum((change ** 2).sum(axis=1), 1e-300)
    share = ((middle - low) * change).sum(axis=1) / size
    residual = np.linalg.norm(middle - low - share[:, None] * change, axis=1)
    return (share > -tolerance) & (share < 1 + tolerance) & (residual <= 4 * tolerance * np.sqrt(size))


def _sizes(probes: Probes) -> tuple[int, int]:
    if probes.directions is None or probes.steps is None or "line" not in probes.extra \
            or "window" not in probes.extra:
        raise InvalidParameter("The 'kinks' signature needs boundary probes (lines, windows, directions, steps).")
    return len(probes.points), int(probes.directions.shape[1])


def _line_arrays(probes: Probes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crossing points and line directions, flattened, with the steps and windows (float64)."""
    n = len(probes.points)
    points = np.asarray(probes.points, dtype=np.float64).reshape(n, -1)
    lines = np.asarray(probes.extra["line"], dtype=np.float64).reshape(n, -1)
    steps = np.asarray(probes.steps, dtype=np.float64).reshape(n)
    window = np.asarray(probes.extra["window"], dtype=np.float64).reshape(n)
    if not (np.all(steps > 0) and np.all(window > 0) and math.isfinite(float(window.max()))):
        raise InvalidParameter("Boundary probes need positive steps and windows.")
    return points, lines, steps, window
