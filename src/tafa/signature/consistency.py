"""Is the suspect one fixed function? Cheap extra queries that expose evasive services.

A pirate who has read the method can answer the fingerprint's queries from another model
(:mod:`tafa.attacks.evasion`): batches from a decoy and single inputs from the copy, inputs that do
not look like its data (no exact zeros, off the data's value grid, outside its ranges) from the
decoy, or any input close to an earlier one from the decoy. Each makes the answers depend on
something no fixed function depends on. After the fingerprint's own queries, :func:`check_evasion`
asks a few more (350 by default) and compares:

1. **Re-asks.** A random subset of the inputs already asked is asked again, half of them one at a
   time and half inside one shuffled batch mixed with data-like inputs (below); some data-like
   inputs are asked once more alone. A fixed function answers them as before up to float rounding
   (batched otherwise, float32 sums differ in their last bits): the difference is compared with
   :data:`REASK_TOLERANCE` times the spread of the answers.
2. **Near pairs across styles.** Data-like inputs made from the domain alone (many features at
   rest, exactly 0 for pixels, the others on a 1/16 grid of the domain's range: what images look
   like) are asked in the same shuffled batch as copies of themselves moved by a step of
   :data:`PAIR_STEP` times the domain's scale, either on every feature (no exact zeros, off the
   grid, outside any range the data shows) or only on the features not at rest (zeros kept, off the
   grid). A continuous function answers a pair within ``step x its local slope``; a service that
   routes either member by its style, or the second one because it is close to the first, answers
   the pair from two models. A top-k list's pairs are compared as its segments are (below: undone,
   sorted across outputs), so a pair across the top class's boundary is no difference.

3. **Jumps along segments.** A ReLU network is continuous; a service that answers some inputs from
   one model and others from another is not, wherever its routing rule switches. :data:`SEGMENTS`
   segments run from an input a pirate's data would contain (the domain's rest point, every feature
   at 0 or its lower bound, for the first half; data-like inputs for the others)
   towards inputs the verification already asked (every other one only :data:`SHORT` of the way);
   given the owner's own data, every segment starts from one of its inputs and runs the whole way.
   Each is scanned at :data:`CELLS` equal cells (answers compared as
   :func:`~tafa.signature.interface.recognise` undoes an interface, sorted across outputs so that a
   top-k list's reordering is no jump). Two of its cells are halved :data:`HALVINGS` times each: the
   one whose answers change most, and the one whose change departs most from its neighbours' (a
   switch adds its jump to one cell, while a continuous function's change runs on into the next; over
   a long segment the model's own change per cell can outweigh the jump, or cancel it), if it departs
   by at least half of :data:`JUMP_TOLERANCE` (else the next largest change). Each halving
   keeps the half whose change departs more from its share of the neighbours' slope. A continuous
   function's change over the last piece (about ``2^-15.6`` of the segment) shrinks with its length;
   a switch between two models does not. A segment **jumps** when the last change of one of its
   cells exceeds :data:`JUMP_TOLERANCE` of the answers' spread, is at least :data:`PERSISTENCE` of
   the change over the piece 2^:data:`PERSIST` times longer (a jump persists as the piece shrinks, a
   steep continuous stretch does not) and,
   for answers on a grid, spans more than :data:`JUMP_GRID_STEPS` steps (a
   rounding boundary moves an answer by one step, a one-hot label by one). Whatever statistic a
   router keys on (exact zeros, a value grid, per-feature ranges, a density model, closeness to
   earlier queries), a segment from an input it routes to the copy to one it routes away crosses
   the switch.

The suspect is **evasive** when re-asks or near pairs find at least :data:`MIN_DIFFERING` inputs, and
at least :data:`MIN_FRACTION` of those compared, beyond their tolerance, or when at least
:data:`MIN_JUMPS` segment jumps: answers that depend on batch size, order or style in a way no fixed
function does. For answers on a grid (integer logits, labels, 8-bit pixels), a difference of at
most :data:`JUMP_GRID_STEPS` grid steps counts for none of them: float noise or a tiny step crosses
a rounding boundary of some output often (a decoder's 64 pixels on one pair in five). Re-asks and
pairs also count rather than fire on one difference.

A service that computes in **half precision** (bfloat16, float16) is no continuous function at these
scales: it rounds its inputs (two inputs closer than a rounding step are one) and every value it
carries. Its odd near pairs, moved by less than a half-precision step from inputs it represents, are
all answered alike while their bases are not: the check then reads its inputs as quantised
(:attr:`EvasionCheck.quantised`), compares only those pairs, gives re-asks
:data:`QUANTISED_REASK_TOLERANCE`, and judges a segment where its halving reached the service's
resolution, against a piece 2^:data:`QUANTISED_PERSIST` times longer. Answers written in half
precision (:func:`~tafa.signature.interface.half_precision_bits`), and the answers of a service that
reads its inputs so (at bfloat16's steps, the coarser, where the answers are no half-precision values:
a float32 softmax on its logits), count a difference only beyond :data:`HALF_STEPS` rounding steps of
the pair's largest answer. A router whose two models both
compute so still switches between them by far more (``python benchmarks/evasion_check.py
--interface bf16``).

The choice of the re-asked inputs and of the data-like ones is drawn from fresh entropy unless a
``seed`` is given: a service cannot know in advance which inputs come back.

>>> import numpy as np, torch
>>> from tafa.domain import parse_domain
>>> from tafa.models import TorchModel
>>> torch.manual_seed(0) and None
>>> model = TorchModel(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)), (16,))
>>> inputs = np.random.default_rng(0).random((100, 16)).astype(np.float32)
>>> check = check_evasion(model, inputs, model(inputs), parse_domain("box:0,1", (16,)), seed=0)
>>> check.evasive, check.queries
(False, 350)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..domain import Domain, bounds_and_rest
from ..errors import check_param, is_integer
from ..models.base import Model
from .interface import (HALF_BITS, grid_spacing, half_precision_bits, half_ulp, recognise, to_bits, top_k_floor,
                        undo_top_k)

#: Re-asked answers may differ by this fraction of the answers' spread (float32 batch effects of real
#: torch and onnxruntime models measure below 1e-6 of it; see benchmarks/evasion.py).
REASK_TOLERANCE = 1e-4
#: The step between the two inputs of a near pair, as a fraction of the domain's scale.
PAIR_STEP = 1e-5
#: The two answers of a near pair may differ by this fraction of the answers' spread: a continuous model
#: stays within that unless its slope exceeds 1000 spreads per unit of the domain's scale (the test and
#: benchmark models measure below 1e-4 of the spread at this step).
PAIR_TOLERANCE = 1e-2
#: Levels of the value grid of the data-like inputs (digit pixels are k/16).
GRID_LEVELS = 16
#: Fewest differing inputs, and smallest fraction of those compared, that make a comparison evasive.
MIN_DIFFERING = 2
MIN_FRACTION = 0.15
#: Segments searched for a jump, the cells each is first scanned at, and how many times the cell that
#: changes most is then halved (the last piece: 1/(12 x 2^12), about 2^-15.6 of the segment).
SEGMENTS, CELLS, HALVINGS = 8, 12, 12
#: A jump must persist: its last piece must change at least PERSISTENCE times what the piece
#: 2^PERSIST times longer did (a continuous function, locally linear there, changes 2^-PERSIST as much).
PERSIST, PERSISTENCE = 4, 0.5
#: Every other segment ends this fraction of the way to an input already asked (a new query).
SHORT = 1 / 64
#: A segment's last piece may change the answers (as compared, sorted) by this fraction of their spread
#: (a continuous model stays within it unless its slope there is 800 spreads per segment length).
JUMP_TOLERANCE = 5e-2
#: On a grid, a jump must also move some answer by more than this many grid steps.
JUMP_GRID_STEPS = 2.5
#: Segments that must jump to make the suspect evasive.
MIN_JUMPS = 1
#: In answers of a half-precision computation, a difference must also exceed this many rounding steps
#: of the pair's largest value (each value it carries is rounded: one input's step moves an output by
#: a few of them; at 2.5, 2 of 412 checks of the digits CNN's innocent models behind a float32 softmax
#: were flagged, at 4 none: ``python benchmarks/jump_check.py --only bf16 fp16 --then softmax``).
HALF_STEPS = 4
#: Fewest near pairs that move only the features not at rest (the odd rows, within a half-precision
#: rounding of them, :func:`near_pairs`) that must all be answered bit for bit alike, their bases each
#: otherwise, for the suspect's inputs to be read as **quantised** (a service computing in bfloat16 or
#: float16 rounds the moves away; a clipped or saturated one answers its bases alike too).
QUANTISED_PAIRS = 4
#: A quantised service's re-asks may differ by this fraction of the answers' spread (half precision's
#: sums depend on the batch: 2^-8 of a value).
QUANTISED_REASK_TOLERANCE = 1e-2
#: A quantised service's jump must persist over a piece 2^QUANTISED_PERSIST times longer than the piece
#: at which the segment reached the service's resolution (below it, every rounding boundary of an input
#: is a step that persists as the piece shrinks; over a longer piece a staircase's steps add up).
QUANTISED_PERSIST = 8


@dataclass(frozen=True)
class EvasionCheck:
    """What :func:`check_evasion` found (differences are fractions of :attr:`scale`)."""

    evasive: bool
    reasked: int  #: inputs asked a second time (alone or in another batch)
    reask_differing: int  #: of them, answered otherwise beyond :attr:`reask_tolerance`
    reask_max: float  #: the largest re-ask difference
    pairs: int  #: near pairs asked
    pairs_differing: int  #: of them, answered further apart than :attr:`pair_tolerance`
    pairs_max: float  #: the largest difference within a pair
    queries: int  #: queries the check added
    scale: float  #: the spread of the answers the differences are measured against
    segments: int = 0  #: segments bisected
    jumps: int = 0  #: of them, with a jump no continuous function makes
    jumps_max: float = 0.0  #: the largest jump (a last-piece change that persisted; fraction of the spread)
    pieces_max: float = 0.0  #: the largest last-piece change, jump or not (a continuous model's stays small)
    anchored: bool = False  #: data-like inputs came from the owner's data (``anchors``), not the domain
    #: the suspect reads its inputs at a coarser precision than the near pairs' step (half precision):
    #: the pairs that move features at rest are not compared, re-asks get a half-precision tolerance,
    #: and a segment's last piece is where it reached that resolution
    quantised: bool = False
    reask_tolerance: float = REASK_TOLERANCE
    pair_tolerance: float = PAIR_TOLERANCE
    pair_step: float = PAIR_STEP
    jump_tolerance: float = JUMP_TOLERANCE

    @property
    def note(self) -> str:
        """One line for the verdict."""
        found = (f"{self.reask_differing} of {self.reasked} re-asked inputs answered otherwise alone or in another "
                 f"batch (max {self.reask_max:.3g} of the answers' spread, tolerance {self.reask_tolerance:g}); "
                 f"{self.pairs_differing} of {self.pairs} pairs of inputs {self.pair_step:g} apart answered up to "
                 f"{self.pairs_max:.3g} apart (tolerance {self.pair_tolerance:g}); {self.jumps} of {self.segments} "
                 f"segments jumped (max {self.jumps_max:.3g} of the spread over "
                 + ("the piece at the suspect's resolution" if self.quantised
                    else f"1/{CELLS * 2 ** HALVINGS} of a segment")
                 + f", tolerance {self.jump_tolerance:g})"
                 + ("; data-like inputs from the owner's data" if self.anchored else "")
                 + ("; the suspect reads its inputs at a coarser precision than the pairs' step (half precision): "
                    "pairs that move features at rest not compared" if self.quantised else ""))
        if self.evasive:
            return (f"EVASIVE SUSPECT: {found}: its answers depend on batch size, order or input style, or jump, "
                    f"as no fixed continuous function's do, so its score need not describe the model its users get, "
                    f"and an 'independent' decision is not evidence ({self.queries} extra queries)")
        return f"evasion check: answers consistent with one fixed function: {found} ({self.queries} extra queries)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "note": self.note}


def fires(differing: int, compared: int) -> bool:
    """Whether ``differing`` of ``compared`` re-asks or near pairs make a suspect evasive."""
    return compared > 0 and differing >= max(MIN_DIFFERING, math.ceil(MIN_FRACTION * compared))


def data_like(domain: Domain, count: int, rng: np.random.Generator, levels: int = GRID_LEVELS) -> np.ndarray:
    """``(count, *shape)`` inputs that look like data, made from the domain alone: a fraction (0.64 to
    1, drawn per input) of the features at rest (0 where the domain holds 0, else its lower bound),
    the others on the grid of ``levels`` steps over the domain's range (``k/16`` pixels), up to a
    brightest step drawn per input (faint, sparse inputs fall inside the ranges real data shows); at
    least one feature is not at rest."""
    lo, hi, rest = bounds_and_rest(domain)
    features = lo.size
    # many faint and sparse inputs (squared draws): they fall inside the narrow ranges real data shows
    brightest = np.ceil(levels * rng.random((count, 1)) ** 2)
    grid = lo + np.maximum(1.0, np.ceil(rng.random((count, features)) * brightest)) * (hi - lo) / levels
    at_rest = rng.random((count, features)) >= 0.6 * rng.random((count, 1)) ** 2
    # never every feature at rest: that is the rest point itself, where models of one task agree most
    # (a standardised table's mean row), so a switch there shows the smallest jump
    blank = np.flatnonzero(at_rest.all(axis=1))
    at_rest[blank, rng.integers(features, size=blank.size)] = False
    return np.where(at_rest, rest, grid).reshape(count, *domain.shape)


def near_pairs(domain: Domain, base: np.ndarray, rng: np.random.Generator, step: float = PAIR_STEP) -> np.ndarray:
    """``base`` moved by ``step`` times the domain's scale (times 0.5 to 1, drawn per feature), towards
    the domain's inside: even rows on every feature, odd rows only on the features not at rest, each
    by at most an eighth of a float16 rounding step of its value (``|x| 2^-14``) as well, so
    that a service computing in bfloat16 or float16 reads an odd pair's two inputs alike when ``base``
    is representable there (:func:`~tafa.signature.interface.to_bits`)."""
    lo, hi, rest = bounds_and_rest(domain)
    flat = base.reshape(len(base), -1).astype(np.float64)
    size = step * domain.scale() * rng.uniform(0.5, 1.0, size=flat.shape)
    size[1::2] = np.minimum(size[1::2], np.abs(flat[1::2]) * 2.0 ** -14)
    sign = np.where(flat >= hi, -1.0, np.where(flat <= lo, 1.0, rng.choice([-1.0, 1.0], size=flat.shape)))
    moved = np.ones_like(flat, dtype=bool)
    moved[1::2] = flat[1::2] != rest
    return (flat + np.where(moved, sign * size, 0.0)).reshape(base.shape)


def _differences(first: np.ndarray, second: np.ndarray, scale: float, step: float | None = None,
                 bits: int | None = None) -> np.ndarray:
    """The largest difference of each pair of answers, as a fraction of ``scale``; on a grid of
    ``step``, 0 where it spans at most :data:`JUMP_GRID_STEPS` steps (a rounding boundary crossed by
    float noise or a tiny step moves an answer by one step: 8-bit pixels, integer logits); in a
    half-precision format of ``bits`` significant bits, a difference counts only beyond
    :data:`HALF_STEPS` rounding steps of the pair's largest answer
    (:func:`~tafa.signature.interface.half_ulp`: the computation rounds every value it carries, so a
    small output moves by the steps of the large ones)."""
    count = len(first)
    a, b = first.reshape(count, -1), second.reshape(count, -1)
    each = np.abs(a - b)
    if bits is not None:  # a rounding step of the pair's largest answer: the computation's own scale
        largest = np.maximum(np.abs(a), np.abs(b)).max(axis=1, keepdims=True)
        each = np.where(each > HALF_STEPS * half_ulp(largest, bits), each, 0.0)
    gaps = each.max(axis=1)
    if step is not None:
        gaps = np.where(gaps > JUMP_GRID_STEPS * step, gaps, 0.0)
    return gaps / scale


def answer_scale(answers: np.ndarray) -> float:
    """The spread of a set of answers: the root mean over outputs of their variance across inputs
    (offsets and units of an interface do not change what a fraction of it means); a tiny positive
    floor for constant answers."""
    flat = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
    spread = float(np.sqrt(flat.var(axis=0).mean())) if len(flat) > 1 else 0.0
    return max(spread, 1e-12 * float(np.abs(flat).max(initial=0.0)), 1e-30)


def rest_point(domain: Domain) -> np.ndarray:
    """``(1, *shape)``: every feature at rest (0 where the domain holds 0, else its lower bound): a
    blank image, a standardised table's mean row, a latent's origin."""
    return bounds_and_rest(domain)[2].reshape(1, *domain.shape)


class _Compared:
    """Answers as the segments compare them: the interface undone as :func:`recognise` undoes it for
    the verification's own ``answers`` (with which the new rows are recognised), sorted across
    outputs; and the raw answers' grid step."""

    def __init__(self, answers: np.ndarray) -> None:
        self.answers = np.asarray(answers, dtype=np.float64).reshape(len(answers), -1)
        recognised = recognise(self.answers)
        grid = recognised.quantised
        # the grid as a rounding moves the answers: its spacing, not a finer grid they also lie on (answers
        # rounded to 0.5 moved by one step cross five steps of 0.1: no jump)
        self.step = None if grid is None else grid_spacing(self.answers, grid) or grid
        # a top-k list's zeroed values: at the floor the verification's answers set (as recognise sets it),
        # for every batch (the smallest value a batch shows would move it: a segment whose top value dips
        # below every answer's would shift all its rows, a jump of the comparison, not of the suspect)
        self.floor = top_k_floor(self.answers, grid) if recognised.kind == "top-k probabilities" else None
        # answers written in a half-precision format (a service computing in bfloat16 or float16): one of
        # its rounding steps is no jump either
        self.bits = half_precision_bits(self.answers) if self.step is None else None
        self.scale = answer_scale(np.sort(recognised.answers.reshape(len(self.answers), -1), axis=1))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        if self.floor is not None and np.all(rows >= 0):
            return np.sort(undo_top_k(rows, self.floor), axis=1)
        undone = recognise(np.concatenate([self.answers, rows])).answers
        return np.sort(undone.reshape(len(undone), -1)[len(self.answers):], axis=1)


