"""The benchmark's results, written for machines (JSON) and for people (Markdown, PNG).

The benchmark runner produces one ``results`` dict; this module only reads it. Its
schema (keys marked ``?`` are optional; a missing value prints as an em dash)::

    {"command": str, "machine": str, "git_commit": str, "size": str, "seconds": float,
     "scenarios": {NAME: {
         "n_pos": int, "n_neg": int, "owner": str, "zoo_seconds"?: float,
         "utility"?: {"measure": str, "data": str, "owner": float, "keep": float}
                     (pooled: {ZOO: that mapping}),
         "schemes": {SCHEME: {
             "auc": float, "auc_ci": [lo, hi], "aruc": float, "aruc_ci": [lo, hi],
             "tpr_at_fpr_1pct": float, "tpr_at_fpr_0": float,
             "aruc_raw"?: float, "max_min_ru"?: float,
             "rule": {"threshold": float, "alpha": float, "bound"?: float, "method"?: str,
                      "tpr": float, "fpr": float},
             "rules"?: {"0.05" | "0.01": {... as rule, "fpr_ci": [lo, hi], "false_positives": int,
                        "families": {FAMILY: {"n", "false_positives", "fpr", "ci"}}}},
             "shared_init"?: {"n", "median_score", "min_score", "max_score", "median_calibrated",
                              "above_every_independent", "judged_derived": {"0.05", "0.01"}},
             "per_family": {FAMILY: {"n": int, "detection_rate": float}},
             "queries": int, "fingerprint_seconds": float, "verify_seconds": float,
             "cost_plan"?: {"cost_plan": str | None, "shortcuts": [str] | None},  # per zoo: the time budget's plan
             "scores": [{"model": str, "label": 0 | 1, "family": str, "score": float, "calibrated"?: float,
                         "utility"?: float}],
             "utility_kept"?: {"keep": float, "n_pos": int, "n_all": int, "n_measured": int, "auc": float,
                               "tpr_at_fpr_1pct": float, "tpr_at_fpr_0": float, "rules": {"0.05" | "0.01": float}},
             "per_recipe"?: {RECIPE: {"n": int, "family": str, "median_utility": float, "kept": float,
                                      "detection": {"0.05" | "0.01": float}}},
             "calibration_scores"?: [{"model": str, "family": str, "score": float}],
             "lofo"?: {"auc": float, "auc_ci"?: [lo, hi], "aruc": float, "aruc_ci"?: [lo, hi],
                       "tpr_at_fpr_1pct": float, "tpr_at_fpr_0"?: float,
                       "utility_kept"?: {"n_pos": int, "auc": float, "tpr_at_fpr_1pct": float, "rule_tpr": float}},
             "extraction"?: {"n": int, "tpr_at_fpr_1pct": float, "detection_rate": float}}}}}}

``label`` 1 marks a model derived from the owner, 0 an independent one; ``lofo`` holds
the leave-one-family-out figures of a learned scheme. A score's ``utility`` is the model's
utility as a share of the owner's (:mod:`tafa.bench.utility`); ``utility_kept`` repeats the
detection figures over the derived models keeping at least ``keep`` of it, against every
independent model.

>>> results = {"command": "tafa bench --size smoke", "scenarios": {"regression": {
...     "n_pos": 2, "n_neg": 2, "owner": "mlp", "schemes": {"tafa": {
...         "auc": 1.0, "auc_ci": [1.0, 1.0], "rule": {"tpr": 1.0, "fpr": 0.0, "alpha": 0.05},
...         "per_family": {"prune": {"n": 2, "detection_rate": 1.0}}}}}}}
>>> print(write_markdown(results).splitlines()[0])
# tafa benchmark results
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameter, is_finite_number
from ..storage import write_atomically
from .metrics import CALIBRATED_DECADES, robustness_uniqueness_curve

__all__ = ["plot_curves", "plot_scores", "write_markdown", "write_report"]

DASH = "\u2014"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # 7 markers x 18 colours: 126 distinct pairs


# --------------------------------------------------------------------------- reading


def _scenarios(results: object, caller: str) -> Mapping[str, Mapping[str, Any]]:
    """``results["scenarios"]``, or :class:`InvalidParameter` saying what arrived."""
    scenarios = results.get("scenarios") if isinstance(results, Mapping) else None
    if isinstance(scenarios, Mapping) and all(isinstance(s, Mapping) for s in scenarios.values()):
        return scenarios
    if not isinstance(results, Mapping):
        got = f"a {type(results).__name__}"
    elif scenarios is None:
        got = f"a mapping without 'scenarios' (keys: {sorted(map(str, results))})"
    else:
        got = "a 'scenarios' entry that is not a mapping of names to mappings"
    raise InvalidParameter(f"The 'results' parameter of {caller} must be a mapping with a 'scenarios' "
                           f"mapping of scenario name to scenario results. Got {got} instead.")


def _schemes(scenario: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    schemes = scenario.get("schemes") or {}
    return {name: s for name, s in schemes.items() if isinstance(s, Mapping)}


def _split_scores(scheme: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The scheme's finite score records as (positives, negatives)."""
    rows = [r for r in scheme.get("scores") or []
            if isinstance(r, Mapping) and is_finite_number(r.get("score")) and r.get("label") in (0, 1)]
    return [r for r in rows if r["label"] == 1], [r for r in rows if r["label"] == 0]


