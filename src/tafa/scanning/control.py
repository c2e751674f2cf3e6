"""How a scan decides when every suspect meets many fingerprints: the error control.

One fingerprint's calibration bounds the chance that an independent model is declared derived
*by that fingerprint*; a suspect checked against N fingerprints gets N such chances. A scan
decides under one of these controls (stored with the scan, stated in its report and JSON):

- ``family`` (default): the chance that an independent suspect matches **any** fingerprint
  of the scan is at most ``alpha``. Every model of a shared **null panel** (models known to
  be independent of every owner: ``--panel DIR``, else the registry's panel, which
  ``tafa registry add --references DIR`` fills) is scored against every fingerprint when the
  scan starts; each suspect is then decided by the Westfall-Young max-T rule
  (:func:`tafa.decide.multiple.max_t`, standardised with the suspect included). A panel of
  ``n`` models supports bounds down to ``1/(n + 1)``; below that every decision is
  ``undecided`` and the statement says how many panel models ``alpha`` needs. The bound holds
  for suspects drawn like the panel's models: the panel must cover the kinds of independent
  models the scan meets.
- ``fdr``: a candidate list. Each (suspect, fingerprint) pair gets the p-value of its score
  among that fingerprint's panel scores, and Benjamini-Hochberg over all pairs of the scan
  lists the pairs to investigate with an expected share of false ones at most ``alpha``
  (p-values sharing one panel are positively dependent, under which BH holds). Pairs are
  decided when the scan finishes (``undecided`` until then).
Under ``family`` and ``fdr`` every stage of a fingerprint is a column of the panel's table
(:func:`stage_column`: the first stage, the boundary geometry, the extraction stage), measured on
every panel model and every suspect alike, so a fingerprint judges a suspect derived when any of
its stages does, as ``tafa verify`` decides: max-T runs over every column of every fingerprint
(the family-wise bound covers the stages too), and an FDR pair's p-value is max-T over its own
stages' columns. A file suspect of a fingerprint that keeps the owner's layers (``--white-box
keep``: :attr:`ErrorControl.weighed`) also gets the weight test, whose p-value is exact: under
``family`` those tests share what the max-T rank bound leaves of alpha (Bonferroni; max-T keeps
its level, so no decision of a scan without them changes), under ``fdr`` a pair's p-value is
the smaller of its max-T p-value over ``1 - EXACT_SHARE`` and its weight p-value over
``EXACT_SHARE`` (a union bound: still a p-value).

- ``per-fingerprint``: each fingerprint's stored calibration as it is; its bound holds per
  fingerprint only (an independent suspect may match one of N fingerprints with a chance up
  to N times that).
- ``bonferroni``: every stored calibration re-derived at ``alpha / N`` from its reference
  scores (no panel needed; the bound rests on each calibration's rank or parametric tail).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..decide.multiple import (attained_bound, benjamini_hochberg, by_group, max_t, max_t_threshold, panel_needed,
                               rate_for_this_panel, smallest_p)
from ..decide.rule import EXACT_SHARE
from ..fingerprint import WEIGHT_STAGE, weight_p_value
from ..errors import InvalidParameter, check_param
from ..registry import DEFAULT_ALPHA, DEFAULT_CONTROL, SCAN_CONTROLS, Finding, SuspectOutcome, check_scan_defaults

#: The error controls a scan can decide under (see module doc).
CONTROLS = SCAN_CONTROLS


#: Joins a fingerprint's name and a later stage's in a column name (a registered name has no
#: control character, so no name can hold it).
STAGE_SEPARATOR = "\x1f"


def stage_column(fingerprint: str, stage: str) -> str:
    """The column of ``fingerprint``'s later stage ``stage`` in a panel-based control's table."""
    return f"{fingerprint}{STAGE_SEPARATOR}{stage}"


def column_fingerprint(column: str) -> str:
    """The fingerprint a column belongs to."""
    return column.split(STAGE_SEPARATOR, 1)[0]


def finding_scores(finding: Finding) -> dict[str, float]:
    """A finding's scores by column: its first stage's under the fingerprint's name, each later
    stage's under :func:`stage_column` (stages with no score left out)."""
    if finding.decision == "error" or finding.score is None:
        return {}
    scores = {finding.fingerprint: float(finding.score)}
    for stage in finding.stages:
        if stage.get("score") is not None:
            scores[stage_column(finding.fingerprint, str(stage["name"]))] = float(stage["score"])
    return scores