def segment_jumps(model: Model, starts: np.ndarray, ends: np.ndarray, end_answers: np.ndarray,
                  compared: _Compared, cells: int = CELLS, halvings: int = HALVINGS, quantised: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Scan each segment ``starts[i] -> ends[i]`` at ``cells`` equal cells and halve two of its cells
    ``halvings`` times each (the module's description says which, and how). Returns, per segment, the
    largest last-piece change of its two cells that can be a jump, else the larger of the two (as a
    fraction of the compared answers' spread), and whether one can be: a change that persisted
    (:data:`PERSISTENCE`) and, on a grid, spans more than :data:`JUMP_GRID_STEPS` steps. Asks
    ``len(starts) * (cells + 2 * halvings)`` queries: one batch for the scan, one per halving.

    ``quantised`` (a service that reads its inputs at a coarser precision than the halvings reach,
    :func:`check_evasion`): a cell's last piece is the one kept at the first halving whose other half
    is answered bit for bit alike at both its ends (the service's resolution), and it must persist
    over the piece 2^:data:`QUANTISED_PERSIST` times longer (the scanned cell at most).

    Half precision's rounding steps are no jump: within :data:`HALF_STEPS` of them (of the pair's
    largest value), on the raw answers where they are half-precision values (``compared.bits``), else,
    for a quantised service (a float32 softmax on its logits), at bfloat16's on the answers as compared."""
    count = len(starts)
    shape = model.input_shape
    first = starts.reshape(count, -1).astype(np.float64)
    span = ends.reshape(count, -1).astype(np.float64) - first
    # the scan: the segment's start and ``cells - 1`` points between, in one batch
    t = np.arange(cells) / cells
    points = (first[:, None] + t[None, :, None] * span[:, None]).reshape(count * cells, -1)
    raw = np.asarray(model(points.astype(np.float32).reshape(count * cells, *shape)), dtype=np.float64)
    raw = np.concatenate([raw.reshape(count, cells, -1), np.asarray(end_answers, dtype=np.float64).reshape(
        count, 1, -1)], axis=1)
    scanned = compared(raw.reshape(count * (cells + 1), -1)).reshape(count, cells + 1, -1)
    steps = np.diff(scanned, axis=1)  # each cell's signed change
    padded = np.concatenate([steps[:, 1:2], steps, steps[:, -2:-1]], axis=1)
    slope = 0.5 * (padded[:, :-2] + padded[:, 2:])  # the neighbours' change per cell (one neighbour at the ends)
    size = np.abs(steps).max(axis=2)
    largest = size.argmax(axis=1)
    departure = np.abs(steps - slope).max(axis=2)
    departure[np.arange(count), largest] = -1.0
    size[np.arange(count), largest] = -1.0
    # two cells per segment, stacked: the largest change, then the largest departure among the others
    # when it could hold a jump the check counts (else the next largest change: a departure below
    # that is float noise, which halving would only chase)
    gate = 0.5 * JUMP_TOLERANCE * compared.scale
    cell = np.concatenate([largest, np.where(departure.max(axis=1) >= gate, departure.argmax(axis=1),
                                             size.argmax(axis=1))])
    rows = np.tile(np.arange(count), 2)
    expected = slope[rows, cell]  # the change a continuous function would show over the whole cell
    origin, along = first[rows], span[rows]
    low_f, high_f = cell / cells, (cell + 1) / cells
    raw_low, raw_high = raw[rows, cell], raw[rows, cell + 1]
    low_t, high_t = scanned[rows, cell], scanned[rows, cell + 1]
    changes = [np.abs(high_t - low_t).max(axis=1)]
    depth = np.full(len(rows), halvings)  # where each piece reached the service's resolution (quantised)
    for halving in range(1, halvings + 1):
        middle_f = 0.5 * (low_f + high_f)
        at = origin + middle_f[:, None] * along
        answered = np.asarray(model(at.astype(np.float32).reshape(len(at), *shape)), dtype=np.float64)
        answered = answered.reshape(len(at), -1)
        middle_t = compared(answered)
        share = expected / 2 ** halving  # each half's share of the neighbours' slope
        keep_low = (np.abs(middle_t - low_t - share).max(axis=1)
                    >= np.abs(high_t - middle_t - share).max(axis=1))
        if quantised:  # the half not kept answered alike at both ends: the piece kept is at the resolution
            alike = np.all(answered == np.where(keep_low[:, None], raw_high, raw_low), axis=1)
            depth = np.where(alike & (depth == halvings), halving, depth)
        high_f = np.where(keep_low, middle_f, high_f)
        low_f = np.where(keep_low, low_f, middle_f)
        raw_high = np.where(keep_low[:, None], answered, raw_high)
        raw_low = np.where(keep_low[:, None], raw_low, answered)
        high_t = np.where(keep_low[:, None], middle_t, high_t)
        low_t = np.where(keep_low[:, None], low_t, middle_t)
        changes.append(np.abs(high_t - low_t).max(axis=1))
    # a jump persists as its piece shrinks; a continuous function's change shrinks with the piece (by
    # 2^PERSIST over the last PERSIST halvings where it is locally linear)
    table = np.stack(changes)  # (halvings + 1, rows)
    each = np.arange(len(rows))
    last = table[depth, each]
    longer = table[np.maximum(0, depth - (QUANTISED_PERSIST if quantised else PERSIST)), each]
    change = last / compared.scale
    jumping = last >= PERSISTENCE * longer
    if compared.step is not None:
        jumping &= np.abs(raw_high - raw_low).max(axis=1) > JUMP_GRID_STEPS * compared.step
    if compared.bits is not None:  # answers written in half precision: its rounding steps are no jump
        jumping &= _differences(raw_high, raw_low, 1.0, bits=compared.bits) > 0
    elif quantised:  # inputs read in half precision, answers no half-precision values (a float32 softmax on
        # its logits): its rounding steps, at bfloat16's (the coarser), on the answers as compared (undone)
        jumping &= _differences(high_t, low_t, 1.0, bits=HALF_BITS[0]) > 0
    change, jumping = change.reshape(2, count), jumping.reshape(2, count)
    can = jumping.any(axis=0)
    return np.where(can, np.where(jumping, change, -1.0).max(axis=0), change.max(axis=0)), can


#: The check's default share of re-asked inputs, near pairs and data-like inputs asked alone, and
#: the queries they add (:func:`check_evasion`).
REASK, PAIRS, ALONE = 20, 16, 6
CHECK_QUERIES = REASK + 2 * PAIRS + ALONE + SEGMENTS * (CELLS + 2 * HALVINGS) + SEGMENTS // 2


def check_evasion(model: Model, inputs: np.ndarray, answers: np.ndarray, domain: Domain, *, reask: int = REASK,
                  pairs: int = PAIRS, alone: int = ALONE, segments: int = SEGMENTS,
                  anchors: np.ndarray | None = None, seed: int | None = None) -> EvasionCheck:
    """Ask ``model`` ``reask + 2 * pairs + alone + segments * (CELLS + 2 * HALVINGS) + segments // 2``
    more queries (350 by default) and judge whether its answers are those of one fixed continuous function (see the
    module's description).

    ``inputs`` and ``answers``: what the verification already asked and was answered (the re-asked
    inputs are drawn from them; at least one). ``seed``: ``None`` draws from fresh entropy (what a
    verification against a real suspect should do); an integer makes the check reproducible.
    ``anchors``: inputs from the owner's own data (``(n, *input_shape)``), used instead of data-like
    inputs made from the domain (near pairs, and every segment's start): a router with a good
    detector of the task's data answers them from the copy."""
    caller = "check_evasion"
    check_param("model", model, "a tafa Model", isinstance(model, Model), caller=caller)
    inputs = np.asarray(inputs, dtype=np.float32)
    answers = np.asarray(answers, dtype=np.float64)
    check_param("inputs", np.shape(inputs), f"a non-empty array of inputs (n, {model.input_shape})",
                inputs.ndim == len(model.input_shape) + 1 and len(inputs) > 0
                and inputs.shape[1:] == model.input_shape, caller=caller)
    check_param("answers", np.shape(answers), f"the model's answers to inputs, ({len(inputs)}, {model.output_shape})",
                answers.shape == (len(inputs), *model.output_shape), caller=caller)
    for name, value in (("reask", reask), ("pairs", pairs), ("alone", alone), ("segments", segments)):
        check_param(name, value, "an integer >= 0", is_integer(value) and value >= 0, caller=caller)
    check_param("alone", alone, f"at most pairs ({pairs})", alone <= pairs, caller=caller)
    rng = np.random.default_rng(seed)
    before = model.queries

    chosen = rng.permutation(len(inputs))[:reask]
    singles, batched = chosen[: (len(chosen) + 1) // 2], chosen[(len(chosen) + 1) // 2:]
    if anchors is not None:
        anchors = np.asarray(anchors, dtype=np.float32)
        check_param("anchors", np.shape(anchors), f"a non-empty array of inputs (n, {model.input_shape})",
                    anchors.ndim == len(model.input_shape) + 1 and len(anchors) > 0
                    and anchors.shape[1:] == model.input_shape, caller=caller)

    def like_data(count: int) -> np.ndarray:
        if anchors is None:
            return data_like(domain, count, rng)
        return anchors[rng.choice(len(anchors), size=count, replace=count > len(anchors))].astype(np.float64)

    base = like_data(pairs)
    base[1::2] = to_bits(base[1::2], HALF_BITS[0])  # the odd pairs tell a service that reads inputs in half precision
    base = base.astype(np.float32)
    moved = near_pairs(domain, base.astype(np.float64), rng).astype(np.float32)
    mixed = np.concatenate([inputs[batched], base, moved])
    order = rng.permutation(len(mixed))
    mixed_answers = np.empty((len(mixed), *model.output_shape))
    if len(mixed):
        mixed_answers[order] = model(mixed[order])
    single_answers = np.stack([model(inputs[i:i + 1])[0] for i in singles]) if len(singles) else None
    base_alone = np.stack([model(base[i:i + 1])[0] for i in range(alone)]) if alone else None

    answered_batched = mixed_answers[:len(batched)]
    answered_base = mixed_answers[len(batched):len(batched) + pairs]
    answered_moved = mixed_answers[len(batched) + pairs:]
    scale = answer_scale(np.concatenate([answers, mixed_answers]))
    compared = _Compared(answers)
    step, bits = compared.step, compared.bits
    reasks = [_differences(answers[batched], answered_batched, scale, step, bits)]
    if single_answers is not None:
        reasks.append(_differences(answers[singles], single_answers, scale, step, bits))
    if base_alone is not None:
        reasks.append(_differences(answered_base[:alone], base_alone, scale, step, bits))
    reask_gaps = np.concatenate(reasks)
    # a service that answers every odd pair bit for bit alike, while its answers at the pairs' distinct
    # bases all differ (it is not constant there: a clip, a saturation), reads its inputs at a precision
    # coarser than their step (half precision): differences below that resolution are its rounding
    odd = slice(1, None, 2)
    bases = answered_base[odd].reshape(len(answered_base[odd]), -1)
    quantised = bool(step is None and len(bases) >= QUANTISED_PAIRS and np.any(base[odd] != moved[odd])
                     and np.array_equal(answered_base[odd], answered_moved[odd])
                     and len(np.unique(bases, axis=0)) == len(bases))
    if compared.floor is not None:  # a top-k list: a pair across the top class's boundary swaps which value is shown
        pair_gaps = _differences(compared(answered_base), compared(answered_moved), compared.scale)
    else:
        pair_gaps = _differences(answered_base, answered_moved, scale, step, bits)
    if quantised:  # the even pairs move features at rest too, which half precision reads: a rounding step
        pair_gaps = pair_gaps[odd]
    reask_tolerance = QUANTISED_REASK_TOLERANCE if quantised else REASK_TOLERANCE
    reask_differing = int((reask_gaps > reask_tolerance).sum())
    pairs_differing = int((pair_gaps > PAIR_TOLERANCE).sum())

    # jumps: from the rest point (first half) and data-like inputs towards inputs already asked, every
    # other segment only SHORT of the way (a switch at its start then outweighs the model's own change)
    ends = rng.choice(len(inputs), size=segments, replace=segments > len(inputs))
    # (with the owner's data, every segment starts from it and runs the whole way: a router that
    # passes real data to the copy switches somewhere between such a start and a probe)
    from_rest = 0 if anchors is not None else (segments + 1) // 2
    starts = np.concatenate([np.repeat(rest_point(domain), from_rest, axis=0),
                             like_data(segments - from_rest)]).astype(np.float64)
    targets = inputs[ends].astype(np.float64)
    short = (np.arange(segments) % 2 == 1) & (anchors is None)
    targets[short] = starts[short] + SHORT * (targets[short] - starts[short])
    target_answers = answers[ends].astype(np.float64)
    if short.any():
        target_answers[short] = model(targets[short].astype(np.float32))
    pieces, jumping = (segment_jumps(model, starts, targets, target_answers, compared, quantised=quantised)
                       if segments else (np.zeros(0), np.zeros(0, dtype=bool)))
    jump_sizes = np.where(jumping, pieces, 0.0)
    jumps = int((jump_sizes > JUMP_TOLERANCE).sum())

    evasive = (fires(reask_differing, len(reask_gaps)) or fires(pairs_differing, len(pair_gaps))
               or (segments > 0 and jumps >= MIN_JUMPS))
    return EvasionCheck(evasive=evasive, reasked=len(reask_gaps), reask_differing=reask_differing,
                        reask_max=float(reask_gaps.max(initial=0.0)), pairs=len(pair_gaps),
                        pairs_differing=pairs_differing, pairs_max=float(pair_gaps.max(initial=0.0)),
                        queries=model.queries - before, scale=scale, segments=int(segments), jumps=jumps,
                        jumps_max=float(jump_sizes.max(initial=0.0)), pieces_max=float(pieces.max(initial=0.0)),
                        anchored=anchors is not None, quantised=quantised, reask_tolerance=reask_tolerance)