def _family_kinds(scenario: Mapping[str, Any]) -> dict[str, str]:
    """Family name -> "derived" / "independent" (from the score labels), where known."""
    kinds: dict[str, set[int]] = {}
    for scheme in _schemes(scenario).values():
        for row in scheme.get("scores") or []:
            if isinstance(row, Mapping) and row.get("label") in (0, 1):
                kinds.setdefault(str(row.get("family")), set()).add(int(row["label"]))
    names = {frozenset({1}): "derived", frozenset({0}): "independent"}
    return {family: names.get(frozenset(labels), "mixed") for family, labels in kinds.items()}


# --------------------------------------------------------------------------- Markdown


def _num(value: object, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}" if is_finite_number(value) else DASH


def _with_ci(value: object, ci: object) -> str:
    text = _num(value)
    if text != DASH and isinstance(ci, Sequence) and len(ci) == 2 and all(is_finite_number(v) for v in ci):
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    return text


def _seconds(value: object) -> str:
    if not is_finite_number(value):
        return DASH
    seconds = float(value)
    return f"{seconds:.0f}" if seconds >= 100 else f"{seconds:.3g}"


def _count(value: object) -> str:
    return f"{int(value)}" if is_finite_number(value) else DASH


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _total_time(value: object) -> str:
    if not is_finite_number(value):
        return DASH
    seconds = float(value)
    return f"{seconds:.1f} s" + (f" ({seconds / 60:.1f} min)" if seconds >= 60 else "")


def _rule_cell(rules: object, alpha: str) -> str:
    rule = rules.get(alpha) if isinstance(rules, Mapping) else None
    if not isinstance(rule, Mapping) or not (is_finite_number(rule.get("tpr")) or is_finite_number(rule.get("fpr"))):
        return DASH
    return f"{_num(rule.get('tpr'), 2)} / {_num(rule.get('fpr'), 2)}"


#: The header of the utility-gated column (the copies that keep >= 90% of the owner's utility).
_KEPT_HEADER = "utility ≥ 90%: AUC / TPR@1%FPR (n)"


def _kept_cell(scheme: Mapping[str, Any]) -> str:
    """AUC / TPR@1%FPR over the copies that keep the owner's utility, and how many there are."""
    kept = scheme.get("utility_kept")
    if not isinstance(kept, Mapping):
        return DASH
    return f"{_num(kept.get('auc'))} / {_num(kept.get('tpr_at_fpr_1pct'), 2)} ({_count(kept.get('n_pos'))})"


def _metrics_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    header = ["scheme", "AUC [95% CI]", "ARUC [95% CI]", "max min(R,U)", "TPR@1%FPR", "TPR@0FPR",
              "rule TPR / FPR α=0.05", "rule TPR / FPR α=0.01", _KEPT_HEADER, "α=0.01 bound", "queries",
              "fp s", "verify s"]
    rows = []
    for name, s in schemes.items():
        rule = s.get("rule") or {}
        rules = s.get("rules") or {"0.01": rule}
        bound = _num(rule.get("bound", rule.get("alpha")), 3)
        if rule.get("method"):
            bound += f" ({_cell(rule['method'])})"
        rows.append([f"`{_cell(name)}`", _with_ci(s.get("auc"), s.get("auc_ci")),
                     _with_ci(s.get("aruc"), s.get("aruc_ci")), _num(s.get("max_min_ru"), 2),
                     _num(s.get("tpr_at_fpr_1pct")), _num(s.get("tpr_at_fpr_0")), _rule_cell(rules, "0.05"),
                     _rule_cell(rules, "0.01"), _kept_cell(s), bound, _queries_cell(s),
                     _seconds(s.get("fingerprint_seconds")), _seconds(s.get("verify_seconds"))])
    return _table(header, rows, "l" + "r" * (len(header) - 1))