def check_control(control: str, alpha: float | None) -> None:
    check_scan_defaults(control, alpha, caller="scan")


@dataclass
class ErrorControl:
    """The control a scan decides under, with its null panel's score table (rows: panel
    models, columns: the scan's fingerprints; ``None`` where a model has no score)."""

    kind: str
    alpha: float | None
    columns: list[str] = field(default_factory=list)
    panel: list[dict[str, str]] = field(default_factory=list)         # {"source", "sha256", "group"} per row
    scores: list[list[float | None]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)      # {"source", "why"}
    #: The fingerprints whose file suspects also get the weight test (they keep the owner's layers)
    weighed: list[str] = field(default_factory=list)

    @property
    def uses_panel(self) -> bool:
        return self.kind in ("family", "fdr")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ErrorControl":
        """The control :meth:`to_dict` stored, checked for types (a stored scan is read back
        from a file: :class:`~tafa.errors.InvalidParameter` for anything a scan cannot have written)."""
        check_param("control", type(data).__name__, "an object", isinstance(data, Mapping), caller="a stored scan")
        control = cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})
        control._check_types()
        return control

    def _check_types(self) -> None:
        def texts(row: Any) -> bool:
            return isinstance(row, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in row.items())

        def number(value: Any) -> bool:
            return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

        caller = "a stored scan's error control"
        check_scan_defaults(self.kind, self.alpha, caller=caller)
        check_param("columns", "...", "a list of fingerprint names",
                    isinstance(self.columns, list) and all(isinstance(c, str) for c in self.columns), caller=caller)
        check_param("weighed", "...", "a list of fingerprint names",
                    isinstance(self.weighed, list) and all(isinstance(c, str) for c in self.weighed), caller=caller)
        for name in ("panel", "excluded"):
            rows = getattr(self, name)
            check_param(name, "...", "a list of objects of texts", isinstance(rows, list) and all(map(texts, rows)),
                        caller=caller)
        check_param("panel", "...", "rows with a source and a sha256",
                    all("source" in row and "sha256" in row for row in self.panel), caller=caller)
        check_param("scores", "...", "one list of numbers per panel model, one per fingerprint",
                    isinstance(self.scores, list) and len(self.scores) == len(self.panel)
                    and all(isinstance(row, list) and len(row) == len(self.columns) and all(map(number, row))
                            for row in self.scores), caller=caller)

    def table(self) -> np.ndarray:
        return np.array([[np.nan if v is None else v for v in row] for row in self.scores],
                        dtype=np.float64).reshape(len(self.scores), len(self.columns))

    def groups(self) -> list[str]:
        """Each panel row's group (its sub-folder of the panel folder, or the registry's)."""
        return [row.get("group", "") for row in self.panel]

    def group_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for group in self.groups():
            sizes[group] = sizes.get(group, 0) + 1
        return sizes

    def bound(self) -> float | None:
        """The bound the scan's decisions carry (``None``: per fingerprint, or unsupported): for
        a panel of several groups, the bound for a suspect like the least favourable group."""
        if self.kind == "bonferroni":
            return self.alpha
        if not self.uses_panel or self.alpha is None or not self.scores:
            return None
        smallest = min(self.group_sizes().values())
        if self.kind == "fdr":
            return self.alpha if smallest_p(smallest) <= self.alpha else None
        attained = [attained_bound(self.alpha, size) for size in self.group_sizes().values()]
        return max(attained) if min(attained) > 0 else None

    def rate_for_this_panel(self, confidence: float = 0.9) -> float | None:
        """Family-wise: how high the rate can be for *this* panel with probability ``confidence``
        over panel draws (:func:`~tafa.decide.multiple.rate_for_this_panel`; the least favourable
        group's), beside :meth:`bound`, which is an average over panels."""
        if self.kind != "family" or self.alpha is None or not self.scores:
            return None
        rates = [rate_for_this_panel(self.alpha, size, confidence) for size in self.group_sizes().values()]
        return None if None in rates else max(rate for rate in rates if rate is not None)

    def statement(self) -> str:
        """One line: which control, what it bounds, and what the panel supports."""
        n = len(self.scores)
        if self.kind == "per-fingerprint":
            return ("error control: per fingerprint (each fingerprint's stored calibration; an independent "
                    "suspect may match one of N fingerprints with a chance up to N times its bound)")
        if self.kind == "bonferroni":
            return (f"error control: Bonferroni, family-wise alpha {self.alpha:g} (each stored calibration "
                    f"re-derived at alpha / {len(self.columns)}; a fingerprint whose references cannot support "
                    "that by rank, or by the parametric tail it was registered with, decides nothing)")
        skipped = f"; {len(self.excluded)} panel models left out" if self.excluded else ""
        if n == 0:
            return (f"error control: {self._name()} at {self.alpha:g}, but there is no null panel: every "
                    "decision is undecided (give --panel DIR of models independent of every owner, or register "
                    f"fingerprints with --references DIR){skipped}")
        bound = self.bound()
        sizes = self.group_sizes()
        groups = "" if len(sizes) == 1 else \
            f" in {len(sizes)} groups ({', '.join(f'{g} {k}' for g, k in sizes.items())}; bound for each alone)"
        if bound is None and self.alpha is not None:
            least = min(sizes.values())
            where = "this one has" if len(sizes) == 1 else "its smallest group has"
            return (f"error control: {self._name()} at {self.alpha:g} needs a null panel of at least "
                    f"{panel_needed(self.alpha)} models; {where} {least} and supports {smallest_p(least):.3g} at best: "
                    f"every decision is undecided (add panel models, or ask for --alpha {smallest_p(least):.3g})"
                    f"{skipped}")
        weighed = ""
        if self.weighed:
            count = f"{len(self.weighed)} fingerprint{'s' if len(self.weighed) > 1 else ''}"
            rows = list(sizes.values())
            share = self.alpha is not None and bool(rows) and self.kind == "family" \
                and self.split(self.alpha, rows)[1] == 0.0
            weighed = (f"; file suspects of {count} also get the exact weight test, within the same alpha" if not share
                       else f"; the weight test of {count} has no share of alpha: the panel's rank bound uses all of "
                            "it (one more panel model leaves it some)")
        if self.kind == "fdr":
            return (f"error control: false-discovery rate <= {self.alpha:g} over the scan's (suspect, fingerprint) "
                    f"pairs (Benjamini-Hochberg, p-values from a null panel of {n} models{groups}){weighed}{skipped}")
        this_panel = self.rate_for_this_panel()
        spread = "" if this_panel is None else f"; for this panel <= {this_panel:.3g} with 90 % confidence"
        staged = len(self.columns) - len(self.fingerprints())
        stages = f", {len(self.columns)} stage columns" if staged else ""
        return (f"error control: family-wise, P(an independent suspect matches any of the {len(self.fingerprints())} "
                f"fingerprints) <= {bound or 0:.3g} (max-T over a null panel of {n} models{groups}{stages}{spread})"
                f"{weighed}{skipped}")

    def fingerprints(self) -> list[str]:
        """The scan's fingerprints, in column order (each once, whatever its stages)."""
        return list(dict.fromkeys(column_fingerprint(column) for column in self.columns))

    def columns_of(self, fingerprint: str) -> list[int]:
        """The positions of ``fingerprint``'s columns (its first stage first)."""
        return [i for i, column in enumerate(self.columns) if column_fingerprint(column) == fingerprint]

    def _name(self) -> str:
        return "the family-wise rate" if self.kind == "family" else "the false-discovery rate"

    # -- deciding ----------------------------------------------------------------------------
    def _vector(self, outcome: SuspectOutcome) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The suspect's scores by column, and the panel table and groups without any copy of
        the suspect."""
        scores = {column: value for f in outcome.findings for column, value in finding_scores(f).items()}
        vector = np.array([scores.get(name, np.nan) for name in self.columns], dtype=np.float64)
        table = self.table()
        keep = [row["sha256"] != outcome.identity for row in self.panel]
        groups = [group for group, kept in zip(self.groups(), keep) if kept]
        return vector, table[np.array(keep, dtype=bool)] if len(table) else table, groups

    def decide(self, outcome: SuspectOutcome) -> SuspectOutcome:
        """``outcome`` with its findings decided under this control (family-wise: now; fdr: left
        ``undecided`` until :meth:`decide_scan`; per-fingerprint and Bonferroni: as checked)."""
        if not self.uses_panel or outcome.status != "done" or not outcome.findings:
            return outcome
        if self.kind == "fdr":
            return replace(outcome, findings=[_decided(f, "undecided", None) for f in outcome.findings])
        vector, table, groups = self._vector(outcome)
        p_values = by_group(max_t, vector, table, groups)
        sizes = [_rows_used(vector, table[np.array(groups) == group]) for group in set(groups)]
        supported = self.alpha is not None and len(table) > 0 and min(attained_bound(self.alpha, n) for n in sizes) > 0
        level, exact = (self.alpha, 0.0) if self.alpha is None or not supported else self.split(self.alpha, sizes)
        findings = []
        for finding in outcome.findings:
            if finding.decision == "error" or finding.fingerprint not in self.columns:
                findings.append(finding)
                continue
            column = self.columns.index(finding.fingerprint)
            if level is None or not supported or not math.isfinite(p_values[column]):
                findings.append(_decided(finding, "undecided", None))
                continue
            ran = [i for i in self.columns_of(finding.fingerprint) if math.isfinite(p_values[i])]
            weight_p = _weight_p(finding) if finding.fingerprint in self.weighed else None
            decision = "derived" if min(p_values[i] for i in ran) <= level or (
                weight_p is not None and exact > 0 and weight_p <= exact) else "independent"
            levels = {self.columns[i]: _threshold(vector, table, groups, i, level) for i in ran}
            if weight_p is not None and exact > 0:
                levels[stage_column(finding.fingerprint, WEIGHT_STAGE)] = -math.log10(exact)
            findings.append(_decided(finding, decision, levels[finding.fingerprint], levels))
        return replace(outcome, findings=findings)

    def split(self, alpha: float, sizes: Sequence[int]) -> tuple[float, float]:
        """The level max-T decides at and the level of each weighed fingerprint's weight test, for
        a suspect whose max-T uses panels of ``sizes`` rows (one per group): max-T keeps ``alpha``
        (its decisions are those of a scan without weight tests) and the weight tests share what
        its rank bound ``floor(alpha (n + 1)) / (n + 1)`` leaves (Bonferroni over
        :attr:`weighed`; nothing when ``alpha (n + 1)`` is a whole number). The two sum to at
        most ``alpha``."""
        if not self.weighed:
            return alpha, 0.0
        reached = max(attained_bound(alpha, n) for n in sizes)
        slack = alpha - reached
        return alpha, (slack / len(self.weighed) if slack > alpha * 1e-9 else 0.0)

    def decide_scan(self, outcomes: Sequence[SuspectOutcome]) -> list[SuspectOutcome]:
        """Benjamini-Hochberg over every (suspect, fingerprint) pair of a finished scan (``fdr``);
        the outcomes whose findings changed."""
        if self.kind != "fdr" or self.alpha is None:
            return []
        done = [o for o in outcomes if o.status == "done" and o.findings]
        p_values: list[tuple[int, int, float]] = []    # (outcome, finding, p)
        tables: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        for i, outcome in enumerate(done):
            tables[i] = vector, table, groups = self._vector(outcome)
            for j, finding in enumerate(outcome.findings):
                if finding.decision != "error" and finding.fingerprint in self.columns:
                    p = _pair_p(vector, table, groups, self.columns_of(finding.fingerprint))
                    weight_p = _weight_p(finding) if finding.fingerprint in self.weighed else None
                    if weight_p is not None and math.isfinite(p):  # both tests, by a union bound
                        p = min(1.0, p / (1 - EXACT_SHARE), weight_p / EXACT_SHARE)
                    p_values.append((i, j, p))
        supported = self.bound() is not None
        listed = benjamini_hochberg(np.array([p for *_, p in p_values]), self.alpha) if p_values \
            else np.zeros(0, dtype=bool)
        cutoff = self.alpha * max(1, int(np.sum(listed))) / max(1, len(p_values))
        changed: dict[int, SuspectOutcome] = {}
        for (i, j, p), chosen in zip(p_values, listed):
            finding = done[i].findings[j]
            levels: dict[str, float | None] = {}
            if not supported or not math.isfinite(p):
                decision = "undecided"
            else:
                decision = "derived" if chosen else "independent"
                vector, table, groups = tables[i]
                own = self.columns_of(finding.fingerprint)
                weighed = finding.fingerprint in self.weighed and _weight_p(finding) is not None
                level = cutoff * (1 - EXACT_SHARE) if weighed else cutoff  # the union bound's max-T part
                for position, k in enumerate(own):  # the score each stage needed, the others kept
                    levels[self.columns[k]] = _threshold(vector[own], table[:, own], groups, position, level)
                if weighed:
                    levels[stage_column(finding.fingerprint, WEIGHT_STAGE)] = -math.log10(EXACT_SHARE * cutoff)
            outcome = changed.setdefault(i, replace(done[i], findings=list(done[i].findings)))
            outcome.findings[j] = _decided(finding, decision, levels.get(finding.fingerprint), levels)
        return list(changed.values())


def _weight_p(finding: Finding) -> float | None:
    """The weight test's exact p-value a finding holds (its ``weights`` stage), if any."""
    for stage in finding.stages:
        if stage.get("name") == WEIGHT_STAGE and isinstance(stage.get("score"), (int, float)) \
                and math.isfinite(stage["score"]):
            return weight_p_value(float(stage["score"]))
    return None


