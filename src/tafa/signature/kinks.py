"""The strongest kink on each line through an owner boundary, located and measured from outputs only.

Along a line ``x(t) = p + t u`` a piecewise-linear network is piecewise linear in ``t``: its
derivative along ``u`` is constant between kinks and jumps where the line crosses a unit's
boundary, by ``c (w . u)`` for a unit with weights ``w`` (``c``: what the layers above do with
the unit's output). The owner's lines run along its units' normals (:mod:`~tafa.probes.boundary`),
so the unit that jumps most along a line is the one whose weights point most nearly along it:
in a derived copy, the owner's own unit, wherever fine-tuning moved its hyperplane (moves of
30-80 times the spacing between kinks were measured on the digits MLP's ``lr 1e-2``
fine-tunes, while the unit's orientation kept a cosine of 0.8); in an independent model, its
best-aligned unit. Orientations are matched, not positions. For each line, against any
:class:`~tafa.models.Model` (black box, outputs only):

1. **Scan.** The derivative along ``u`` (central difference, step ``h``) at ``cells + 1``
   points spread over ``[-window, window]`` (the crossing ``t = 0`` falls inside a cell); the
   cell whose two ends differ most holds the strongest kink. In the same batch, the derivative
   two steps either side of the owner's crossing: how much it changes there, relative to its
   size (``crossing``), says whether the suspect has a kink exactly where the owner's unit
   crosses the line, if the derivative along a direction orthogonal to the owner's normal does
   not change there (:data:`SIDE_LIMIT`; 4 more queries: another unit's hyperplane through the
   point would change it). Fine-tuning the first layer moves the owner's hyperplanes by many
   steps (as it moves a public parent's, so a sibling fine-tuned from the owner's parent has
   none there either), while a copy that keeps the owner's first layer (only later layers
   fine-tuned or replaced) has every one of them.
2. **Bisect.** ``bisections`` halvings of that cell, keeping the half whose ends differ most
   (as Carlini, Jagielski and Mironov, CRYPTO 2020, and Rolnick and Kording, ICML 2020, locate
   critical points from queries): the kink's position ``t*`` is known to half the last bracket.
3. **Measure the jump.** Just outside the bracket (``2h`` beyond each end) the derivatives
   along the ``K`` measured directions are taken; the difference ``J`` (``K x m``) is, for one
   unit switching, ``(v_k . w) c``: rank one, its ``K``-vector is the unit's normal projected
   onto the directions. One derivative of the scan is asked again: a suspect whose answers
   change from query to query (by more than ``consistency`` of the strongest cell's change)
   counts as showing no kink on that line.

The signature holds, per line: ``jump`` (the unit ``K``-vector: ``J``'s leading left singular
vector, sign-free), ``found`` (1 or 0), ``position`` (``t*``), ``crossing`` (the relative change
of the derivative across the owner's crossing; NaN where not measured, and for a top-k list,
whose log-values are not the owner's units) and, from white-box probes, the
owner's ``normal`` in the measured directions and the lines' ``spread`` (see
:mod:`~tafa.probes.boundary`). At most ``budget`` queries are sent, in
batches covering every line at once, each batch holding every query that does not wait for
another's answer: ``bisections + 2`` calls per measurement (a service sees few, large requests;
a line-by-line look of the second stage, :mod:`tafa.decide.sequential`, pays them per line);
lines the budget cannot finish are not found. A suspect that answers NaN or inf, or changes its answers from
query to query, gets "not found" for the lines it spoiled, never an exception.

The queries depend on the answers (adaptive), so this measurement has no fixed input list:
:meth:`Kinks.inputs` refuses, and :meth:`Kinks.queries` is the exact count for a suspect that
answers every query (``2 (cells + 3) + 2 bisections + 4 K + 2`` per line, and 4 more for the
crossing's orthogonal direction when ``K > 1``, within the budget).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import InvalidParameter, NonFiniteOutput, check_param
from ..functional import central_differences, centred_over, stepped_inputs
from ..models.base import Model
from ..probes.base import Probes
from .base import Measurement, Signature, register_signature


class _Spent(Exception):
    """The suspect stopped giving usable answers (non-finite): stop measuring."""


@register_signature("kinks")
class Kinks(Measurement):
    """Locate the strongest kink on each line and measure its gradient jump (module doc).

    ``budget``: the most queries one measurement sends; ``cells``: how many cells the scan
    divides a line's window into (odd, so that the crossing lies inside one); ``bisections``:
    halvings of the strongest cell; ``consistency``: how far (relative to the strongest cell's
    change) a derivative of the scan, asked again, may stray.
    """

    adaptive = True
    optional_keys = frozenset({"crossing"})  # fingerprints made before session 14 have none

    def __init__(self, budget: int = 5200, cells: int = 47, bisections: int = 4, consistency: float = 0.05,
                 shown: bool = False, clip: Sequence[Sequence[float]] | None = None) -> None:
        check_param("budget", budget, "an integer >= 1", isinstance(budget, int) and budget >= 1, caller="Kinks")
        check_param("cells", cells, "an odd integer >= 3", isinstance(cells, int) and cells >= 3 and cells % 2 == 1,
                    caller="Kinks")
        check_param("bisections", bisections, "an integer >= 0", isinstance(bisections, int) and bisections >= 0,
                    caller="Kinks")
        self.budget = budget
        self.cells = cells
        self.bisections = bisections
        self.consistency = float(consistency)
        #: Read a top-k list: the log of each value it shows, the zeroed ones unknown; slopes are then
        #: compared on the classes both show, centred across them (the log-sum-exp's part is common).
        self.shown = bool(shown)
        #: Per output, the ``(low, high)`` a clipped suspect's answers were recognised clipped at
        #: (:func:`~tafa.signature.censoring.clip_bounds`; ``-inf``/``inf`` where not): every model is asked
        #: through that clip (the suspect's answers are unchanged by it, a reference's are served as the
        #: suspect's), and an answer at a bound is unknown, the clip's kink and not the network's: no cell
        #: with such an end holds the strongest kink, and no jump is read across one (the line is then not
        #: found). ``None``: answers as they are.
        self.clip = None if clip is None else np.asarray(clip, dtype=np.float64).reshape(-1, 2)
        if self.clip is not None:
            check_param("clip", clip, "a (low, high) pair per output, low < high",
                        bool(np.all(self.clip[:, 0] < self.clip[:, 1])), caller="Kinks")

    # -- the fixed-list interface does not apply to an adaptive measurement
    def inputs(self, probes: Probes) -> np.ndarray:
        raise InvalidParameter("The 'kinks' signature chooses its queries from the suspect's answers (adaptive); "
                               "it has no fixed input list: measure a model with Kinks.measure.")

    def assemble(self, probes: Probes, outputs: np.ndarray) -> Signature:
        raise InvalidParameter("The 'kinks' signature is adaptive: measure a model with Kinks.measure.")

    def signature_shapes(self, probes: Probes, output_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        n, k = _sizes(probes)
        shapes = {"jump": (n, k), "found": (n,), "position": (n,), "crossing": (n,)}
        if "normal" in probes.extra:
            shapes["normal"] = (n, k)
        if "spread" in probes.extra:
            shapes["spread"] = (n,)
        return shapes

    def per_line(self, k: int) -> int:
        """Queries one line costs when the suspect answers every query."""
        return 2 * (self.cells + 1 + 2) + 2 * self.bisections + 4 * k + 2 + (4 if k > 1 and not self.shown else 0)

    def queries(self, probes: Probes) -> int:
        """Queries one measurement sends to a suspect that answers every query (within the budget)."""
        n, k = _sizes(probes)
        return min(self.budget // self.per_line(k), n) * self.per_line(k)

    # -- the measurement
    def measure(self, model: Model, probes: Probes) -> Signature:
        n, k = _sizes(probes)
        points, lines, steps, window = _line_arrays(probes)
        directions = probes.directions.reshape(n, k, -1)  # type: ignore[union-attr]
        shape = probes.points.shape[1:]
        found, position, jump = np.zeros(n), np.zeros(n), np.zeros((n, k))
        crossing = np.full(n, np.nan)
        # only the lines the budget can finish are measured (the first ones)
        lines_measured = np.arange(min(n, self.budget // self.per_line(k)))

        def ask(inputs: np.ndarray) -> np.ndarray:
            try:
                answers = model(inputs.reshape(len(inputs), *shape)).reshape(len(inputs), -1)
            except NonFiniteOutput:
                raise _Spent from None
            if self.clip is not None:
                answers = _censored(answers, self.clip)
            if not self.shown:
                return answers
            with np.errstate(divide="ignore"):
                return np.where(answers > 0, np.log(np.where(answers > 0, answers, 1.0)), np.nan)

        gap = _shown_gap if self.shown else _known_gap if self.clip is not None else _gap

        def slope_inputs(index: np.ndarray, t: np.ndarray) -> np.ndarray:
            """The inputs of the derivatives along the lines ``index`` at ``p + t u`` (``t``: ``(len, G)``)."""
            count, per = t.shape
            at = (points[index][:, None] + t[..., None] * lines[index][:, None]).reshape(count * per, -1)
            return stepped_inputs(at, np.repeat(lines[index], per, axis=0)[:, None], np.repeat(steps[index], per))

        def slopes(index: np.ndarray, t: np.ndarray, answers: np.ndarray) -> np.ndarray:
            """The derivatives of :func:`slope_inputs` from their ``answers``, ``(len, G, m)``."""
            count, per = t.shape
            return central_differences(answers, count * per, 1, np.repeat(steps[index], per))[:, 0].reshape(
                count, per, -1)

        def asked(*blocks: np.ndarray) -> list[np.ndarray]:
            """Blocks of inputs that do not depend on each other's answers, asked in one call (a
            service sees one request, not one per block), and each block's answers."""
            answers = ask(np.concatenate(blocks))
            return np.split(answers, np.cumsum([len(block) for block in blocks])[:-1])

        index = lines_measured
        if index.size:
            try:
                # 1. scan: the cell whose ends differ most holds the strongest kink; with it, in the same
                # batch, the slopes two steps either side of the owner's crossing (t = 0) and, across it,
                # along a direction orthogonal to the owner's normal
                grid = np.linspace(-1.0, 1.0, self.cells + 1)[None] * window[index][:, None]
                near = 2 * steps[index][:, None] * np.array([[-1.0, 1.0]])
                scan = np.concatenate([grid, near], axis=1)
                sideways = _side_inputs(points[index], lines[index], directions[index], steps[index])
                scan_answers, side_answers = asked(slope_inputs(index, scan),
                                                   sideways[:0] if self.shown else sideways)
                scanned, beside = np.split(slopes(index, scan, scan_answers), [self.cells + 1], axis=1)
                if not self.shown:
                    crossing[index] = _crossing(beside, side_answers, steps[index])
                change = gap(scanned[:, 1:], scanned[:, :-1])
                cell = np.argmax(change, axis=1)
                rows = np.arange(len(index))
                low, high = grid[rows, cell], grid[rows, cell + 1]
                slope_low, slope_high = scanned[rows, cell], scanned[rows, cell + 1]
                # 2. bisect: keep the half whose ends differ more
                for _ in range(self.bisections):
                    middle = 0.5 * (low + high)
                    s = slopes(index, middle[:, None], ask(slope_inputs(index, middle[:, None])))[:, 0]
                    left = gap(s, slope_low) >= gap(slope_high, s)
                    high = np.where(left, middle, high)
                    low = np.where(left, low, middle)
                    slope_high = np.where(left[:, None], s, slope_high)
                    slope_low = np.where(left[:, None], slope_low, s)
                # 3. the jump across the bracket (2 steps beyond each end), in the K directions, both
                # ends in one call, with one derivative of the scan asked again (in another batch than
                # the scan's: a suspect must answer it alike)
                h = steps[index]
                again_at = grid[rows, cell][:, None]
                ends = [stepped_inputs(points[index] + end[:, None] * lines[index], directions[index], h)
                        for end in (low - 2 * h, high + 2 * h)]
                *sides, again_answers = asked(*ends, slope_inputs(index, again_at))
                before, after = (central_differences(answers, len(index), k, h) for answers in sides)
                again = slopes(index, again_at, again_answers)[:, 0]
                stray = gap(again, scanned[rows, cell])
                steady = stray <= self.consistency * change[rows, cell]
                for row, line_index in enumerate(index):
                    difference = after[row, :k] - before[row, :k]
                    if self.shown:  # the classes shown at every input of the jump, centred across them
                        known = np.all(np.isfinite(difference), axis=0)
                        if known.sum() < 2:
                            continue
                        difference = centred_over(difference, known)[:, known]
                    if not steady[row] or not np.all(np.isfinite(difference)) or not np.any(difference):
                        continue
                    vector = np.linalg.svd(difference, full_matrices=False)[0][:, 0]
                    jump[line_index] = vector * (1.0 if vector[np.argmax(np.abs(vector))] >= 0 else -1.0)
                    found[line_index] = 1.0
                    position[line_index] = 0.5 * (low[row] + high[row])
            except _Spent:
                pass
        signature = {"jump": jump, "found": found, "position": position, "crossing": crossing}
        if "normal" in probes.extra:
            signature["normal"] = np.asarray(probes.extra["normal"], dtype=np.float64)
        if "spread" in probes.extra:
            signature["spread"] = np.asarray(probes.extra["spread"], dtype=np.float64).reshape(n)
        return signature