def _rate_ci(entry: object) -> str:
    """``fpr [lo, hi] (k/n)`` of a rule or family entry."""
    if not isinstance(entry, Mapping):
        return DASH
    ci = entry.get("ci", entry.get("fpr_ci"))
    text = _with_ci(entry.get("fpr"), ci).replace("0.", ".") if is_finite_number(entry.get("fpr")) else DASH
    hits, n = entry.get("false_positives"), entry.get("n")
    if is_finite_number(hits) and is_finite_number(n):
        text += f" ({int(hits)}/{int(n)})"
    return text


def _false_positive_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The calibrated rule's false-positive rate per independent family (alpha = 0.05) and
    over all of them (alpha = 0.05 and 0.01), with exact binomial 95% intervals."""
    checked = {name: s["rules"] for name, s in schemes.items() if isinstance(s.get("rules"), Mapping)}
    if not checked:
        return []
    families: list[str] = []
    for rules in checked.values():
        for family in (rules.get("0.05") or {}).get("families") or {}:
            if family not in families:
                families.append(family)
    header = ["family"] + [f"`{_cell(name)}`" for name in checked]
    rows = [[f"{_cell(family)} (α=0.05)"] + [_rate_ci(((rules.get("0.05") or {}).get("families") or {})
                                                          .get(family)) for rules in checked.values()]
            for family in families]
    for alpha in ("0.05", "0.01"):
        row = [f"**all independent (α={alpha})**"]
        for rules in checked.values():
            rule = rules.get(alpha)
            entry = dict(rule, n=None) if isinstance(rule, Mapping) else None
            if isinstance(rule, Mapping):
                total = sum(int(f.get("n", 0)) for f in (rule.get("families") or {}).values())
                entry = dict(rule, n=total)
            row.append(_rate_ci(entry))
        rows.append(row)
    intro = ["", "False-positive rate of the calibrated rule on the scored independent models, with exact "
             "(Clopper-Pearson) 95% intervals and counts; the rule promises at most α (it keeps the "
             "promise when α is above the interval's lower end):", ""]
    return intro + _table(header, rows, "l" + "r" * (len(header) - 1))


def _shared_init_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The models trained from the owner's initialisation: not independent, not copies."""
    shared = {name: s["shared_init"] for name, s in schemes.items() if isinstance(s.get("shared_init"), Mapping)}
    if not shared:
        return []
    header = ["scheme", "n", "median score [min, max]", "median calibrated", "above every independent",
              "judged derived α=0.05 / 0.01"]
    rows = []
    for name, entry in shared.items():
        judged = entry.get("judged_derived") or {}
        rows.append([f"`{_cell(name)}`", _count(entry.get("n")),
                     f"{_num(entry.get('median_score'))} [{_num(entry.get('min_score'))}, "
                     f"{_num(entry.get('max_score'))}]", _num(entry.get("median_calibrated"), 2),
                     _num(entry.get("above_every_independent"), 2),
                     f"{_num(judged.get('0.05'), 2)} / {_num(judged.get('0.01'), 2)}"])
    intro = ["", "Shares the owner's initialisation (trained from the owner's private initial weights on "
             "other data): reported here, counted in neither the true- nor the false-positive rate:", ""]
    return intro + _table(header, rows, "l" + "r" * (len(header) - 1))


_LOFO_COLUMNS = (("auc", "AUC"), ("aruc", "ARUC"), ("tpr_at_fpr_1pct", "TPR@1%FPR"),
                 ("tpr_at_fpr_0", "TPR@0FPR"))


def _queries_cell(s: Mapping[str, Any]) -> str:
    """Queries per verification; with stages, per stage and how often the second runs (the
    first stage not already judging the model derived at alpha 0.01)."""
    stages = s.get("queries_per_stage")
    if not isinstance(stages, list) or len(stages) < 2:
        return _count(s.get("queries"))
    text = " + ".join(_count(q) for q in stages)
    runs = s.get("second_stage_runs")
    if isinstance(runs, Mapping):
        text += (f" (stage 2 on {_num(100 * runs.get('derived', float('nan')), 0)}% of copies, "
                 f"{_num(100 * runs.get('independent', float('nan')), 0)}% of independents")
        measured = s.get("second_stage_measured")
        if isinstance(measured, Mapping) and is_finite_number(measured.get("independent")):
            text += (f"; stopped early, it measures {_num(100 * measured['independent'], 0)}% of its probes on those "
                     "independents")
            if is_finite_number(measured.get("derived")):
                text += f", {_num(100 * measured['derived'], 0)}% on those copies"
        text += ")"
    return text


