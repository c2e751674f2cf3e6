"""The project's data-free probes: points at the centres of the owner's linear regions.

White-box (the owner is a torch module, or imports into one): draw candidate points in
the domain, keep those whose activation patterns differ, move each to the Chebyshev
centre of its linear region (a linear program, :mod:`tafa.relu.regions`), and give it a
step below the region's radius, so that ``x +- h u`` stays inside the owner's region.

Black-box (the owner cannot be imported, or uses operations the analysis cannot freeze):
each random point gets the largest step from a ladder at which the owner's finite
differences are still linear (``D(h) == D(h/2)`` to 1% of their size, above float32 noise), which is the black-box
signature of staying inside one region. The probes record which path was taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
import hashlib
import math
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..domain import Domain
from ..errors import InvalidParameter, check_param
from ..functional import central_differences, local_cosines, rowwise_cosine, stepped_inputs
from ..models.base import Model, TorchModel, module_dtype, module_hash
from ..relu.linearise import NotPiecewiseLinear, check_head_on_top, linearise
from ..relu.regions import centre
from .base import ProbeStrategy, Probes, direction_groups, orthonormal_directions, register_probes

if TYPE_CHECKING:
    from ..references import References

#: Above this many input features the analysis and the region LP work in a subspace of
#: :data:`SUBSPACE` dimensions that holds the probe's directions (the slice its steps use).
FULL_LP_MAX_FEATURES = 256
SUBSPACE = 64

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
    """

    def __init__(self, move: float = 0.1, step_fraction: float = 0.5, min_step: float = 1e-3,
                 max_step: float = 0.05, oversample: float = 1.5, centre_points: bool = True,
                 group: int = 8, invert_steps: int = 0, select_from: int = 1) -> None:
        check_param("select_from", select_from, "an integer >= 1", isinstance(select_from, int) and select_from >= 1,
                    caller="ReluProbes")
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
        reason = "the owner is not available as a torch module"
        if module is not None:
            analysed = copy.deepcopy(module).double().eval()
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

    def _step_bounds(self, domain: Domain) -> tuple[float, float]:
        scale = domain.scale()
        return self.min_step * scale, self.max_step * scale

    def _white_box(self, module: torch.nn.Module, domain: Domain, n: int, k: int,
                   rng: np.random.Generator, progress: bool) -> Probes:
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

        def slice_of(i: int) -> np.ndarray | None:
            """Basis of the slice analysed for probe ``i`` (None: the whole input space)."""
            if d <= FULL_LP_MAX_FEATURES:
                return None
            extra = rng.normal(size=(d, max(0, SUBSPACE - k)))
            return np.linalg.qr(np.hstack([directions[i].reshape(k, d).T, extra]))[0]

        for x0 in candidates:
            if len(points) == n:
                break
            basis = slice_of(len(points))
            lin = linearise(module, x0, basis)
            key = hashlib.sha1(np.packbits(lin.pattern()).tobytes()).hexdigest()
            if key in seen:
                continue
            seen.add(key)
            if self.centre_points:
                moved = centre(lin, x0, lo, hi, delta, basis)
                point, radius, method = moved.point, moved.radius, moved.method
            else:
                point, radius, method = x0, lin.radius(), "none"
            points.append(point)
            radii.append(radius)
            methods.append(method)
            bar.update(1)
        bar.close()
        while len(points) < n:  # every candidate shared a pattern: top up with plain draws
            x0 = domain.sample(1, rng)[0]
            radii.append(linearise(module, x0, slice_of(len(points))).radius())
            points.append(x0)
            methods.append("none")
        radii_array = np.asarray(radii)
        low, high = self._step_bounds(domain)
        steps = np.clip(self.step_fraction * radii_array, low, high)
        info: dict[str, Any] = {
            "strategy": "relu", "analysis": "white-box",
            "centring": "lp" if d <= FULL_LP_MAX_FEATURES
            else f"lp in the {SUBSPACE}-dimensional slice of the directions",
            "radius_median": float(np.median(radii_array)), "radius_min": float(radii_array.min()),
            "centred": int(sum(method == "lp" for method in methods)),
            "distinct_patterns": len(seen),
        }
        return Probes(np.stack(points), directions, steps, extra=self._groups(n), info=info)

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
        for h in tqdm(ladder, desc="probes: linearity ladder", disable=not progress, leave=False):
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
    coordinate each (cross-entropy over the flattened outputs), clipped to ``[lo, hi]``."""
    generator = torch.Generator().manual_seed(seed)
    dtype = module_dtype(module)
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