#: A change across the owner's crossing is the owner's unit's only if the derivative along a direction
#: orthogonal to the unit's normal changes there by at most this fraction of the change along the
#: line (the owner's unit changes nothing across it; another unit's hyperplane through the same
#: point would, by about as much): :func:`_crossing`.
SIDE_LIMIT = 0.05


def _side_inputs(points: np.ndarray, lines: np.ndarray, directions: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The inputs of the derivatives along the second measured direction (orthogonal to the owner's
    normal) two steps before and after the owner's crossing, for :func:`_crossing`; none where only
    one direction is measured."""
    if directions.shape[1] < 2:
        return np.zeros((0, points.shape[1]))
    return np.concatenate([stepped_inputs(points + (end * steps)[:, None] * lines, directions[:, 1:2], steps)
                           for end in (-2.0, 2.0)])


def _crossing(beside: np.ndarray, side_answers: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per line, how much the derivative along it changes across the owner's crossing (from
    ``beside``: the slopes two steps before and after it), relative to its size; 0 where a
    direction orthogonal to the owner's normal (the second measured direction, answered at
    :func:`_side_inputs` as ``side_answers``; none: not measured) changes by more than
    :data:`SIDE_LIMIT` of that (a hyperplane through the point, not oriented like the owner's
    unit), and where the slopes are all zero."""
    n = len(beside)
    size = 0.5 * (np.linalg.norm(beside[:, 0], axis=-1) + np.linalg.norm(beside[:, 1], axis=-1))
    across = _gap(beside[:, 1], beside[:, 0])
    relative = np.divide(across, size, out=np.zeros(n), where=np.isfinite(size) & (size > 0))
    if not len(side_answers):
        return relative
    side = [central_differences(half, n, 1, steps)[:, 0] for half in np.split(side_answers, 2)]
    sideways = _gap(side[1], side[0])
    return np.where(sideways <= SIDE_LIMIT * across, relative, 0.0)


def _gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far two slopes differ, per row (the last axis: outputs)."""
    return np.asarray(np.linalg.norm(a - b, axis=-1))


def _censored(answers: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """``(Q, m)`` answers through the clip ``clip`` (``(m, 2)``: each output's low and high), those
    at a bound NaN (unknown)."""
    if len(clip) != answers.shape[1]:
        raise InvalidParameter(f"The clip has bounds for {len(clip)} outputs; the model answers {answers.shape[1]}.")
    clipped = np.clip(answers, clip[:, 0], clip[:, 1])
    return np.where((clipped == clip[:, 0]) | (clipped == clip[:, 1]), np.nan, clipped)


def _known_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_gap` where both slopes are known at every output (no answer at a clip bound), else 0."""
    gaps = np.linalg.norm(a - b, axis=-1)
    return np.where(np.isfinite(gaps), gaps, 0.0)


def _shown_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_gap` on the outputs both slopes know (shown by a top-k list at every input), each
    centred across them; 0 where fewer than two are known."""
    known = np.isfinite(a) & np.isfinite(b)
    gaps = np.linalg.norm(centred_over(a, known) - centred_over(b, known), axis=-1)
    return np.where(known.sum(axis=-1) >= 2, gaps, 0.0)


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