def _summary_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One compact row per scheme: accuracy with intervals, the rule, LOFO, extraction, cost."""
    header = ["scheme", "AUC [95% CI]", "ARUC [95% CI]", "max min(R,U)", "TPR@1%FPR",
              "rule TPR / FPR α=0.05", "rule TPR / FPR α=0.01", _KEPT_HEADER, "LOFO AUC / TPR@1%FPR",
              "extraction TPR@1%FPR", "queries", "fp s", "verify ms"]
    raw_pooling = any(is_finite_number(s.get("auc_raw_pooled")) for s in schemes.values())
    if raw_pooling:
        header.append("raw-score pooling: AUC / TPR@1%FPR / utility ≥ 90% TPR@1%FPR")
    rows = []
    for name, s in schemes.items():
        rule = s.get("rule") or {}
        rules = s.get("rules") or {"0.01": rule}
        lofo, extraction = s.get("lofo"), s.get("extraction")
        lofo = lofo if isinstance(lofo, Mapping) else None
        extraction = extraction if isinstance(extraction, Mapping) else {}
        verify = s.get("verify_seconds")
        rows.append([f"`{_cell(name)}`", _with_ci(s.get("auc"), s.get("auc_ci")),
                     _with_ci(s.get("aruc"), s.get("aruc_ci")), _num(s.get("max_min_ru"), 2),
                     _num(s.get("tpr_at_fpr_1pct"), 2), _rule_cell(rules, "0.05"), _rule_cell(rules, "0.01"),
                     _kept_cell(s),
                     f"{_num(lofo.get('auc'))} / {_num(lofo.get('tpr_at_fpr_1pct'), 2)}" if lofo else DASH,
                     _num(extraction.get("tpr_at_fpr_1pct"), 2), _queries_cell(s),
                     _seconds(s.get("fingerprint_seconds")),
                     _seconds(1000 * float(verify)) if is_finite_number(verify) else DASH])
        if raw_pooling:
            raw_kept = s.get("utility_kept_raw_pooled")
            raw_kept = raw_kept if isinstance(raw_kept, Mapping) else {}
            rows[-1].append(f"{_num(s.get('auc_raw_pooled'))} / {_num(s.get('tpr_at_fpr_1pct_raw_pooled'), 2)} / "
                            f"{_num(raw_kept.get('tpr_at_fpr_1pct'), 2)}")
    return _table(header, rows, "l" + "r" * (len(header) - 1))


def _pair(values: Mapping[str, Any] | None, digits: int = 2) -> str:
    values = values if isinstance(values, Mapping) else {}
    return f"{_num(values.get('0.05'), digits)} / {_num(values.get('0.01'), digits)}"


def _recipe_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per derived recipe: its median share of the owner's utility, the fraction of its copies
    keeping >= 90% of it, and each scheme's detection by the calibrated rule (α = 0.05 / 0.01);
    then the rule's TPR over the copies keeping the utility and over all copies."""
    with_recipes = {name: s for name, s in schemes.items() if isinstance(s.get("per_recipe"), Mapping)}
    if not with_recipes:
        return []
    recipes: dict[str, Mapping[str, Any]] = {}
    for s in with_recipes.values():
        for recipe, entry in s["per_recipe"].items():
            if isinstance(entry, Mapping):
                recipes.setdefault(recipe, entry)
    header = ["recipe", "family", "n", "median utility", "kept ≥ 90%"] + [f"`{_cell(n)}`" for n in with_recipes]
    rows = []
    for recipe, entry in recipes.items():
        row = [_cell(recipe), _cell(entry.get("family", DASH)), _count(entry.get("n")),
               _num(entry.get("median_utility"), 2), _num(entry.get("kept"), 2)]
        row += [_pair((s["per_recipe"].get(recipe) or {}).get("detection")) for s in with_recipes.values()]
        rows.append(row)
    kept: list[Mapping[str, Any]] = [s["utility_kept"] if isinstance(s.get("utility_kept"), Mapping) else {}
                                     for s in with_recipes.values()]
    n_kept = next((k.get("n_pos") for k in kept if is_finite_number(k.get("n_pos"))), None)
    rows.append([f"**copies keeping ≥ 90% (n={_count(n_kept)})**", "", "", "", ""]
                + [f"**{_pair(k.get('rules'))}**" for k in kept])
    all_copies = [{alpha: rule.get("tpr") for alpha, rule in (s.get("rules") or {}).items()
                   if isinstance(rule, Mapping)} for s in with_recipes.values()]
    n_all = next((k.get("n_all") for k in kept if is_finite_number(k.get("n_all"))), None)
    rows.append([f"**all copies (n={_count(n_all)})**", "", "", "", ""] + [f"**{_pair(a)}**" for a in all_copies])
    intro = ["", "Utility per recipe (share of the owner's utility on the half of the data it did not train on; "
             "extraction included) and the calibrated rule's detection rate α=0.05 / 0.01; the last rows give "
             "the rule's TPR over the copies that keep ≥ 90% of the owner's utility and over all copies "
             "(extraction left out of both):", ""]
    return intro + _table(header, rows, "llrrr" + "r" * len(with_recipes))