def _pair_p(vector: np.ndarray, table: np.ndarray, groups: list[str], columns: list[int]) -> float:
    """One (suspect, fingerprint) pair's p-value over its stages' columns: max-T within the pair
    (the rank of its largest standardised stage score among the panel's, the least favourable
    group's); with one stage, that stage's rank p-value among the panel's scores."""
    if not len(table) or _rows_used(vector[columns], table[:, columns]) == 0:
        return float("nan")
    values = by_group(max_t, vector[columns], table[:, columns], groups)
    finite = values[np.isfinite(values)]
    return float(finite.min()) if len(finite) else float("nan")


def _threshold(vector: np.ndarray, table: np.ndarray, groups: list[str], column: int, alpha: float) -> float | None:
    """The score fingerprint ``column`` needed for this suspect: the highest over the groups."""
    labels = np.array(groups)
    levels = [max_t_threshold(vector, table[labels == group], column, alpha) for group in dict.fromkeys(groups)]
    return None if None in levels else max(level for level in levels if level is not None)


def _rows_used(vector: np.ndarray, table: np.ndarray) -> int:
    columns = np.isfinite(vector)
    return int(np.sum(np.all(np.isfinite(table[:, columns]), axis=1))) if len(table) else 0


def _decided(finding: Finding, decision: str, threshold: float | None,
             levels: dict[str, float | None] | None = None) -> Finding:
    """``finding`` decided, with the threshold of its first stage and (``levels``, by column)
    of its later stages."""
    stages = [{**stage, "threshold": (levels or {}).get(stage_column(finding.fingerprint, str(stage["name"])))}
              for stage in finding.stages]
    return replace(finding, decision=decision, threshold=threshold, stages=stages)


