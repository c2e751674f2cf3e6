"""What a scan found: the matches, the failures, the score distribution of every fingerprint.

A :class:`ScanReport` is read back from the registry (so a resumed scan reports all its
suspects, not only the last run's). It renders as text for the terminal, one JSON object,
Markdown or a self-contained HTML page, each with the table of matches; the Markdown and
HTML reports also show every fingerprint's false-positive bound as the scan decided with it
(its calibration at the scan's alpha, or the null panel of a family-wise or FDR scan), list
every suspect -- matched, independent, undecided, skipped or failed -- with one decision and
the alpha it was made at, and come with a plot of every fingerprint's scores over the
suspects beside its reference distribution (the references' or the null panel's scores), the
threshold marked where one threshold decides every suspect. Markdown gets the plot as a PNG
(matplotlib, Agg backend; matched points named), HTML as inline SVG (every point named in its
``<title>``). One rule for every count: :attr:`~tafa.registry.SuspectOutcome.state`.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import check_param, printable
from ..registry import SUSPECT_STATES, Finding, Registry, RegistryError, ScanRecord, SuspectOutcome, stages_text
from .control import ErrorControl

_COLOURS = {"derived": "#c0392b", "independent": "#7f8c8d", "undecided": "#2e86c1", "error": "#000000"}
_REFERENCE_COLOUR = "#b7950b"
BOUND_HEADER = ["fingerprint", "threshold", "false-positive bound", "references", "alpha", "note"]
SUSPECT_HEADER = ["suspect", "status", "decision", "alpha", "best fingerprint", "best score", "by fingerprint",
                  "sha256"]
MATCH_HEADER = ["suspect", "fingerprint", "score", "threshold", "decision", "alpha", "sha256"]
#: Matched points named in the PNG plot, at most (the HTML plot names every point).
PNG_LABELS = 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class ScanReport:
    """A scan, its suspects' outcomes, and what its last run cost."""

    scan: ScanRecord
    outcomes: list[SuspectOutcome]
    #: Per fingerprint, the one threshold that decided every suspect (``None``: uncalibrated, or a
    #: family-wise or FDR scan, where each finding carries the threshold its suspect needed).
    thresholds: dict[str, float | None]
    run: dict[str, Any] = field(default_factory=dict)
    #: Per fingerprint, its calibration's summary as the scan recorded it (``None``: uncalibrated).
    bounds: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @classmethod
    def load(cls, registry: Registry, scan_id: str, run: dict[str, Any] | None = None,
             computed: Mapping[str, SuspectOutcome] | None = None) -> "ScanReport":
        """The report of ``scan_id`` as the registry holds it. ``computed``: the outcomes a run
        just decided and wrote, by source; what the registry returns for them must be exactly
        that (else :class:`~tafa.registry.RegistryError`: the database changed what was written)."""
        record = registry.scan(scan_id)
        outcomes = registry.outcomes(scan_id)
        if computed:
            _check_read_back(registry, scan_id, outcomes, computed)
        thresholds: dict[str, float | None] = {item["name"]: None for item in record.config.get("fingerprints", [])}
        report = cls(record, outcomes, thresholds, dict(run or {}),
                     {item["name"]: item.get("calibration") for item in record.config.get("fingerprints", [])})
        if not report.control.uses_panel:  # a panel's threshold is the suspect's own: none for all
            for outcome in outcomes:
                for finding in outcome.findings:
                    if finding.threshold is not None:
                        thresholds[finding.fingerprint] = finding.threshold
        return report

    # -- views ---------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.scan.id

    def matches(self) -> list[tuple[SuspectOutcome, Finding]]:
        """Every (suspect, finding) judged ``derived``, highest score first."""
        pairs = [(o, f) for o in self.outcomes for f in o.findings if f.decision == "derived"]
        return sorted(pairs, key=lambda pair: -(pair[1].score or 0.0))

    def top(self, n: int = 10) -> list[tuple[SuspectOutcome, Finding]]:
        """The ``n`` highest-scoring (suspect, finding) pairs, whatever their decision."""
        pairs = [(o, f) for o in self.outcomes for f in o.findings if f.score is not None]
        return sorted(pairs, key=lambda pair: -(pair[1].score or 0.0))[:n]

    def failures(self) -> list[SuspectOutcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    def skipped(self) -> list[SuspectOutcome]:
        """Suspects opened but compared with nothing: they fit no fingerprint (the note says why)."""
        return [o for o in self.outcomes if o.state == "skipped"]

    def counts(self) -> dict[str, int]:
        """Suspects by state (``pending``, ``done``, ``skipped``, ``failed``): what the registry's
        :attr:`~tafa.registry.ScanRecord.counts` holds for the scan, by the same rule."""
        counts = dict.fromkeys(SUSPECT_STATES, 0)
        for outcome in self.outcomes:
            counts[outcome.state] = counts.get(outcome.state, 0) + 1
        return counts

    @cached_property
    def control(self) -> ErrorControl:
        """The error control the scan decided under (per fingerprint for scans that predate them);
        read once (every row of a report asks)."""
        stored = self.scan.config.get("control")
        if stored is not None:
            return ErrorControl.from_dict(stored)
        old = self.scan.config.get("family_alpha")
        return ErrorControl("per-fingerprint" if old is None else "bonferroni", old)

    def control_summary(self) -> dict[str, Any]:
        """Which control, the alpha asked for, the bound the decisions carry, the panel's size."""
        control = self.control
        return {"control": control.kind, "alpha": control.alpha, "bound": control.bound(),
                "bound_for_this_panel_90": control.rate_for_this_panel(),
                "panel": len(control.scores) if control.uses_panel else None,
                "panel_left_out": control.excluded, "statement": control.statement()}

    def _decides(self, summary: dict[str, Any]) -> bool:
        """Whether any decision can be made (a calibration, or a panel-based control)."""
        return bool(summary["calibrated"]) or self.control.uses_panel

    def alpha_used(self, fingerprint: str) -> str:
        """The alpha ``fingerprint``'s decisions were made at, and under which control."""
        control = self.control
        if control.kind == "per-fingerprint":
            bound = self.bounds.get(fingerprint)
            return "-" if bound is None else f"{bound['alpha_requested']:.3g} per fingerprint"
        if control.alpha is None:
            return "-"
        if control.kind == "bonferroni":
            each = control.alpha / max(1, len(control.columns))
            return f"{control.alpha:g} family-wise (Bonferroni: {each:.3g} each)"
        return f"{control.alpha:g} " + ("family-wise" if control.kind == "family" else "false-discovery rate")

    def decision(self, outcome: SuspectOutcome) -> str:
        """One decision per suspect: ``derived`` when any fingerprint judged it derived, else
        ``undecided`` when any could not decide, else ``independent`` (of every fingerprint that
        fits it); ``error`` when every comparison failed; ``-`` for a suspect not compared
        (skipped, failed or pending)."""
        if outcome.state != "done" or not outcome.findings:
            return "-"
        decisions = {f.decision for f in outcome.findings}
        for decision in ("derived", "undecided", "independent"):
            if decision in decisions:
                return decision
        return "error"

    def reference_scores(self, fingerprint: str) -> tuple[list[float], str]:
        """The scores ``fingerprint``'s decisions rest on, and what they are: the null panel's
        (family-wise and FDR scans) or its references' (the scan's record; none for a scan
        recorded before they were kept, or an uncalibrated fingerprint)."""
        control = self.control
        if control.uses_panel:
            if fingerprint not in control.columns or not control.scores:
                return [], "null panel"
            column = control.table()[:, control.columns.index(fingerprint)]
            return [float(v) for v in column if np.isfinite(v)], "null panel"
        for item in self.scan.config.get("fingerprints", []):
            if item.get("name") == fingerprint and isinstance(item.get("reference_scores"), list):
                return [float(v) for v in item["reference_scores"] if isinstance(v, (int, float))], "references"
        return [], "references"

    def summary(self) -> dict[str, Any]:
        """Counts, queries per suspect and throughput."""
        counts = self.counts()
        done = [o for o in self.outcomes if o.state == "done"]
        decisions: dict[str, int] = {}
        for outcome in done:
            for finding in outcome.findings:
                decisions[finding.decision] = decisions.get(finding.decision, 0) + 1
        seconds = float(self.run.get("seconds", self.scan.seconds))
        ran = int(self.run.get("suspects", len(self.outcomes)))
        return {
            "scan": self.id, "status": self.scan.status, "suspects": len(self.outcomes), **counts,
            "fingerprints": len(self.thresholds),
            "calibrated": sum(self.bounds.get(name) is not None for name in self.thresholds),
            "decisions": decisions, "matches": len(self.matches()),
            "queries_per_suspect": float(np.mean([o.queries for o in done])) if done else 0.0,
            "seconds": seconds, "suspects_per_second": ran / seconds if seconds > 0 else None,
            "error_control": self.control_summary(),
            "not_scanned": self.not_scanned() or None,
        }

    def not_scanned(self) -> str:
        """What the scan did not run: the later stages of its fingerprints (boundary geometry, the
        extraction stage), which ``tafa verify`` runs when the first does not fire ("": none)."""
        stages: dict[str, int] = {}
        for item in self.scan.config.get("fingerprints", []):
            later = item.get("not_scanned")
            for name in later if isinstance(later, list) else []:
                if isinstance(name, str):
                    stages[name] = stages.get(name, 0) + 1
        if not stages:
            return ""
        which = ", ".join(f"{name} ({count} fingerprint{'s' if count > 1 else ''})" for name, count in stages.items())
        return (f"this scan decided with each fingerprint's first stage; not run here: {which}. A scan over a null "
                "panel runs them (--control family or fdr, without --stages first), as tafa verify does for a "
                "suspect the first stage does not judge derived (large-learning-rate fine-tunes, distilled "
                "students)")

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "scan": self.scan.to_dict(), "run": self.run,
                "thresholds": self.thresholds, "bounds": self.bounds,
                "outcomes": [{**o.to_dict(), "state": o.state, "decision": self.decision(o)} for o in self.outcomes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def bound_rows(self) -> list[list[str]]:
        """One row per fingerprint, as the scan decided with it: threshold, bound (and its
        method), the reference models behind it, the alpha used, a note."""
        control = self.control
        rows = []
        for name in self.thresholds:
            bound = self.bounds.get(name)
            if control.uses_panel:
                rows.append(self._panel_row(name, control, bound))
            elif bound is None:
                rows.append([name, "-", "none", "0", "-", "not calibrated: its verdicts are undecided"])
            else:
                rows.append([name, f"{bound['threshold']:.4f}", f"{bound['bound']:.3g} ({bound['method']})",
                             str(bound["n_references"]), self.alpha_used(name), bound.get("note") or ""])
        return rows

    def _panel_row(self, name: str, control: ErrorControl, bound: dict[str, Any] | None) -> list[str]:
        """A fingerprint of a family-wise or FDR scan: the null panel decides, not its calibration."""
        scores, _ = self.reference_scores(name)
        attained = control.bound()
        how = "max-T" if control.kind == "family" else "Benjamini-Hochberg"
        own = "" if bound is None else \
            f"; its registered calibration (alpha {bound['alpha_requested']:.3g}) is not what this scan decides by"
        if not scores:
            note = "undecided: no null panel model fits this fingerprint"
        elif attained is None:
            note = "undecided: the null panel is too small for this alpha (see the error control line)"
        else:
            note = f"decided over the null panel ({how})"
        return [name, "per suspect" if control.kind == "family" else "per scan",
                "none" if attained is None or not scores else f"{attained:.3g} ({how}, null panel)",
                f"{len(scores)} (null panel)", self.alpha_used(name), note + own]

    def suspect_rows(self) -> list[list[str]]:
        """One row per suspect, matched or not: its state, one decision and the alpha it was made
        at, its best-scoring fingerprint, the decision of every fingerprint, its SHA-256."""
        rows = []
        for o in self.outcomes:
            scored = [f for f in o.findings if f.score is not None]
            best = max(scored, key=lambda f: f.score or 0.0) if scored else None
            decisions: dict[str, list[str]] = {}
            for f in o.findings:
                decisions.setdefault(str(f.decision), []).append(f.fingerprint)
            if o.state in ("failed", "skipped"):
                detail = o.error or ""
            elif o.state == "done" and not o.findings:
                detail = "no registered fingerprint fits its input and output shapes"
            else:
                detail = "; ".join(f"{d}: {', '.join(names)}" for d, names in sorted(decisions.items())) or o.state
            alphas = list(dict.fromkeys(self.alpha_used(f.fingerprint) for f in o.findings))
            rows.append([_short(o.source), o.state, self.decision(o), "; ".join(alphas) or "-",
                         "-" if best is None else best.fingerprint, "-" if best is None else f"{best.score:.4f}",
                         detail, _hash_cell(o)])
        return rows

    # -- text ----------------------------------------------------------------------------------
    def _rows(self, pairs: list[tuple[SuspectOutcome, Finding]]) -> list[list[str]]:
        rows = []
        for o, f in pairs:  # the stage that judged it derived (a later one: named), else the first
            stage, score, threshold = f.fired()
            named = "" if stage is None else f" ({stage})"
            rows.append([_short(o.source), f.fingerprint, "-" if score is None else f"{score:.4f}{named}",
                         "-" if threshold is None else f"{threshold:.4f}", f.decision,
                         self.alpha_used(f.fingerprint) if f.decision in ("derived", "independent") else "-",
                         _hash_cell(o)])
        return rows

    def _counts_line(self, s: dict[str, Any]) -> str:
        return (f"{s['suspects']} suspects ({s['done']} done, {s['skipped']} skipped, {s['failed']} failed, "
                f"{s['pending']} pending) against {s['fingerprints']} fingerprints ({s['calibrated']} calibrated); "
                f"{s['queries_per_suspect']:.0f} queries per suspect")

    def render(self) -> str:
        """A terminal summary: counts, matches (or the top scores when nothing is calibrated), failures."""
        s = self.summary()
        rate = "" if s["suspects_per_second"] is None else f", {s['suspects_per_second']:.2f} suspects/s"
        lines = [f"scan {s['scan']} ({s['status']}): {s['suspects']} suspects, {s['done']} done, "
                 f"{s['skipped']} skipped, {s['failed']} failed, {s['pending']} pending; "
                 f"{s['fingerprints']} fingerprints ({s['calibrated']} calibrated); "
                 f"{s['queries_per_suspect']:.0f} queries per suspect; {s['seconds']:.1f} s{rate}"]
        lines.append(s["error_control"]["statement"])
        if s["not_scanned"]:
            lines.append(s["not_scanned"])
        if not self._decides(s):
            lines.append("no registered fingerprint is calibrated (tafa registry add ... --references DIR): "
                         "every decision is undecided; highest scores:")
            lines += _text_table(MATCH_HEADER, self._rows(self.top()))
        elif self.matches():
            lines.append(f"{len(self.matches())} matches:")
            lines += _text_table(MATCH_HEADER, self._rows(self.matches()))
        else:
            lines.append("no matches.")
        if self.failures():
            lines.append(f"{len(self.failures())} suspects failed:")
            lines += [f"  {_short(o.source)}: {o.error}" for o in self.failures()]
        if self.skipped():
            lines.append(f"{len(self.skipped())} suspects skipped (they fit no registered fingerprint):")
            lines += [f"  {_short(o.source)}: {o.error}" for o in self.skipped()]
        if not self.control.uses_panel:  # a panel-based scan decides by its panel, not by these bounds
            unsupported = [row for row in self.bound_rows() if row[5] and row[1] != "-"]
            if unsupported:
                lines.append("fingerprints whose bound is not the plain distribution-free one asked for:")
                lines += [f"  {row[0]}: {row[5]}" for row in unsupported]
        if s["status"] != "finished":
            lines.append(f"resume with: tafa scan --resume {self.id}")
        return "\n".join(terminal_line(line) for line in lines)  # names and errors come from files and the database

    def to_markdown(self, figure: str | None = None) -> str:
        s = self.summary()
        lines = [f"# tafa scan {markdown_cell(self.id)}", "",
                 f"{self._counts_line(s)}; status {markdown_cell(s['status'])}.", "",
                 markdown_cell(s["error_control"]["statement"]) + ".", ""]
        if s["not_scanned"]:
            lines += [markdown_cell(s["not_scanned"]), ""]
        pairs = self.matches() if self._decides(s) else self.top()
        lines += ["## Matches" if self._decides(s) else "## Highest scores (no fingerprint is calibrated)", ""]
        lines += _markdown_table(MATCH_HEADER, self._rows(pairs)) if pairs else ["None."]
        lines += ["", "## Fingerprints and their false-positive bounds, as this scan decided", ""]
        lines += _markdown_table(BOUND_HEADER, self.bound_rows())
        lines += ["", "## Every suspect", ""]
        lines += _markdown_table(SUSPECT_HEADER, self.suspect_rows()) if self.outcomes else ["None."]
        if figure:
            lines += ["", "## Score distributions", "",
                      f"![score of every suspect beside its fingerprint's reference scores]({figure})"]
        if self.failures():
            lines += ["", "## Failed suspects", ""]
            lines += _markdown_table(["suspect", "error"], [[_short(o.source), o.error or ""] for o in self.failures()])
        if self.skipped():
            lines += ["", "## Skipped suspects (they fit no registered fingerprint)", ""]
            lines += _markdown_table(["suspect", "reason"], [[_short(o.source), o.error or ""] for o in self.skipped()])
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A self-contained page: counts, the error control, matches, bounds, every suspect, and
        the score plot as inline SVG (every point names its suspect in a ``<title>``)."""
        s = self.summary()
        pairs = self.matches() if self._decides(s) else self.top()
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tafa scan {html_text(self.id)}</title>"
                 "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>",
                 f"<h1>tafa scan {html_text(self.id)}</h1>",
                 f"<p>{html_text(self._counts_line(s))}; status {html_text(s['status'])}.</p>",
                 f"<p>{html_text(s['error_control']['statement'])}.</p>",
                 f"<p>{html_text(s['not_scanned'])}.</p>" if s["not_scanned"] else "",
                 "<h2>Matches</h2>" if self._decides(s) else "<h2>Highest scores (no fingerprint is calibrated)</h2>",
                 _html_table(MATCH_HEADER, self._rows(pairs)) if pairs else "<p>None.</p>",
                 "<h2>Fingerprints and their false-positive bounds, as this scan decided</h2>",
                 _html_table(BOUND_HEADER, self.bound_rows()),
                 "<h2>Every suspect</h2>",
                 _html_table(SUSPECT_HEADER, self.suspect_rows()) if self.outcomes else "<p>None.</p>",
                 "<h2>Score distributions</h2>", self.svg()]
        if self.failures():
            parts += ["<h2>Failed suspects</h2>",
                      _html_table(["suspect", "error"], [[_short(o.source), o.error or ""] for o in self.failures()])]
        if self.skipped():
            parts += ["<h2>Skipped suspects (they fit no registered fingerprint)</h2>",
                      _html_table(["suspect", "reason"], [[_short(o.source), o.error or ""] for o in self.skipped()])]
        return "\n".join(parts + ["</body></html>"]) + "\n"

    # -- figures and files ---------------------------------------------------------------------
    def _points(self, name: str) -> list[tuple[SuspectOutcome, Finding, float]]:
        """``name``'s scored findings, with their scores."""
        return [(o, f, float(f.score)) for o in self.outcomes for f in o.findings
                if f.fingerprint == name and f.score is not None]

    def _score_range(self) -> tuple[float, float]:
        values = [float(f.score) for o in self.outcomes for f in o.findings if f.score is not None]
        for name, threshold in self.thresholds.items():
            values += self.reference_scores(name)[0] + ([threshold] if threshold is not None else [])
        values = [v for v in values if np.isfinite(v)]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        pad = max(high - low, 1e-6) * 0.05
        return low - pad, high + pad

    def plot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """PNG of :meth:`figure`, written to ``path`` when given. Returns the PNG bytes."""
        import matplotlib.pyplot as plt

        figure = self.figure()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        plt.close(figure)
        png = buffer.getvalue()
        if path is not None:
            Path(path).write_bytes(png)
        return png

    def figure(self) -> Any:
        """A matplotlib figure of every fingerprint's scores over the suspects (one row each;
        matched suspects named, at most :data:`PNG_LABELS`), its reference scores as ticks under
        them, its threshold as a black bar where one threshold decided every suspect; the legend
        names what is drawn and nothing else (Agg backend; close it with ``pyplot.close``)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.thresholds)
        figure, axis = plt.subplots(figsize=(8, 1.2 + 0.55 * max(1, len(names))))
        rng = np.random.default_rng(0)
        low, high = self._score_range()
        labelled = 0
        for row, name in enumerate(names):
            references, what = self.reference_scores(name)
            if references:
                axis.scatter(references, np.full(len(references), row + 0.32), marker="|", s=40,
                             color=_REFERENCE_COLOUR, linewidths=1, label=f"reference score ({what})")
            points = self._points(name)
            for decision, colour in _COLOURS.items():
                chosen = [(o, score) for o, f, score in points if f.decision == decision]
                if not chosen:
                    continue
                ys = row - 0.05 + rng.uniform(-0.2, 0.2, len(chosen))
                axis.scatter([score for _, score in chosen], ys, s=9, color=colour, alpha=0.7, label=decision,
                             linewidths=0)
                if decision == "derived":
                    for (o, score), y in zip(chosen, ys):
                        if labelled < PNG_LABELS:
                            right = score > (low + high) / 2  # the name on the side with room
                            axis.annotate(_latex_safe(_point_name(o.source)), (score, y), fontsize=6,
                                          xytext=(-4 if right else 4, -3), textcoords="offset points",
                                          ha="right" if right else "left", color=colour, annotation_clip=True,
                                          clip_on=True)
                            labelled += 1
            threshold = self.thresholds[name]
            if threshold is not None:  # None under a panel-based control: each suspect has its own
                axis.plot([threshold, threshold], [row - 0.4, row + 0.4], color="black", linewidth=1.5,
                          label="threshold")
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if unique:
            axis.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                        frameon=False)
        axis.set_yticks(range(len(names)), [_latex_safe(terminal_line(name, 60)) for name in names], fontsize=8)
        axis.set_ylim(-0.6, len(names) - 0.4)
        axis.set_xlim(low, high)
        axis.invert_yaxis()
        axis.set_xlabel("score")
        title = f"scan {terminal_line(self.id, 60)}: score of every suspect, per fingerprint"
        axis.set_title(_latex_safe(title), fontsize=10)
        figure.tight_layout()
        return figure

    def svg(self) -> str:
        """The plot of :meth:`plot` as inline SVG for the HTML report: every suspect's point has
        a ``<title>`` (suspect, fingerprint, score, decision, alpha), every reference tick one
        too; the legend names what is drawn and nothing else."""
        names = list(self.thresholds)
        left, plot_width, legend_width, row_height, top = 170, 520, 190, 44, 30
        low, high = self._score_range()

        def x(score: float) -> float:
            return left + (score - low) / (high - low) * plot_width

        height = top + row_height * max(1, len(names)) + 40
        parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + plot_width + legend_width}' "
                 f"height='{height}' font-family='sans-serif' font-size='11' role='img'>",
                 "<title>score of every suspect beside its fingerprint's reference scores</title>"]
        drawn: dict[str, str] = {}
        rng = np.random.default_rng(0)
        for row, name in enumerate(names):
            middle = top + row_height * row + row_height / 2
            parts.append(f"<text x='{left - 6}' y='{middle + 4:.1f}' text-anchor='end'>"
                         f"{html_text(terminal_line(name, 28))}</text>")
            references, what = self.reference_scores(name)
            for value in references:
                parts.append(f"<line class='reference' x1='{x(value):.1f}' x2='{x(value):.1f}' y1='{middle + 11:.1f}' "
                             f"y2='{middle + 19:.1f}' stroke='{_REFERENCE_COLOUR}'><title>{html_text(what)} score "
                             f"{value:.4f} ({html_text(name)})</title></line>")
            if references:
                drawn[f"reference score ({what})"] = _REFERENCE_COLOUR
            threshold = self.thresholds[name]
            if threshold is not None:
                parts.append(f"<line class='threshold' x1='{x(threshold):.1f}' x2='{x(threshold):.1f}' "
                             f"y1='{middle - 18:.1f}' y2='{middle + 18:.1f}' stroke='black' stroke-width='2'>"
                             f"<title>threshold {threshold:.4f} ({html_text(name)})</title></line>")
                drawn["threshold"] = "black"
            for o, f, score in self._points(name):
                colour = _COLOURS.get(f.decision, "#000000")
                drawn[f.decision] = colour
                label = (f"{_short(o.source)}: {name} score {score:.4f}, {f.decision}"
                         + (f" at alpha {self.alpha_used(name)}" if f.decision in ("derived", "independent") else ""))
                parts.append(f"<circle class='suspect' cx='{x(score):.1f}' "
                             f"cy='{middle - 3 + rng.uniform(-8, 8):.1f}' r='3.5' fill='{colour}' fill-opacity='0.75'>"
                             f"<title>{html_text(label)}</title></circle>")
        axis_y = top + row_height * max(1, len(names))
        parts.append(f"<line x1='{left}' x2='{left + plot_width}' y1='{axis_y}' y2='{axis_y}' stroke='#555'/>")
        for tick in np.linspace(low, high, 6):
            parts.append(f"<text x='{x(tick):.1f}' y='{axis_y + 15}' text-anchor='middle'>{tick:.2f}</text>")
        parts.append(f"<text x='{left + plot_width / 2}' y='{axis_y + 32}' text-anchor='middle'>score</text>")
        for i, (label, colour) in enumerate(drawn.items()):
            y = top + 14 * i
            parts.append(f"<g class='legend'><rect x='{left + plot_width + 12}' y='{y - 8}' width='10' height='10' "
                         f"fill='{colour}'/><text x='{left + plot_width + 27}' y='{y + 1}'>{html_text(label)}</text>"
                         "</g>")
        return "\n".join(parts + ["</svg>"])

    def write(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write the report to ``path`` (``.md`` or ``.html``); Markdown gets its plot beside it
        as ``<stem>-scores.png``, HTML embeds it as SVG. Returns the files written."""
        target = Path(path)
        check_param("path", str(path), "a file name ending in .md or .html",
                    target.suffix in (".md", ".html"), caller="ScanReport.write")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".html":
            target.write_text(self.to_html())
            return [target]
        figure = target.with_name(f"{target.stem}-scores.png")
        self.plot(figure)
        target.write_text(self.to_markdown(figure.name))
        return [target, figure]


def _hash_cell(outcome: SuspectOutcome) -> str:
    """The start of a file suspect's SHA-256; ``-`` for an endpoint (its identity is its URL)."""
    return outcome.identity[:12] if _SHA256.fullmatch(outcome.identity or "") else "-"


def _point_name(source: str) -> str:
    """A suspect's name on a plot: its file name, or its URL cut short."""
    return terminal_line(source if source.startswith(("http://", "https://")) else Path(source).name, 40)


def _latex_safe(text: str) -> str:
    """``$`` escaped: matplotlib reads text between two as mathtext."""
    return text.replace("$", "\\$")


def terminal_line(text: object, width: int | None = None) -> str:
    r"""``text`` (a file name, a stored name, an error read back from the registry) made safe
    for one line of a terminal: every character Python does not call printable -- control
    characters (ESC, BEL, CR, newline, tab), C1 codes, bidirectional overrides and isolates,
    zero-width and other format characters, line separators -- is written as its escape
    (``\x1b``, ``\u202e``), so a name cannot move the cursor, rewrite a line, reorder what
    is shown or add a line. ``width``: longer text is cut to its start and ``...``.

    >>> terminal_line("a\x1b[2J\rb\nc\u202egnp.onnx\x07")
    'a\\x1b[2J\\rb\\nc\\u202egnp.onnx\\x07'
    """
    line = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in str(text))
    return line if width is None or len(line) <= width else line[:width - 3] + "..."


#: What Markdown would read as syntax in a table cell, backslash-escaped.
_MARKDOWN = {"\\": "\\\\", "|": "\\|", "`": "\\`", "[": "\\[", "]": "\\]"}

#: What could open HTML or an autolink: ``<`` before a tag, comment or scheme; ``://``; an
#: address's ``@``; ``www.`` (GitHub's autolinks). Written as entities.
_LINKS = re.compile(r"<(?=[A-Za-z/!?])|:(?=//)|@|(?<=www)\.", re.IGNORECASE)


def markdown_cell(text: object) -> str:
    r"""Untrusted ``text`` as the content of one Markdown table cell (or a line of prose):
    :func:`terminal_line` first (no control or bidirectional characters, no line break), then
    ``\``, ``|``, backticks and brackets backslash-escaped, and a ``<`` that could open HTML,
    the ``:`` of ``://``, ``@`` and the dot of ``www.`` written as entities: ``|`` cannot add a
    column, no ``<img onerror=...>`` or other HTML, no code span, and no link (``[x](javascript:...)``,
    ``<https://...>``, autolinked URLs and addresses) can come from a name. Shown as written.

    >>> markdown_cell("<img src=x onerror=alert(1)>|[a](javascript:b) https://e.com <= 0.05")
    '&lt;img src=x onerror=alert(1)>\\|\\[a\\](javascript:b) https&#58;//e.com <= 0.05'
    """
    escaped = "".join(_MARKDOWN.get(char, char) for char in terminal_line(text))
    return _LINKS.sub(lambda match: f"&#{ord(match.group())};" if match.group() != "<" else "&lt;", escaped)


def html_text(text: object) -> str:
    """Untrusted ``text`` for an HTML page: :func:`terminal_line` (no bidirectional overrides
    that reorder a file name on screen), then HTML-escaped (quotes included)."""
    return html.escape(terminal_line(text), quote=True)


def _verdicts(outcome: SuspectOutcome) -> tuple[Any, ...]:
    """What a report shows of an outcome, as the registry stores it (NaN is stored as NULL)."""
    def real(value: float | None) -> float | None:
        return None if value is None or value != value else float(value)

    findings = sorted((f.fingerprint, f.fingerprint_sha256, real(f.score), f.decision, real(f.threshold),
                       int(f.queries), f.error, stages_text(f.stages) or "") for f in outcome.findings)
    return outcome.identity or "", outcome.status, outcome.error, int(outcome.queries or 0), findings


def _check_read_back(registry: Registry, scan_id: str, outcomes: list[SuspectOutcome],
                     computed: Mapping[str, SuspectOutcome]) -> None:
    stored = {outcome.source: outcome for outcome in outcomes}
    for source, outcome in computed.items():
        if source not in stored or _verdicts(stored[source]) != _verdicts(outcome):
            raise RegistryError(f"The registry {printable(str(registry.path))!r} returned for "
                                f"{printable(_short(source))!r} of scan {scan_id!r} other verdicts than the scan "
                                "computed and wrote: the database was changed while the scan ran. Its report is "
                                "refused; check who else writes the registry.")


def _short(source: str, width: int = 60) -> str:
    return source if len(source) <= width else "..." + source[-(width - 3):]


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    rows = [[terminal_line(cell) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return ["  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in [header, *rows]]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html_text(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