def _summary(scenarios: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The pooled scenarios (``NAME (pooled)``), one compact table each, before the details."""
    pooled = {name: s for name, s in scenarios.items() if name.endswith("(pooled)") and _schemes(s)}
    if not pooled:
        return []
    lines = ["", "## Summary per scenario (pooled over its zoos)", "",
             "Extraction (distilled students) is kept out of the other columns and reported apart; "
             "LOFO: leave-one-family-out, for schemes fitted on reference models. Pooled over several "
             "zoos, AUC and TPR rank the models by their evidence (-log10 of each model's p-value against its "
             "own zoo's calibration models: raw scores of different owners are not on one scale, and "
             "every verdict is calibrated against its own owner's references); the last column gives "
             "the raw-score pooling of earlier runs."]
    for name, scenario in pooled.items():
        lines += ["", f"### {_cell(name)}: {_count(scenario.get('n_pos'))} derived, "
                  f"{_count(scenario.get('n_neg'))} independent", ""]
        lines += _summary_table(_schemes(scenario))
        lines += _recipe_table(_schemes(scenario))
        lines += _false_positive_table(_schemes(scenario))
        lines += _shared_init_table(_schemes(scenario))
    return lines


def _lofo_table(schemes: Mapping[str, Mapping[str, Any]]) -> list[str]:
    learned = {name: s for name, s in schemes.items() if isinstance(s.get("lofo"), Mapping)}
    if not learned:
        return []
    columns = [(key, label) for key, label in _LOFO_COLUMNS
               if any(key in s["lofo"] for s in learned.values())]
    header = ["scheme"]
    for _, label in columns:
        header += [f"{label} (all families)", f"{label} (LOFO)"]
    gated = any(isinstance(s["lofo"].get("utility_kept"), Mapping) for s in learned.values())
    if gated:
        header.append(f"{_KEPT_HEADER} (LOFO)")
    rows = []
    for name, s in learned.items():
        row = [f"`{_cell(name)}`"]
        for key, _ in columns:
            row += [_with_ci(s.get(key), s.get(f"{key}_ci")),
                    _with_ci(s["lofo"].get(key), s["lofo"].get(f"{key}_ci"))]
        if gated:
            row.append(_kept_cell(s["lofo"]))
        rows.append(row)
    intro = ["", "Leave-one-family-out (learned schemes): the models of each family are scored by a "
             "verifier that saw no model of that family in training; this is the honest estimate "
             "for a post-processing nobody anticipated.", ""]
    return intro + _table(header, rows, "l" + "r" * (len(header) - 1))


def _family_table(scenario: Mapping[str, Any]) -> list[str]:
    schemes = _schemes(scenario)
    families: dict[str, int | None] = {}
    for s in schemes.values():
        for family, entry in (s.get("per_family") or {}).items():
            if families.get(family) is None:
                n = entry.get("n") if isinstance(entry, Mapping) else None
                families[family] = int(n) if is_finite_number(n) else None
    if not families:
        return []
    kinds = _family_kinds(scenario)
    order = {"derived": 0, "independent": 1, "mixed": 2}
    ordered = sorted(families, key=lambda f: order.get(kinds.get(f, ""), 3))  # stable: keeps runner order
    header = ["family", "kind", "n"] + [f"`{_cell(name)}`" for name in schemes]
    rows = []
    for family in ordered:
        n = families[family]
        row = [_cell(family), kinds.get(family, DASH), DASH if n is None else str(n)]
        for s in schemes.values():
            entry = (s.get("per_family") or {}).get(family)
            row.append(_num(entry.get("detection_rate"), 2) if isinstance(entry, Mapping) else DASH)
        rows.append(row)
    intro = ["", "Detection rate per family (fraction judged derived by the calibrated rule; "
             "for independent families this is their false-positive rate):", ""]
    return intro + _table(header, rows, "ll" + "r" * (len(header) - 2))


def write_markdown(results: Mapping[str, Any], *, figures: Sequence[str] = ()) -> str:
    """The results as Markdown: a header, then per scenario the metrics and family tables.

    ``figures`` are image paths (relative to where the Markdown will live) appended at the
    end; :func:`write_report` passes the PNGs it writes.

    >>> md = write_markdown({"scenarios": {"s": {"n_pos": 1, "n_neg": 1, "schemes": {
    ...     "x": {"auc": 0.75, "auc_ci": [0.5, 1.0], "queries": 64}}}}})
    >>> row = next(line for line in md.splitlines() if line.startswith("| `x`"))
    >>> row.startswith("| `x` | 0.750 [0.500, 1.000] |"), row.count("\u2014"), row.endswith("| 64 | \u2014 | \u2014 |")
    (True, 10, True)
    """
    scenarios = _scenarios(results, "write_markdown")
    lines = ["# tafa benchmark results", "",
             f"- Command: `{results.get('command', DASH)}`",
             f"- Machine: {_cell(results.get('machine', DASH))}",
             f"- Commit: `{results.get('git_commit', DASH)}`",
             f"- Size: {_cell(results.get('size', DASH))}",
             f"- Total time: {_total_time(results.get('seconds'))}",
             "",
             "Scores are oriented so that higher means \"more likely derived\"; a model is judged "
             "derived when its score is strictly above the threshold. ARUC is the area under "
             "min(robustness, uniqueness) over thresholds in [0, 1] on the common calibrated scale "
             "(-log10 of the score's p-value against the calibration references, over 10 decades: "
             "`tafa.bench.metrics.calibrated_scale`); max min(R,U) is its best single threshold "
             "(1 exactly when the classes separate). TPR@1%FPR and TPR@0FPR take the best threshold "
             "in hindsight; the rule columns use the threshold calibrated on reference models "
             "disjoint from the scored ones, at false-positive bound \u03b1. "
             "Costs: queries per verification, fingerprint generation seconds (fp s) and "
             "verification seconds per suspect."]
    lines += _summary(scenarios)
    for name, scenario in scenarios.items():
        lines += ["", f"## Scenario: {_cell(name)}", ""]
        facts = [f"owner `{scenario.get('owner', DASH)}`",
                 f"{_count(scenario.get('n_pos'))} derived models (positives)",
                 f"{_count(scenario.get('n_neg'))} independent models (negatives)"]
        utility = scenario.get("utility")
        if isinstance(utility, Mapping) and is_finite_number(utility.get("owner")):
            facts.append(f"owner's {_cell(utility.get('measure', 'utility'))} on held-out data "
                         f"{_num(utility['owner'])}")
        if is_finite_number(scenario.get("zoo_seconds")):
            facts.append(f"zoo built in {_seconds(scenario['zoo_seconds'])} s")
        sentence = "; ".join(facts)
        lines += [sentence[:1].upper() + sentence[1:] + ".", ""]
        schemes = _schemes(scenario)
        if not schemes:
            lines.append("No scheme results.")
            continue
        lines += _metrics_table(schemes)
        lines += _lofo_table(schemes)
        lines += _family_table(scenario)
        if not str(name).endswith("(pooled)"):
            lines += _recipe_table(schemes)
            lines += _false_positive_table(schemes)
            lines += _shared_init_table(schemes)
    if figures:
        lines += ["", "## Figures", ""]
        for figure in figures:
            lines += [f"![{Path(figure).stem}]({figure})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- files




def _jsonable(value: Any) -> Any:
    """``value`` with numpy types as Python ones and NaN/inf as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- figures


#: A grid figure's margins in inches: left of the first column (its two-line label), above the
#: first row (the title and the first panels' titles), below the last (tick labels and an axis
#: label), between columns, and below each row (tick labels, an axis label, and the next row's
#: two-line titles); the legend's, right of the last column, is :func:`_grid`'s ``legend``.
_MARGINS = {"left": 1.0, "top": 0.95, "bottom": 0.75, "between": 0.8, "below": 1.15}


def _grid(results: Mapping[str, Any], caller: str, width: float, height: float, legend: float = 2.2):
    """A figure with one row per scenario and one column per scheme, and the cells (``legend``: the
    inches the legend needs right of the last column)."""
    from matplotlib.figure import Figure

    scenarios = _scenarios(results, caller)
    ncols = max([len(_schemes(s)) for s in scenarios.values()] + [1])
    nrows = max(len(scenarios), 1)
    # margins in inches, laid out once (a constrained layout measures every label of every panel: a
    # fifth of the figures' time, benchmarks/report_figures.py); the legend goes right of them (_legend)
    size = (width * ncols + legend, height * nrows + 0.6)
    figure = Figure(figsize=size, dpi=110)
    axes_width = (size[0] - _MARGINS["left"] - legend - _MARGINS["between"] * (ncols - 1)) / ncols
    axes_height = (size[1] - _MARGINS["top"] - _MARGINS["bottom"] - _MARGINS["below"] * (nrows - 1)) / nrows
    figure.subplots_adjust(left=_MARGINS["left"] / size[0], right=1 - legend / size[0],
                           top=1 - _MARGINS["top"] / size[1], bottom=_MARGINS["bottom"] / size[1],
                           wspace=_MARGINS["between"] / axes_width, hspace=_MARGINS["below"] / axes_height)
    axes = np.atleast_2d(figure.subplots(nrows, ncols, squeeze=False))
    cells = []
    for row, (scenario_name, scenario) in enumerate(scenarios.items()):
        schemes = list(_schemes(scenario).items())
        for col in range(ncols):
            ax = axes[row, col]
            if col < len(schemes):
                cells.append((ax, scenario_name, scenario, *schemes[col]))
            else:
                ax.set_axis_off()
        if not schemes:
            axes[row, 0].text(0.5, 0.5, f"{scenario_name}: no schemes", ha="center", va="center",
                              transform=axes[row, 0].transAxes)
    if not scenarios:
        axes[0, 0].text(0.5, 0.5, "no scenarios", ha="center", va="center")
    return figure, cells


def _legend(figure, handles: list[Any], **options: Any) -> None:
    """The legend in the figure's right margin, its top level with the first row of panels."""
    width, height = figure.get_size_inches()
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(figure.subplotpars.right + 0.1 / width,
                                                                     1 - _MARGINS["top"] / height),
                  fontsize=8, frameon=False, **options)