def score_panel(kind: str, alpha: float | None, columns: Sequence[str],
                members: Sequence[tuple[str, str | None, str]], check: Callable[[Sequence[str]], Any],
                progress: bool = False) -> ErrorControl:
    """The control ``kind`` with its panel scored: ``members`` are ``(source, sha256, group)``
    (the hash recorded for it, ``None`` to take the file's as it is), ``check`` yields one
    :class:`~tafa.registry.SuspectOutcome` per source (a scan engine). A member whose file is
    missing, changed since it was recorded or fails to be checked is left out (listed in
    :attr:`ErrorControl.excluded`). ``progress``: a progress bar over the panel's models."""
    from tqdm.auto import tqdm

    from ..models.base import file_hash

    control = ErrorControl(kind, alpha, list(columns))
    if not control.uses_panel:
        return control
    wanted: dict[str, str] = {}
    group_of: dict[str, str] = {}
    for source, recorded, group in members:
        try:
            actual = file_hash(source)
        except OSError as error:
            control.excluded.append({"source": source, "why": f"unreadable ({error.strerror or error})"})
            continue
        if recorded is not None and actual != recorded:
            control.excluded.append({"source": source, "why": "the file changed since it joined the panel"})
        elif actual in wanted.values():
            control.excluded.append({"source": source, "why": "the same bytes as another panel model"})
        else:
            wanted[source], group_of[source] = actual, group
    rows: dict[str, list[float | None]] = {}
    for outcome in tqdm(check(list(wanted)), total=len(wanted), unit="model", desc="null panel", leave=False,
                        disable=not progress, dynamic_ncols=True):
        if outcome.status != "done":
            control.excluded.append({"source": outcome.source, "why": f"failed: {outcome.error}"})
            continue
        scores = {column: value for f in outcome.findings for column, value in finding_scores(f).items()}
        if all(scores.get(name) is None for name in columns):
            control.excluded.append({"source": outcome.source, "why": "fits none of the scan's fingerprints"})
            continue
        rows[outcome.source] = [scores.get(name) for name in columns]
    for source, sha256 in wanted.items():
        if source in rows:
            control.panel.append({"source": source, "sha256": sha256, "group": group_of[source]})
            control.scores.append(rows[source])
    return control


