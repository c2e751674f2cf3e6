"""The project's data-free probes: points at the centres of the owner's linear regions.

White-box (the owner is a torch module, or imports into one): draw candidate points in
the domain, keep those whose activation patterns differ, move each to the Chebyshev
centre of its linear region (a linear program, :mod:`tafa.relu.regions`), and give it a
step below the region's radius, so that ``x +- h u`` stays inside the owner's region.

Black-box (the owner cannot be imported, or uses operations the analysis cannot freeze):
each random point gets the largest step from a ladder at which the owner's finite
differences are still linear (``D(h) == D(h/2)`` to 1% of their size, above float32 noise), which is the black-box
signature of staying inside one region. The probes record which path was taken.

The strategy works on the owner's side only; torch and the white-box analysis
(:mod:`tafa.relu`) are imported by the functions that run it, so that verifying a suspect
against these probes needs numpy alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import hashlib
import math
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..domain import Domain
from ..errors import InvalidParameter, check_param, is_integer
from ..functional import central_differences, local_cosines, rowwise_cosine, stepped_inputs
from ..models.base import Model, TorchModel, module_dtype, module_hash
from .base import (CostPlan, ProbeStrategy, Probes, direction_groups, orthonormal_directions, register_probes,
                   unavailable_reason)
from .cost import MACS_PER_SECOND, counting_macs

if TYPE_CHECKING:
    import torch

    from ..references import References

#: Above this many input features the analysis and the region LP work in a subspace of
#: :data:`SUBSPACE` dimensions that holds the probe's directions (the slice its steps use).
FULL_LP_MAX_FEATURES = 256
SUBSPACE = 64
#: Slice dimensions a time budget falls back to, largest first (never below the directions).
SMALLER_SLICES = (32, 16, 8)
#: Bound on the switches one chunk of the linearisation holds (bytes): the rows per forward
#: pass follow from it (see :func:`tafa.relu.linearise.linearise`).
CHUNK_BYTES = 512 * 2 ** 20
#: Cost model of one region LP in seconds, ``a + b q^2 + c P q`` for P switches in q
#: dimensions (HiGHS on the working rows, then the violation checks over every switch;
#: fitted on a 2-core x86 machine): in a slice, and in the whole (small) input space.
LP_SLICE_SECONDS = (0.03, 3e-5, 1.5e-8)
LP_FULL_SECONDS = (0.02, 3e-6, 1.5e-8)
#: Rungs of the black-box linearity ladder the cost model assumes (its worst case for the
#: default step bounds).
LADDER_RUNGS = 3
#: Precisions of the white-box analysis (names of torch dtypes).
ANALYSIS_DTYPES = ("float64", "float32")
#: Seconds per switch and analysed row on one idle core of the reference machine (recording,
#: differencing and storing the switch Jacobians; the forward pass itself is priced by
#: :data:`tafa.probes.cost.MACS_PER_SECOND`).
SWITCH_ROW_SECONDS = {"float32": 1e-8, "float64": 1.5e-8}


def _finite(value: float) -> float | None:
    """``value`` as a float, or ``None`` where it is infinite (a fingerprint's header is JSON)."""
    return float(value) if math.isfinite(value) else None


@register_probes("relu")
class ReluProbes(ProbeStrategy):
    """Region-centred probes (see module doc).

    ``move``: how far (per feature, as a fraction of the domain's width) a point may move
    towards its region's centre; ``step_fraction``: the step as a fraction of the radius;
    ``min_step``/``max_step``: bounds on the step as fractions of the domain's width;
    ``group``: consecutive probes share their directions in groups of this size, so that a
    signature can compare how the local map changes from region to region;
    ``invert_steps``: if > 0, candidates are first pulled towards where the owner is
    confident (Adam steps on the cross-entropy to a random target output, clipped to the
    domain): data-free pseudo-data, closer to what training shaped than uniform draws;
    ``select_from``: if > 1 and reference models are given, ``select_from`` times as many
    direction groups are made and the ``n / group`` groups where the positive and negative
    references disagree most are kept (:func:`select_groups`); with a
    :attr:`~tafa.probes.base.ProbeStrategy.candidate_cache`, the candidates are made once
    per owner and reused by selections with other references.

    What a time budget may change (:meth:`plan`; each recorded in the scheme, so a
    fingerprint is re-created the same way): ``slice_dim``, the dimension of the slice the
    analysis and the LP work in (``None``: the whole input space up to
    :data:`FULL_LP_MAX_FEATURES` features, else :data:`SUBSPACE`); ``centre_limit``, how
    many probes (the first ones) are moved by the LP, the others keep their drawn point and
    the distance to the nearest switch in their slice as radius (``None``: all);
    ``analysis_dtype``, ``"float64"`` (exact to rounding) or ``"float32"`` (the analysis
    at float32 precision, several times faster on convolutions); ``black_box``: the
    linearity ladder instead of the white-box analysis. ``chunk_rows`` bounds the rows of
    one forward pass of the analysis (``None``: from :data:`CHUNK_BYTES`); it never changes
    the probes.
    """

    def __init__(self, move: float = 0.1, step_fraction: float = 0.5, min_step: float = 1e-3,
                 max_step: float = 0.05, oversample: float = 1.5, centre_points: bool = True,
                 group: int = 8, invert_steps: int = 0, select_from: int = 1, slice_dim: int | None = None,
                 centre_limit: int | None = None, analysis_dtype: str = "float64", black_box: bool = False,
                 chunk_rows: int | None = None) -> None:
        check_param("select_from", select_from, "an integer >= 1", isinstance(select_from, int) and select_from >= 1,
                    caller="ReluProbes")
        check_param("slice_dim", slice_dim, "None or an integer >= 1",
                    slice_dim is None or (is_integer(slice_dim) and slice_dim >= 1), caller="ReluProbes")
        check_param("centre_limit", centre_limit, "None or an integer >= 0",
                    centre_limit is None or (is_integer(centre_limit) and centre_limit >= 0), caller="ReluProbes")
        check_param("analysis_dtype", analysis_dtype, f"one of {sorted(ANALYSIS_DTYPES)}",
                    analysis_dtype in ANALYSIS_DTYPES, caller="ReluProbes")
        check_param("black_box", black_box, "True or False", isinstance(black_box, bool), caller="ReluProbes")
        check_param("chunk_rows", chunk_rows, "None or an integer >= 2",
                    chunk_rows is None or (is_integer(chunk_rows) and chunk_rows >= 2), caller="ReluProbes")
        self.slice_dim = slice_dim
        self.centre_limit = centre_limit
        self.analysis_dtype = analysis_dtype
        self.black_box = black_box
        self.chunk_rows = chunk_rows
        self.select_from = select_from
        self.group = group
        self.invert_steps = invert_steps
        self.move = move
        self.step_fraction = step_fraction
        self.min_step = min_step
        self.max_step = max_step
        self.oversample = oversample
        self.centre_points = centre_points

    def select(self, owner: Model, domain: Domain, *, n: int, k: int, seed: int,
               progress: bool = False, data: np.ndarray | None = None,
               references: References | None = None) -> Probes:
        rng = np.random.default_rng(seed)
        module = owner.torch_module()
        reason = unavailable_reason(owner) if module is None else ""
        if module is not None and self.black_box:
            reason = "the time budget chose the linearity check over the white-box analysis"
        elif module is not None:
            import torch

            from ..relu.linearise import NotPiecewiseLinear, check_head_on_top

            analysed = copy.deepcopy(module).to(getattr(torch, self.analysis_dtype)).eval()
            try:
                check_head_on_top(analysed, domain.sample(1, rng)[0])
            except NotPiecewiseLinear as error:
                reason = str(error)
            else:
                if self.select_from == 1 or references is None or not references.positives \
                        or not references.negatives:
                    return self._white_box(analysed, domain, n, k, rng, progress)

                def candidates() -> Probes:
                    return self._white_box(analysed, domain, n * self.select_from, k, rng, progress)

                if self.candidate_cache is None:
                    return select_groups(candidates(), module, references, n, progress)
                # the candidates depend on the owner's weights and architecture, the domain, the
                # sizes, the seed and the parameters, never on the references
                key = (module_hash(analysed), repr(analysed), repr(domain.to_dict()), n, k, seed,
                       repr(sorted((name, value) for name, value in vars(self).items() if name != "candidate_cache")))
                return select_groups(self.candidate_cache.get(key, candidates), module, references, n, progress)
        return self._black_box(owner, domain, n, k, rng, progress, reason)

    def plan(self, owner: Model, domain: Domain, *, n: int, k: int, signature_queries: int,
             budget: float | None) -> CostPlan | None:
        """The cost of these probes and the owner's signature, counted on one pass
        (:func:`network_work`) and priced at the reference machine's nominal speed
        (:data:`MACS_PER_SECOND`), and, over ``budget`` seconds, the first of these that fits
        (else the cheapest):
        float32 analysis; smaller slices (:data:`SMALLER_SLICES`, then the directions
        alone); LPs for fewer probes, then none (the radius is the distance to the nearest
        switch in the slice); the owner's int8 self-check left out; the black-box linearity
        ladder. A strategy whose parameters already fix the analysis is not re-planned."""
        module = owner.torch_module()
        if module is None or self.black_box:
            return None
        d = int(np.prod(domain.shape))
        candidates = n * self.select_from
        centring = self.centre_points
        base_q = self._slice(d, k)
        base_centred = n if self.centre_limit is None else min(n, self.centre_limit)

        work = network_work(module, domain)
        if work is None:
            return None
        macs, switches = work
        row_seconds = {dtype: macs / MACS_PER_SECOND[dtype] + switches * SWITCH_ROW_SECONDS[dtype]
                       for dtype in ANALYSIS_DTYPES}
        query_seconds = signature_queries * macs / MACS_PER_SECOND["float32"]

        def estimate(q: int | None, dtype: str, centred: int, owner_check: bool) -> float:
            width = d if q is None else q
            analysis = candidates * (width + 1) * row_seconds[dtype]
            fixed, square, per_switch = LP_FULL_SECONDS if q is None else LP_SLICE_SECONDS
            lps = (centred * self.select_from if centring else 0) * (
                fixed + square * width ** 2 + per_switch * switches * width)
            return analysis + lps + query_seconds * (2 if owner_check else 1)

        def summary(q: int | None, dtype: str, centred: int) -> str:
            where = f"the full {d}-dim input space" if q is None else f"{q}-dim slices"
            lps = f"{centred * self.select_from if centring else 0} LPs"
            return f"{candidates} probes, {lps} in {where}" + (", float32 analysis" if dtype == "float32" else "")

        exact = CostPlan(estimate(base_q, self.analysis_dtype, base_centred, True),
                         summary(base_q, self.analysis_dtype, base_centred))
        if budget is None or exact.seconds <= budget or self._planned():
            return exact
        options: list[CostPlan] = []
        params: dict[str, Any] = {}
        shortcuts: list[str] = []
        dtype, q = self.analysis_dtype, base_q
        if dtype != "float32":
            dtype = "float32"
            params["analysis_dtype"], shortcuts = dtype, ["float32 analysis"]
            options.append(CostPlan(estimate(q, dtype, base_centred, True), summary(q, dtype, base_centred),
                                    dict(params), list(shortcuts)))
        width = d if q is None else q
        for smaller in (*SMALLER_SLICES, k):
            if k <= smaller < width:
                q = width = smaller
                params["slice_dim"] = q
                shortcuts = [s for s in shortcuts if "slice" not in s] + [f"{q}-dim analysis slices"]
                options.append(CostPlan(estimate(q, dtype, base_centred, True), summary(q, dtype, base_centred),
                                        dict(params), list(shortcuts)))
        if centring:
            for centred in sorted({base_centred // 2, base_centred // 4, 0}, reverse=True):
                if centred < base_centred:
                    options.append(CostPlan(
                        estimate(q, dtype, centred, True), summary(q, dtype, centred),
                        {**params, "centre_limit": centred},
                        [*shortcuts, f"LPs for {centred} of {n} probes (the others: nearest-switch radius)"]))
            params["centre_limit"] = 0
            shortcuts = [*shortcuts, f"LPs for 0 of {n} probes (the others: nearest-switch radius)"]
        options.append(CostPlan(estimate(q, dtype, 0, False), summary(q, dtype, 0), dict(params),
                                [*shortcuts, "no int8 self-check"], owner_check=False))
        ladder = (LADDER_RUNGS * 2 * n * 2 * max(k, 1) * macs / MACS_PER_SECOND["float32"]) + query_seconds
        options.append(CostPlan(ladder, f"{n} probes, black-box linearity ladder", {"black_box": True},
                                ["black-box linearity check instead of the white-box analysis", "no int8 self-check"],
                                owner_check=False))
        fitting = [option for option in options if option.seconds <= budget]
        return fitting[0] if fitting else min(options, key=lambda option: option.seconds)

    def _planned(self) -> bool:
        """Whether the parameters already fix a cheaper analysis (a plan was taken before)."""
        return (self.slice_dim is not None or self.centre_limit is not None or self.analysis_dtype != "float64"
                or self.black_box)

    def _step_bounds(self, domain: Domain) -> tuple[float, float]:
        scale = domain.scale()
        return self.min_step * scale, self.max_step * scale

    def _white_box(self, module: torch.nn.Module, domain: Domain, n: int, k: int,
                   rng: np.random.Generator, progress: bool) -> Probes:
        from ..relu.linearise import CHUNK_ROWS, count_switches, linearise
        from ..relu.regions import centre, slice_radius

        lo, hi = domain.bounds()
        delta = self.move * domain.scale()
        candidates = domain.sample(int(math.ceil(n * self.oversample)), rng)
        if self.invert_steps > 0:
            candidates = invert_in(module, candidates, domain, self.invert_steps, rng)
        seen: set[str] = set()
        points: list[np.ndarray] = []
        radii: list[float] = []
        methods: list[str] = []
        directions = orthonormal_directions(n, k, domain.shape, rng, self.group)
        d = int(np.prod(domain.shape))
        bar = tqdm(total=n, desc="probes: region centres", disable=not progress, leave=False)

        q = self._slice(d, k)
        chunk_rows = self.chunk_rows

        def slice_of(i: int) -> np.ndarray | None:
            """Basis of the slice analysed for probe ``i`` (None: the whole input space)."""
            if q is None:
                return None
            extra = rng.normal(size=(d, max(0, q - k)))
            return np.linalg.qr(np.hstack([directions[i].reshape(k, d).T, extra]))[0]

        def analyse(x0: np.ndarray, basis: np.ndarray | None):
            nonlocal chunk_rows
            if chunk_rows is None:  # from the switch count, known after the first pass
                switches = count_switches(module, x0)
                width = 4 if self.analysis_dtype == "float32" else 8
                chunk_rows = int(np.clip(CHUNK_BYTES // max(1, switches * width), 2, CHUNK_ROWS))
            return linearise(module, x0, basis, chunk_rows=chunk_rows)

        limit = n if self.centre_limit is None else self.centre_limit
        for x0 in candidates:
            if len(points) == n:
                break
            basis = slice_of(len(points))
            lin = analyse(x0, basis)
            key = hashlib.sha1(np.packbits(lin.pattern()).tobytes()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            if self.centre_points and len(points) < limit:
                moved = centre(lin, x0, lo, hi, delta, basis)
                point, radius, method = moved.point, moved.radius, moved.method
            elif self.centre_points:
                point, radius, method = x0, slice_radius(lin, x0, lo, hi), "none"
            else:
                point, radius, method = x0, lin.radius(), "none"
            del lin  # free the switch Jacobians before the next probe's
            points.append(point)
            radii.append(radius)
            methods.append(method)
            bar.update(1)
        bar.close()
        while len(points) < n:  # every candidate shared a pattern: top up with plain draws
            x0 = domain.sample(1, rng)[0]
            radii.append(analyse(x0, slice_of(len(points))).radius())
            points.append(x0)
            methods.append("none")
        radii_array = np.asarray(radii)
        low, high = self._step_bounds(domain)
        steps = np.clip(self.step_fraction * radii_array, low, high)
        info: dict[str, Any] = {
            "strategy": "relu", "analysis": "white-box",
            "centring": ("lp" if q is None else f"lp in the {q}-dimensional slice of the directions")
            + ("" if self.centre_limit is None or not self.centre_points
               else f" for the first {min(n, self.centre_limit)} probes, nearest-switch radius for the others"),
            # a network with no ReLU (one linear region) has no switch: an infinite radius, stored as null
            "radius_median": _finite(np.median(radii_array)), "radius_min": _finite(radii_array.min()),
            "centred": int(sum(method == "lp" for method in methods)),
            "distinct_patterns": len(seen),
        }
        if self.analysis_dtype != "float64":
            info["analysis_dtype"] = self.analysis_dtype
        return Probes(np.stack(points), directions, steps, extra=self._groups(n), info=info)

    def _slice(self, d: int, k: int) -> int | None:
        """Dimension of the analysed slice (None: the whole input space)."""
        if self.slice_dim is None:
            return None if d <= FULL_LP_MAX_FEATURES else SUBSPACE
        q = max(self.slice_dim, k)
        return None if q >= d else q

    def _groups(self, n: int) -> dict[str, np.ndarray]:
        return {"group": direction_groups(n, self.group).astype(float)}

    def _black_box(self, owner: Model, domain: Domain, n: int, k: int, rng: np.random.Generator,
                   progress: bool, reason: str) -> Probes:
        points = domain.sample(n, rng)
        directions = orthonormal_directions(n, k, domain.shape, rng, self.group)
        low, high = self._step_bounds(domain)
        ladder = [high / 4 ** i for i in range(8) if high / 4 ** i >= low] or [low]
        steps = np.full(n, ladder[-1])
        settled = np.zeros(n, dtype=bool)
        # outputs only (no directions, e.g. tafa-extract): no finite differences, no step to choose
        for h in tqdm(ladder if k > 0 else [], desc="probes: linearity ladder", disable=not progress, leave=False):
            pending = np.flatnonzero(~settled)
            if pending.size == 0:
                break
            big = _finite_differences(owner, points[pending], directions[pending], h)
            small = _finite_differences(owner, points[pending], directions[pending], h / 2)
            scale = np.maximum(np.abs(big).max(axis=(1, 2)), 1e-12)
            linear = np.abs(big - small).max(axis=(1, 2)) <= 1e-2 * scale
            steps[pending[linear]] = h
            settled[pending[linear]] = True
        info = {"strategy": "relu", "analysis": f"black-box ({reason})",
                "linear_at_step": int(settled.sum()), "step_median": float(np.median(steps))}
        return Probes(points, directions, steps, extra=self._groups(n), info=info)


def network_work(module: torch.nn.Module, domain: Domain) -> tuple[float, int] | None:
    """What one row of the analysis costs, counted (not timed): the multiply-accumulates of
    one forward pass (:func:`~tafa.probes.cost.counting_macs`) and the number of switches.
    ``None`` when the owner cannot be analysed."""
    from ..relu.linearise import NotPiecewiseLinear, count_switches

    analysed = copy.deepcopy(module).float().eval()
    try:
        with counting_macs(analysed) as macs:
            switches = count_switches(analysed, domain.sample(1, np.random.default_rng(0))[0])
    except NotPiecewiseLinear:
        return None
    return macs[0], switches


def select_groups(candidates: Probes, owner: torch.nn.Module, references: References, n: int,
                  progress: bool = False) -> Probes:
    """The ``n`` probes (whole direction groups) of ``candidates`` where the references
    disagree most.

    Every reference is measured black-box at the candidates (outputs and finite differences,
    as a suspect will be); per probe, its group-centred and raw derivative cosines with the
    owner's are the evidence. A probe's discrimination is the Fisher ratio of that evidence
    between the positive and the negative references (difference of means over the pooled
    standard deviation), averaged over the two; a group's is the mean over its probes, and the
    best ``n / group`` groups are kept (ties: earlier first). The selection is recorded in the
    probes' info.
    """
    directions, steps = candidates.directions, candidates.steps
    assert directions is not None and steps is not None
    groups = candidates.extra["group"].astype(int)
    labels = np.unique(groups)
    size = len(candidates) // len(labels)
    keep_groups = n // size if n % size == 0 else None
    if keep_groups is None or keep_groups > len(labels):
        raise InvalidParameter(f"Selecting {n} probes from groups of {size} needs n to be a multiple of the group "
                               f"size and at most {len(candidates)}.")
    shape = candidates.points.shape[1:]

    def derivatives_of(module: torch.nn.Module) -> np.ndarray:
        return _finite_differences(TorchModel(module.eval(), shape), candidates.points, directions, steps)

    owner_derivatives = derivatives_of(owner)

    def features(module: torch.nn.Module) -> np.ndarray:
        derivatives = derivatives_of(module)
        return np.stack([local_cosines(owner_derivatives, derivatives, groups),
                         rowwise_cosine(owner_derivatives, derivatives)])

    models = [*references.positives, *references.negatives]
    rows = np.stack([features(m) for m in tqdm(models, desc="probes: selection", disable=not progress,
                                                 leave=False)])
    positive, negative = rows[:len(references.positives)], rows[len(references.positives):]
    fisher = (positive.mean(0) - negative.mean(0)) / np.sqrt(0.5 * (positive.var(0) + negative.var(0)) + 1e-4)
    per_probe = fisher.mean(0)
    group_scores = np.array([per_probe[groups == label].mean() for label in labels])
    chosen = labels[np.sort(np.argsort(-group_scores, kind="stable")[:keep_groups])]
    keep = np.flatnonzero(np.isin(groups, chosen))
    relabel = {int(label): i for i, label in enumerate(chosen)}
    info = dict(candidates.info, selected=f"{keep_groups} of {len(labels)} direction groups by reference "
                "disagreement", selection_positives=len(references.positives),
                selection_negatives=len(references.negatives),
                selection_fisher_kept=float(group_scores[np.isin(labels, chosen)].mean()),
                selection_fisher_all=float(group_scores.mean()))
    extra = {"group": np.array([relabel[int(g)] for g in groups[keep]], dtype=float)}
    return Probes(candidates.points[keep], directions[keep], steps[keep], extra=extra, info=info)


def invert_in(module: torch.nn.Module, points: np.ndarray, domain: Domain, steps: int,
              rng: np.random.Generator) -> np.ndarray:
    """:func:`invert` within ``domain``, at the probes' step size (5% of the domain's width),
    seeded from ``rng``."""
    lo, hi = domain.bounds()
    return invert(module, points, lo, hi, steps, int(rng.integers(2 ** 31)), lr=0.05 * domain.scale())


def invert(module: torch.nn.Module, points: np.ndarray, lo: np.ndarray, hi: np.ndarray, steps: int, seed: int,
           lr: float) -> np.ndarray:
    """``points`` moved by Adam towards inputs the owner maps confidently to a random output
    coordinate each (cross-entropy over the flattened outputs), clipped to ``[lo, hi]``. A
    half-precision owner is pulled in a float32 copy (Adam's steps underflow in float16: NaN inputs)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    dtype = module_dtype(module)
    if dtype in (torch.float16, torch.bfloat16):
        module, dtype = copy.deepcopy(module).float(), torch.float32
    x = torch.as_tensor(points, dtype=dtype).clone().requires_grad_(True)
    low, high = torch.as_tensor(lo, dtype=dtype), torch.as_tensor(hi, dtype=dtype)
    with torch.no_grad():
        width = module(x[:1]).reshape(1, -1).shape[1]
    target = torch.randint(0, width, (len(points),), generator=generator)
    optimiser = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(module(x).reshape(len(points), -1), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            x.data = torch.maximum(torch.minimum(x.data, high), low)
    return x.detach().double().numpy()


def _finite_differences(model: Model, points: np.ndarray, directions: np.ndarray, h: float | np.ndarray) -> np.ndarray:
    """Central differences ``(n, k, m)`` of ``model`` at ``points`` along ``directions``, with
    one step ``h`` or one per point."""
    n, k = directions.shape[:2]
    return central_differences(model(stepped_inputs(points, directions, h)), n, k, h)