def _save_png(figure, path: Path) -> Path:
    return write_atomically(path, lambda handle: figure.savefig(handle, format="png"))


def _family_styles(results: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """One (colour, marker) per family name, the same in every panel: derived first."""
    from matplotlib import colormaps

    derived: list[str] = []
    independent: list[str] = []
    for scenario in _scenarios(results, "plot_scores").values():
        for family, kind in _family_kinds(scenario).items():
            target = independent if kind == "independent" else derived
            if family not in derived and family not in independent:
                target.append(family)
    palette = [*_colors(colormaps["tab10"]), *_colors(colormaps["Dark2"])]
    return {family: (palette[i % len(palette)], _MARKERS[i % len(_MARKERS)])
            for i, family in enumerate(derived + independent)}


def plot_scores(results: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Positive vs negative scores, per scenario (rows) and scheme (columns), as one PNG.

    Each panel shows the independent models on the left and the derived ones on the
    right, as a light violin with every model as a jittered point, its colour and marker
    naming its family (legend on the right), and the calibrated threshold as a dashed
    line. Returns the path written (atomically).
    """
    from matplotlib.lines import Line2D

    styles = _family_styles(results)
    longest = max((len(family) for family in styles), default=0)  # a legend line: a marker and the name
    figure, cells = _grid(results, "plot_scores", width=2.7, height=3.0, legend=max(2.2, 0.5 + 0.065 * longest))
    for ax, scenario_name, _scenario, scheme_name, scheme in cells:
        rng = np.random.default_rng(0)
        groups = _split_scores(scheme)[::-1]  # negatives at x = 0, positives at x = 1
        # two stages: the combined evidence on the calibrated scale (the rule: either stage's
        # p-value at most alpha / 2, i.e. the combined evidence at least -log10 alpha where the
        # stages' tails are parametric)
        staged = any("stages" in r for rows in groups for r in rows)
        for x, rows in enumerate(groups):
            values = np.array([float(r["calibrated" if staged else "score"]) for r in rows])
            if values.size >= 2 and np.ptp(values) > 0:
                parts = ax.violinplot(values, positions=[x], widths=0.8, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor("0.85")
                    body.set_edgecolor("0.6")
                    body.set_alpha(1.0)
            jitter = x + rng.uniform(-0.18, 0.18, size=len(rows))
            families = np.array([str(r.get("family")) for r in rows])
            for family in dict.fromkeys(families):
                colour, marker = styles.get(family, ("0.3", "o"))
                mine = families == family
                ax.scatter(jitter[mine], values[mine], s=22, color=colour, marker=marker,
                           edgecolors="black", linewidths=0.3, zorder=3)
        rule = scheme.get("rule") or {}
        if staged and is_finite_number(rule.get("alpha")):
            ax.axhline(-np.log10(float(rule["alpha"])) / CALIBRATED_DECADES, color="crimson", linestyle="--",
                       linewidth=1.2, zorder=2)
        elif is_finite_number(rule.get("threshold")):
            ax.axhline(float(rule["threshold"]), color="crimson", linestyle="--", linewidth=1.2, zorder=2)
        n_neg, n_pos = len(groups[0]), len(groups[1])
        ax.set_xticks([0, 1], [f"independent\n(n={n_neg})", f"derived\n(n={n_pos})"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(f"{scheme_name}\nAUC {_num(scheme.get('auc'))}  ARUC {_num(scheme.get('aruc'))}",
                     fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        if staged:
            ax.set_ylabel("two stages: evidence\n(calibrated scale)", fontsize=8)
        if ax.get_subplotspec().colspan.start == 0:
            ax.set_ylabel(f"{scenario_name}\nscore (higher = derived)", fontsize=9)
        if n_neg + n_pos == 0:
            ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
    handles = [Line2D([], [], color="crimson", linestyle="--", label="calibrated threshold")]
    handles += [Line2D([], [], linestyle="", marker=m, markerfacecolor=c, markeredgecolor="black",
                       markeredgewidth=0.3, markersize=6, label=f) for f, (c, m) in styles.items()]
    _legend(figure, handles, title="family", title_fontsize=9)
    figure.suptitle("Scores of derived and independent models", fontsize=11)
    return _save_png(figure, Path(path))


def plot_curves(results: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Robustness and uniqueness against the threshold, per scenario and scheme, as one PNG.

    Robustness (fraction of derived models detected) falls and uniqueness (fraction of
    independent models rejected) rises as the threshold grows; the shaded area under
    their minimum is the ARUC. When the score records carry their value on the common
    calibrated scale (``calibrated``), the curves are drawn on it (thresholds in [0, 1],
    the scale ARUC is computed on); otherwise on the raw scores, with the calibrated
    threshold as a dashed line. Returns the path written (atomically).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure, cells = _grid(results, "plot_curves", width=3.0, height=2.6)
    for ax, scenario_name, _scenario, scheme_name, scheme in cells:
        positives, negatives = _split_scores(scheme)
        ax.set_title(f"{scheme_name}\nARUC {_num(scheme.get('aruc'))}", fontsize=9)
        ax.tick_params(labelsize=8)
        if ax.get_subplotspec().colspan.start == 0:
            ax.set_ylabel(f"{scenario_name}\nrate", fontsize=9)
        if not positives or not negatives:
            ax.text(0.5, 0.5, "needs scores of both classes", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
            continue
        scale = all(is_finite_number(r.get("calibrated")) for r in positives + negatives)
        key = "calibrated" if scale else "score"
        t, robustness, uniqueness = robustness_uniqueness_curve(
            [r[key] for r in positives], [r[key] for r in negatives])
        rule = scheme.get("rule") or {}
        threshold = float(rule["threshold"]) if is_finite_number(rule.get("threshold")) and not scale else None
        low, high = (0.0, 1.0) if scale else (t[0], t[-1])
        if threshold is not None:
            low, high = min(low, threshold), max(high, threshold)
        pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
        x = np.concatenate([[low - pad], t, [high + pad]])
        r = np.concatenate([[1.0], robustness, [robustness[-1]]])
        u = np.concatenate([[0.0], uniqueness, [uniqueness[-1]]])
        ax.fill_between(x, np.minimum(r, u), step="post", color="0.8", linewidth=0)
        ax.step(x, r, where="post", color="tab:blue", linewidth=1.4)
        ax.step(x, u, where="post", color="tab:orange", linewidth=1.4)
        if threshold is not None:
            ax.axvline(threshold, color="crimson", linestyle="--", linewidth=1.2)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(-0.03, 1.05)
        ax.set_xlabel("threshold (calibrated scale)" if scale else "threshold", fontsize=8)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="tab:blue", label="robustness\n(derived detected)"),
               Line2D([], [], color="tab:orange", label="uniqueness\n(independent rejected)"),
               Patch(color="0.8", label="min of the two\n(area = ARUC)"),
               Line2D([], [], color="crimson", linestyle="--", label="calibrated\nthreshold")]
    _legend(figure, handles)
    figure.suptitle("Robustness and uniqueness against the threshold", fontsize=11)
    return _save_png(figure, Path(path))


def write_report(results: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``results.json``, ``results.md``, ``scores.png`` and ``curves.png`` into ``out_dir``.

    Every file is written atomically (a temporary file in ``out_dir``, then
    ``os.replace``), so a reader never sees half a report file. NaN and infinities are
    written to the JSON as ``null``. Returns the paths written, in that order.
    """
    _scenarios(results, "write_report")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n"
    written = [write_atomically(folder / "results.json", text.encode("utf-8"))]
    scores_png = plot_scores(results, folder / "scores.png")
    curves_png = plot_curves(results, folder / "curves.png")
    markdown = write_markdown(results, figures=[scores_png.name, curves_png.name])
    written.insert(1, write_atomically(folder / "results.md", markdown.encode("utf-8")))
    return written + [scores_png, curves_png]


def _colors(colormap: Any) -> list[Any]:
    """The listed colours of a qualitative matplotlib colormap."""
    return list(colormap.colors)