def resolve_control(control: str | None, alpha: float | None, family_alpha: float | None,
                    defaults: tuple[str, float | None] = (DEFAULT_CONTROL, DEFAULT_ALPHA)) -> tuple[str, float | None]:
    """The (control, alpha) a new scan asked for; ``family_alpha`` is the older spelling of
    ``control="bonferroni", alpha=family_alpha``. What is not given comes from ``defaults`` (the
    registry's, :meth:`~tafa.registry.Registry.defaults`): its control, and its alpha when the
    control is the registry's own; a control asked for without an alpha is decided at
    :data:`DEFAULT_ALPHA` (``per-fingerprint``: at each stored calibration's own)."""
    if family_alpha is not None:
        if control not in (None, "bonferroni") or (alpha is not None and alpha != family_alpha):
            raise InvalidParameter("family_alpha is control='bonferroni' with that alpha; give one or the other.")
        control, alpha = "bonferroni", family_alpha
    stored_control, stored_alpha = defaults
    if control is None or control == stored_control:
        control = stored_control
        if alpha is None:
            alpha = stored_alpha
    if alpha is None and control != "per-fingerprint":
        alpha = DEFAULT_ALPHA
    check_control(control, alpha)
    return control, alpha


__all__ = ["CONTROLS", "DEFAULT_ALPHA", "DEFAULT_CONTROL", "ErrorControl", "STAGE_SEPARATOR", "check_control",
           "column_fingerprint", "finding_scores", "resolve_control", "score_panel", "stage_column"]
