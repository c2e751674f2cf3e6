"""The decision rule: one object answers "does this evidence fire at this alpha?" for every caller.

``tafa verify``, the registry, ``tafa scan`` and ``tafa bench`` all decide with a :class:`Rule`:
one threshold per stage (:class:`~tafa.decide.threshold.Calibration`), each calibrated on the
same references at ``alpha / len(stages)``, and "derived" when *any* stage's score is above its
own threshold. An independent model is declared derived only if some stage wrongly fires; each
does so with probability at most its own bound, so the rule's bound is their sum (Bonferroni),
whatever the dependence between the stages. A later stage need not run once an earlier one
fires, and skipping it never adds a false positive. A fingerprint with one stage has a rule
with one stage: nothing special-cases the count.

How many stages a set of references can calibrate is decided here too
(:meth:`Rule.stages_supported`): every stage when each one's share of alpha is supported (by
rank, or with the parametric tail when it was asked for), else the first ones, as many as
their shares are supported (the first alone at the whole alpha at least), and the rule says so.

A stage whose evidence is an exact p-value (the weight test of a suspect that arrives as a
file, :mod:`tafa.weights`) joins the rule with :meth:`Rule.with_exact`: it gets the part of
alpha the calibrated stages' rank bounds leave unused, or, when they use all of it, a small
share (:data:`EXACT_SHARE`) taken from them where their references still support the rest.

>>> rule = Rule.calibrate([[0.1, 0.2, 0.3], [0.5, 0.6, 0.7]], ["first", "second"], alpha=0.5)
>>> [c.alpha_requested for c in rule.stages], rule.bound, rule.supports_alpha
([0.25, 0.25], 0.5, True)
>>> rule.fires([0.35, 0.1]), rule.fires([0.2, 0.75]), rule.fires([0.2, None])
(True, True, False)
>>> rule.decide([0.2, 0.75]).value, round(rule.p_value([0.2, 0.75]), 3)
('derived', 0.5)
>>> Rule.stages_supported(3, 0.5, 2, parametric=False), Rule.stages_supported(2, 0.5, 2, parametric=False)
(2, 1)
>>> Rule.stages_supported(40, 0.05, 3, parametric=False), Rule.stages_supported(59, 0.05, 3, parametric=False)
(2, 3)
>>> Rule.calibrate([[0.1, 0.2, 0.3]], ["tafa"], alpha=0.01).decide([0.9]).value  # 3 references: 1/4 at best
'undecided'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InvalidParameter, RefusedReference, check_param
from .multiple import attained_bound, max_t_threshold, max_t_unknown
from .threshold import BoundMethod, Calibration, calibrate, exact_calibration, references_needed

#: Of the alpha the black-box stages would use, the fraction given up to an exact stage (the
#: weight test) when their rank bounds leave no slack (:meth:`Rule.with_exact`).
EXACT_SHARE = 1e-3


class Decision(StrEnum):
    """A verdict's decision (``.value`` is what the JSON and the registry say)."""

    DERIVED = "derived"
    INDEPENDENT = "independent"
    UNDECIDED = "undecided"
    #: The suspect answers the same input differently depending on how it is asked (alone, in
    #: another batch, beside a near input of another style): no fixed function does, so its score
    #: need not describe the model its users get (:mod:`tafa.signature.consistency`).
    EVASIVE = "evasive"


DECISIONS = tuple(decision.value for decision in Decision)


@dataclass
class Rule:
    """The calibrated decision rule of a fingerprint (see module doc): its stages' thresholds,
    their names, the alpha asked for, and what was done to the references (``notes``)."""

    stages: list[Calibration]
    names: list[str]
    alpha_requested: float
    notes: list[str] = field(default_factory=list)
    #: Each stage's fraction of alpha (``None``: equal shares).
    shares: list[float] | None = None
    #: The one-stage rule at the fingerprint's coarse scale (:mod:`tafa.signature.scales`), from the
    #: same references: it decides, alone and at the whole alpha, a suspect whose answers at the
    #: fingerprint's step are not a ReLU network's (``None``: none made).
    coarse: "Rule | None" = None
    #: The rule of the coarse scale and the label stage together (:mod:`tafa.label_stage`), from the
    #: same references: it decides a suspect whose answers keep little more than labels, when the
    #: fingerprint has a label stage (``None``: none made).
    coarse_labels: "Rule | None" = None
    #: Rules made for single suspects (by name) whose first stage was measured at fewer probes (a
    #: clipped suspect, compared where its answers are inside the clip: :mod:`tafa.signature.censoring`),
    #: from the same references' scores at those probes.
    per_suspect: "dict[str, Rule]" = field(default_factory=dict)
    #: Of a rule made for one suspect by :meth:`joint`: its max-T p-value, the smallest over its
    #: stages (``None``: any other rule).
    joint_p: float | None = None
    #: The references' scores at every stage of the fingerprint, kept with a stored rule (one row
    #: per reference the rule kept, one column per stage, named ``table_names``), so that a rule
    #: stored at one alpha can decide at another the way ``tafa verify --references`` does: the
    #: stages together by max-T (:meth:`joint`) where the references are too few for every
    #: stage's share but enough for the alpha itself (:meth:`decides_jointly`). ``None``: not kept.
    table: np.ndarray | None = field(default=None, compare=False)
    table_names: list[str] | None = None

    def __post_init__(self) -> None:
        check_param("stages", len(self.stages), "one calibration per name (at least one)",
                    len(self.stages) >= 1 and len(self.stages) == len(self.names), caller="Rule")
        if self.shares is not None:
            check_param("shares", self.shares, "one fraction per stage, summing to at most 1",
                        len(self.shares) == len(self.stages) and all(share > 0 for share in self.shares)
                        and sum(self.shares) <= 1 + 1e-9, caller="Rule")

    @property
    def fractions(self) -> list[float]:
        """Each stage's fraction of :attr:`alpha_requested`."""
        return list(self.shares) if self.shares is not None else [1.0 / len(self.stages)] * len(self.stages)

    # ------------------------------------------------------------------ making one
    @staticmethod
    def stages_supported(n_references: int, alpha: float, available: int, *, parametric: bool) -> int:
        """How many of ``available`` stages ``n_references`` references calibrate at ``alpha``:
        all of them when each one's share ``alpha / available`` is reachable by rank (or a
        parametric tail was asked for), else the most of the first ones whose equal shares are
        (the first alone, at the whole ``alpha``, at least)."""
        if available <= 1 or parametric:
            return max(1, available)
        return max([1] + [count for count in range(2, available + 1)
                          if n_references >= references_needed(alpha / count)])

    @classmethod
    def calibrate(cls, stage_scores: Sequence[Sequence[float]], names: Sequence[str], alpha: float, *,
                  parametric: bool = False, notes: Sequence[str] = (), available: int | None = None,
                  left_out: Sequence[str] = ()) -> "Rule":
        """Each stage's threshold at ``alpha / len(stage_scores)`` from the same references' scores
        at that stage. ``available``: the stages the fingerprint has, when fewer were calibrated
        (:meth:`stages_supported`); the rule then notes which decide (``left_out``: the names of the
        others, said with what would bring them in)."""
        check_param("stage_scores", len(stage_scores), "one list of scores per stage (at least one)",
                    len(stage_scores) >= 1 and len(stage_scores) == len(names), caller="Rule.calibrate")
        check_param("alpha", alpha, "a number in (0, 1)", 0 < alpha < 1, caller="Rule.calibrate")
        share = float(alpha) / len(stage_scores)
        stages = [calibrate(list(scores), share, parametric=parametric) for scores in stage_scores]
        notes = list(notes)
        if available is not None and available > len(stages):
            n = stages[0].n_references
            deciding = "the first stage decides alone" if len(stages) == 1 else (
                f"the first {len(stages)} decide ({', '.join(names)}), each at 1/{len(stages)} of it")
            missing = (f"; not run: {', '.join(left_out)} ({references_needed(alpha / available)} references, or "
                       "--parametric, bring every stage in)") if left_out else ""
            notes.append(f"{n} references are too few for all {available} stages at {alpha:g} (each stage gets "
                         f"1/{available} of it: {references_needed(alpha / available)} references by rank); "
                         f"{deciding}{missing}")
        return cls(stages, list(names), float(alpha), notes)

    @classmethod
    def from_references(cls, names: Sequence[str], scores: Sequence[float], alpha: float, *,
                        stage_names: Sequence[str], copy_line: float | None = None, parametric: bool = False,
                        notes: Iterable[str] = (),
                        later: Callable[[list[int]], Iterable[list[float]]] | None = None) -> "Rule":
        """The rule from distinct references' first-stage ``scores`` (``names`` name them in
        notes), as ``tafa verify`` and the benchmark both make it: references scoring at or above
        ``copy_line`` (near the owner's own int8 copy) are left out as probable copies of the
        owner (every one of them: :class:`~tafa.errors.RefusedReference`); then as many of the
        ``stage_names`` as the rest support (:meth:`stages_supported`) are calibrated, the later
        stages' scores of the kept references coming from ``later(kept indices)``, called only
        when they are needed and read only as far as the stages calibrated (a generator
        measures no stage the references cannot calibrate)."""
        notes = list(notes)
        keep = list(range(len(scores)))
        if copy_line is not None:
            copies = [names[i] for i in keep if scores[i] >= copy_line]
            if keep and len(copies) == len(keep):
                raise RefusedReference(f"Every reference scores like a copy of the owner (at or above "
                                       f"{copy_line:.6g}, near the owner's own int8 copy): give independently "
                                       "trained references.")
            if copies:
                notes.append(f"{len(copies)} references left out as probable copies of the owner (scoring at or "
                             f"above {copy_line:.6g}, near the owner's own int8 copy): {', '.join(copies[:5])}"
                             f"{' ...' if len(copies) > 5 else ''}")
                keep = [i for i in keep if scores[i] < copy_line]
        available = len(stage_names)
        count = cls.stages_supported(len(keep), alpha, available, parametric=parametric)
        stage_scores = [[float(scores[i]) for i in keep]]
        if count > 1:
            if later is None:
                raise InvalidParameter(f"The rule of {count} stages needs the later stages' scores (later=...).")
            stage_scores += list(islice(later(keep), count - 1))
        return cls.calibrate(stage_scores, list(stage_names)[:count], alpha, parametric=parametric, notes=notes,
                             available=available, left_out=list(stage_names)[count:])

    @classmethod
    def joint(cls, table: np.ndarray, names: Sequence[str], alpha: float, suspect: Sequence[float | None], *,
              notes: Sequence[str] = (), exact: str | None = None) -> "Rule":
        """The rule of every stage at once for one suspect whose every stage was measured
        (``suspect``: its scores, ``None`` where a stage gave none), by Westfall-Young max-T over
        the references' scores (``table``: one row per reference, one column per stage;
        :func:`~tafa.decide.multiple.max_t`): each stage's scores standardised over the references
        *and the suspect*, every reference's statistic its largest standardised score over the
        stages, and the suspect derived when its standardised score at some stage is reached by
        fewer than ``floor(alpha (n + 1))`` of those maxima. The suspect and the references are
        treated alike, so the bound is ``floor(alpha (n + 1)) / (n + 1)`` for all the stages
        together, whatever their dependence: no share of alpha per stage, and ``n >= 1/alpha - 1``
        references are enough for any number of stages. Each stage's threshold is the score it
        needed for this suspect, the others kept (:func:`~tafa.decide.multiple.max_t_threshold`);
        the bound is shown split evenly over the stages, its sum the rule's. A stage the suspect
        has no score for (``None``: not measured, or stopped) cannot fire, and the references' scores
        there are taken at the most the suspect's could make them
        (:func:`~tafa.decide.multiple.max_t_unknown`), so that the other stages' decisions never
        fire where they would not with every stage measured. ``exact``: the name of a
        stage whose evidence is an exact p-value (the weight test), added last with what the
        max-T bound leaves of ``alpha`` (max-T decided at ``alpha`` less :data:`EXACT_SHARE` of it).

        >>> table = np.array([[0.1 * i, 0.5 + 0.01 * i] for i in range(19)])
        >>> rule = Rule.joint(table, ["first", "geometry"], 0.05, [0.3, 0.9])
        >>> rule.decide([0.3, 0.9]).value, round(rule.bound, 4), rule.fires([0.3, 0.6])
        ('derived', 0.05, False)
        """
        table = np.asarray(table, dtype=np.float64)
        vector = np.array([np.nan if v is None else float(v) for v in suspect], dtype=np.float64)
        check_param("table", table.shape, f"one column per stage ({len(names)}), a row per reference",
                    table.ndim == 2 and table.shape[1] == len(names) == len(vector) and len(table) >= 1,
                    caller="Rule.joint")
        count = len(names)
        level = cls.joint_level(alpha, exact)
        p_values, table, floor = max_t_unknown(vector, table)
        n = len(table)
        bound = attained_bound(level, n)
        stages = []
        for k in range(count):
            value = vector[k]
            if bound == 0:
                threshold = None
            elif np.isfinite(value):
                threshold = max_t_threshold(vector, table, k, level, floor)
            else:  # not measured: what it would have needed (shown; a stage without a score never fires)
                threshold = Rule.joint_needs(table, alpha, suspect, k, exact)
            if threshold is None:  # no score would do: above every reference's and the suspect's own (finite, for JSON)
                threshold = float(max(np.max(table[:, k]), value if np.isfinite(value) else -np.inf))
            elif np.isfinite(value):  # the threshold agrees with the p-value exactly at the suspect's own score
                if p_values[k] <= level and not value > threshold:
                    threshold = float(np.nextafter(value, -np.inf))
                elif p_values[k] > level and value > threshold:
                    threshold = float(value)
            column = [float(v) for v in table[:, k]]
            stages.append(Calibration(threshold=float(threshold), alpha_requested=level / count,
                                      bound=(bound if bound > 0 else 1.0 / (n + 1)) / count, method=BoundMethod.RANK,
                                      rank_threshold=float(threshold), rank_bound=1.0 / (n + 1),
                                      parametric_threshold=None, n_references=n, reference_scores=column))
        said = (f"the {count} stages decide together by max-T over the {n} references (each stage standardised "
                f"with the suspect; one bound for all of them, {bound:.3g} = floor(alpha (n + 1)) / (n + 1), shown "
                "split evenly): each stage's threshold is the score it needed for this suspect")
        if bound == 0:
            said = (f"{n} distinct references cannot support {alpha:g} even jointly (max-T needs "
                    f"{references_needed(level)}): no decision")
        finite = p_values[np.isfinite(p_values)]
        smallest = float(finite.min()) if len(finite) and bound > 0 else 1.0
        if not exact or bound == 0:
            return cls(stages, list(names), float(alpha), [*notes, said], joint_p=smallest)
        slack = alpha - bound
        return cls([*stages, exact_calibration(slack)], [*names, exact], float(alpha), [*notes, said],
                   [stage.alpha_requested / alpha for stage in stages] + [slack / alpha], joint_p=smallest)

    @staticmethod
    def joint_level(alpha: float, exact: str | None = None) -> float:
        """The level max-T decides at in :meth:`joint`: ``alpha``, less :data:`EXACT_SHARE` of it
        when an exact stage takes the rest."""
        return alpha * (1 - EXACT_SHARE) if exact else alpha

    @staticmethod
    def joint_needs(table: np.ndarray, alpha: float, suspect: Sequence[float | None], column: int,
                    exact: str | None = None) -> float | None:
        """What :meth:`joint` would need of stage ``column``, not measured yet, for the suspect's
        scores so far (``None`` for the stages not measured; theirs at the least favourable, as
        :meth:`joint` takes them): a threshold to stop that stage's measurement at once it is
        out of reach (stopping never fires, so any threshold keeps the bound); ``None`` when no
        score would do."""
        table = np.asarray(table, dtype=np.float64)
        vector = np.array([np.nan if v is None else float(v) for v in suspect], dtype=np.float64)
        vector[column] = float(np.mean(table[:, column]))  # a stand-in: the threshold search moves it
        _, rows, floor = max_t_unknown(vector, table)
        return max_t_threshold(vector, rows, column, Rule.joint_level(alpha, exact), floor)

    @classmethod
    def single(cls, calibration: Calibration, name: str = "stage 1") -> "Rule":
        """The rule of one stage with this threshold (a stored calibration: the registry's)."""
        return cls([calibration], [name], calibration.alpha_requested, list(calibration.notes))

    def at(self, alpha: float) -> "Rule":
        """The same references' rule at another ``alpha`` (each calibrated stage at its equal share
        of it, then the exact stages added again as :meth:`with_exact` adds them)."""
        calibrated = [(stage, name) for stage, name in zip(self.stages, self.names)
                      if stage.method is not BoundMethod.EXACT]
        share = float(alpha) / len(calibrated)
        rule = Rule([stage.at(share) for stage, _ in calibrated], [name for _, name in calibrated], float(alpha),
                    list(self.notes))
        for stage, name in zip(self.stages, self.names):
            if stage.method is BoundMethod.EXACT:
                rule = rule.with_exact(name)
        return rule.with_table(self.table, self.table_names)

    def with_table(self, table: np.ndarray | None, names: Sequence[str] | None) -> "Rule":
        """This rule keeping the references' ``table`` of every stage (:attr:`table`)."""
        self.table = None if table is None else np.asarray(table, dtype=np.float64)
        self.table_names = None if names is None else list(names)
        return self

    def decides_jointly(self) -> bool:
        """Whether this stored rule's :attr:`table` decides at its alpha: it has more stages than
        the rule calibrated (the references too few for every share by rank), and enough
        references for the alpha itself (``1/alpha - 1``), as ``tafa verify --references`` decides.

        >>> table = np.array([[0.01 * i, 0.5] for i in range(30)])
        >>> rule = Rule.calibrate([list(table[:, 0])], ["a"], 0.05).with_table(table, ["a", "b"])
        >>> rule.decides_jointly(), rule.at_supported(0.2).names, rule.at_supported(0.2).decides_jointly()
        (True, ['a', 'b'], False)
        """
        if self.table is None or self.table_names is None:
            return False
        calibrated = [stage for stage in self.stages if stage.method is not BoundMethod.EXACT]
        return len(self.table_names) > len(calibrated) and len(self.table) >= references_needed(self.alpha_requested)

    def at_supported(self, alpha: float) -> "Rule":
        """:meth:`at`, with as many of the first stages as the references support at ``alpha``
        (:meth:`stages_supported`; the first alone at least), said in a note when some are left
        out: what a stored rule becomes when a scan decides at another alpha.

        >>> rule = Rule.calibrate([[0.01 * i for i in range(40)]] * 2, ["a", "b"], alpha=0.1)
        >>> rule.at_supported(0.05).names, rule.at_supported(0.02).names
        (['a', 'b'], ['a'])

        A rule that keeps its references' :attr:`table` is made again from it, with every stage
        the references support at ``alpha`` (the stages it was stored with, or more).
        """
        if self.table is not None and self.table_names is not None and len(self.table):
            count = self.stages_supported(len(self.table), alpha, len(self.table_names), parametric=False)
            remade = Rule.calibrate([list(self.table[:, k]) for k in range(count)], self.table_names[:count], alpha,
                                    notes=self.notes, available=len(self.table_names),
                                    left_out=self.table_names[count:])
            return remade.with_table(self.table, self.table_names)
        calibrated = [stage for stage in self.stages if stage.method is not BoundMethod.EXACT]
        count = self.stages_supported(self.n_references, alpha, len(calibrated),
                                      parametric=any(stage.parametric for stage in calibrated))
        if count == len(calibrated):
            return self.at(alpha)
        kept = Rule(self.stages[:count], self.names[:count], self.alpha_requested, list(self.notes))
        rule = kept.at(alpha)
        rule.notes.append(f"{self.n_references} references are too few for all {len(calibrated)} stages at "
                          f"{alpha:g}: the first {count} decide ({', '.join(self.names[:count])})")
        return rule

    def with_exact(self, name: str) -> "Rule":
        """This rule with one more stage, ``name``, whose score is ``-log10`` of an exact p-value
        (:func:`~tafa.decide.threshold.exact_calibration`). Its level is what the calibrated
        stages' bounds leave of alpha (a rank bound is ``k / (n + 1)``, often below its share;
        each calibrated stage keeps its bound as its level, with the same threshold); when that is
        nothing, the calibrated stages give up :data:`EXACT_SHARE` of their shares if their
        references still support the rest. The levels sum to alpha (Bonferroni).

        >>> rule = Rule.calibrate([[0.1 * i for i in range(40)], [0.1 * i for i in range(40)]], ["a", "b"], 0.05)
        >>> both = rule.with_exact("weights")
        >>> both.names, round(both.stages[2].alpha_requested, 5), both.bound <= 0.05, both.fires([0.0, 0.0, 300.0])
        (['a', 'b', 'weights'], 0.00122, True, True)
        >>> [round(c.threshold, 1) for c in both.stages[:2]] == [round(c.threshold, 1) for c in rule.stages]
        True
        """
        if not self.supports_alpha:
            return self
        alpha = self.alpha_requested
        stages = list(self.stages)
        if alpha - sum(stage.bound for stage in stages) <= alpha * 1e-9:
            fewer = [stage.at(stage.alpha_requested * (1 - EXACT_SHARE)) for stage in stages]
            if not all(stage.supports_alpha for stage in fewer):
                return Rule(stages, list(self.names), alpha, [*self.notes, (
                    f"the {name} test has no share of alpha: the references' rank bounds use all of it "
                    "(one more reference leaves it some)")], self.shares)
            stages = fewer
        stages = [stage.at(stage.bound) for stage in stages]  # the same thresholds, at the level they reach
        slack = alpha - sum(stage.bound for stage in stages)
        levels = [stage.alpha_requested for stage in stages] + [slack]
        return Rule([*stages, exact_calibration(slack)], [*self.names, name], alpha, list(self.notes),
                    [level / alpha for level in levels])

    # ------------------------------------------------------------------ deciding
    def fires(self, scores: Sequence[float | None]) -> bool:
        """Whether any stage's score (``None``: the stage did not run) is above its threshold."""
        return any(stage.fires(score) for score, stage in zip(scores, self.stages))

    def decide(self, scores: Sequence[float | None]) -> Decision:
        """The decision for a suspect with these stage scores: ``undecided`` when the references
        cannot support the alpha asked for, else ``derived`` when :meth:`fires`."""
        if not self.supports_alpha:
            return Decision.UNDECIDED
        return Decision.DERIVED if self.fires(scores) else Decision.INDEPENDENT

    def p_value(self, scores: Sequence[float | None]) -> float | None:
        """The suspect's rank p-value against the references: each measured stage's
        (:meth:`Calibration.p_value`), the smallest times the number of stages (Bonferroni, as
        the rule), at most 1; ``None`` when no stage was measured. A :meth:`joint` rule's: its
        max-T p-value (with an exact stage, the smaller of it over its share and the exact
        p-value over its)."""
        if self.joint_p is not None:
            exact = [stage.p_value(score) / fraction
                     for score, stage, fraction in zip(scores, self.stages, self.fractions)
                     if score is not None and stage.method is BoundMethod.EXACT]
            joint = self.joint_p * self.alpha_requested / sum(
                stage.alpha_requested for stage in self.stages if stage.method is not BoundMethod.EXACT)
            return min(1.0, joint, *exact)
        values = [stage.p_value(score) / fraction
                  for score, stage, fraction in zip(scores, self.stages, self.fractions) if score is not None]
        return None if not values else min(1.0, min(values))

    # ------------------------------------------------------------------ what it says
    @property
    def bound(self) -> float:
        return float(sum(stage.bound for stage in self.stages))

    @property
    def supports_alpha(self) -> bool:
        return all(stage.supports_alpha for stage in self.stages)

    @property
    def threshold(self) -> float:
        """The first stage's threshold (each stage has its own: :attr:`stages`)."""
        return self.stages[0].threshold

    @property
    def method(self) -> str:
        """The bound's method: the stage's (``rank``, ``parametric``) for one stage, else
        ``bonferroni:`` and the stages' methods, e.g. ``bonferroni:rank+parametric``; ``max-t``
        for a rule of stages decided together (:meth:`joint`; ``max-t+exact`` with the weight test)."""
        if self.joint_p is not None:  # Rule.joint: max-T over the references, one bound for its stages
            exact = [stage for stage in self.stages if stage.method is BoundMethod.EXACT]
            return "max-t" + ("+exact" if exact else "")
        if len(self.stages) == 1:
            return self.stages[0].method.value
        return "bonferroni:" + "+".join(stage.method.value for stage in self.stages)

    @property
    def n_references(self) -> int:
        counted = [stage.n_references for stage in self.stages if stage.method is not BoundMethod.EXACT]
        return min(counted) if counted else 0

    def note(self) -> str | None:
        """The stages' own notes (each named when there are several)."""
        if len(self.stages) == 1:
            return self.stages[0].note()
        own = [(name, note) for name, stage in zip(self.names, self.stages) if (note := stage.note())]
        if len(own) == len(self.stages) and len({note for _, note in own}) == 1:  # said once for every stage
            return f"each of the {len(own)} stages ({', '.join(name for name, _ in own)}): {own[0][1]}"
        return "; ".join(f"{name}: {note}" for name, note in own) or None

    def summary(self) -> dict[str, Any]:
        """The bound in a few fields (what reports and a scan's record show per fingerprint)."""
        summary = {"threshold": self.threshold, "alpha_requested": self.alpha_requested, "bound": self.bound,
                   "method": self.method, "n_references": self.n_references, "supports_alpha": self.supports_alpha,
                   "note": self.note()}
        if len(self.stages) > 1:
            summary["stages"] = [{"name": name, **stage.summary()} for name, stage in zip(self.names, self.stages)]
        if self.decides_jointly():  # a stored rule deciding its stages together: thresholds per suspect
            assert self.table is not None and self.table_names is not None
            n, count = len(self.table), len(self.table_names)
            needs = Rule.joint_needs(self.table, self.alpha_requested, [None] * count, 0)
            summary.pop("stages", None)  # not the stages Bonferroni's shares would calibrate
            summary.update(
                threshold=float(np.max(self.table[:, 0])) if needs is None else float(needs),
                bound=attained_bound(self.alpha_requested, n), method="max-t", n_references=n, supports_alpha=True,
                together=list(self.table_names),
                note=f"the {count} stages ({', '.join(self.table_names)}) decide together by max-T over the {n} "
                     "references, each suspect's thresholds its own (as tafa verify --references); the threshold "
                     "shown is the first stage's with the others at their least favourable")
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [stage.to_dict() for stage in self.stages], "names": list(self.names),
                "alpha_requested": self.alpha_requested, "notes": list(self.notes),
                **({"shares": list(self.shares)} if self.shares is not None else {}),
                **({"table": {"names": list(self.table_names), "scores": self.table.tolist()}}
                   if self.table is not None and self.table_names is not None else {})}


__all__ = ["DECISIONS", "Decision", "Rule"]
