"""What a scan found: the matches, the failures, the score distribution of every fingerprint.

A :class:`ScanReport` is read back from the registry (so a resumed scan reports all its
suspects, not only the last run's). It renders as text for the terminal, one JSON object,
Markdown or a self-contained HTML page, each with the table of matches; the Markdown and
HTML reports also show every fingerprint's false-positive bound (what its references support,
and a note where that is not the alpha asked for), list every suspect, matched or not, and
come with a plot of every fingerprint's score distribution over the suspects (matplotlib,
Agg backend), the threshold marked where the fingerprint is calibrated.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import check_param, printable
from ..registry import Finding, Registry, RegistryError, ScanRecord, SuspectOutcome
from .control import ErrorControl

_COLOURS = {"derived": "#c0392b", "independent": "#7f8c8d", "undecided": "#2e86c1", "error": "#000000"}
BOUND_HEADER = ["fingerprint", "threshold", "false-positive bound", "references", "alpha asked", "note"]
SUSPECT_HEADER = ["suspect", "status", "best fingerprint", "best score", "decisions"]


@dataclass
class ScanReport:
    """A scan, its suspects' outcomes, and what its last run cost."""

    scan: ScanRecord
    outcomes: list[SuspectOutcome]
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
        for outcome in outcomes:
            for finding in outcome.findings:
                if finding.threshold is not None:
                    thresholds[finding.fingerprint] = finding.threshold
        bounds = {item["name"]: item.get("calibration") for item in record.config.get("fingerprints", [])}
        return cls(record, outcomes, thresholds, dict(run or {}), bounds)

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
        return [o for o in self.outcomes if o.status == "failed"]

    def skipped(self) -> list[SuspectOutcome]:
        """Suspects opened but compared with nothing: they fit no fingerprint (the note says why)."""
        return [o for o in self.outcomes if o.status == "done" and not o.findings and o.error]

    @property
    def control(self) -> ErrorControl:
        """The error control the scan decided under (per fingerprint for scans that predate them)."""
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

    def summary(self) -> dict[str, Any]:
        """Counts, queries per suspect and throughput."""
        skipped = self.skipped()
        done = [o for o in self.outcomes if o.status == "done" and o not in skipped]
        decisions: dict[str, int] = {}
        for outcome in done:
            for finding in outcome.findings:
                decisions[finding.decision] = decisions.get(finding.decision, 0) + 1
        seconds = float(self.run.get("seconds", self.scan.seconds))
        ran = int(self.run.get("suspects", len(self.outcomes)))
        return {
            "scan": self.id, "status": self.scan.status, "suspects": len(self.outcomes),
            "done": len(done), "skipped": len(skipped), "failed": len(self.failures()),
            "pending": sum(o.status == "pending" for o in self.outcomes),
            "fingerprints": len(self.thresholds),
            "calibrated": sum(value is not None for value in self.thresholds.values()),
            "decisions": decisions, "matches": len(self.matches()),
            "queries_per_suspect": float(np.mean([o.queries for o in done])) if done else 0.0,
            "seconds": seconds, "suspects_per_second": ran / seconds if seconds > 0 else None,
            "error_control": self.control_summary(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "scan": self.scan.to_dict(), "run": self.run,
                "thresholds": self.thresholds, "bounds": self.bounds,
                "outcomes": [o.to_dict() for o in self.outcomes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def bound_rows(self) -> list[list[str]]:
        """One row per fingerprint: threshold, bound (and its method), references, alpha asked, note."""
        rows = []
        for name in self.thresholds:
            bound = self.bounds.get(name)
            if bound is None:
                rows.append([name, "-", "none", "0", "-", "not calibrated: its verdicts are undecided"])
                continue
            rows.append([name, f"{bound['threshold']:.4f}", f"{bound['bound']:.3g} ({bound['method']})",
                         str(bound["n_references"]), f"{bound['alpha_requested']:.3g}", bound.get("note") or ""])
        return rows

    def suspect_rows(self) -> list[list[str]]:
        """One row per suspect, matched or not: its status, best-scoring fingerprint and decisions."""
        rows = []
        for o in self.outcomes:
            scored = [f for f in o.findings if f.score is not None]
            best = max(scored, key=lambda f: f.score or 0.0) if scored else None
            decisions: dict[str, list[str]] = {}
            for f in o.findings:
                decisions.setdefault(str(f.decision), []).append(f.fingerprint)
            if o.status == "failed":
                verdict = f"failed: {o.error or ''}"
            elif o.status == "done" and not o.findings:
                verdict = "no registered fingerprint fits its input and output shapes"
            else:
                verdict = "; ".join(f"{d}: {', '.join(names)}" for d, names in sorted(decisions.items())) or o.status
            rows.append([_short(o.source), o.status, "-" if best is None else best.fingerprint,
                         "-" if best is None else f"{best.score:.4f}", verdict])
        return rows

    # -- text ----------------------------------------------------------------------------------
    def _rows(self, pairs: list[tuple[SuspectOutcome, Finding]]) -> list[list[str]]:
        return [[_short(o.source), f.fingerprint, f"{f.score:.4f}" if f.score is not None else "-",
                 "-" if f.threshold is None else f"{f.threshold:.4f}", f.decision, (o.identity or "")[:12]]
                for o, f in pairs]

    def render(self) -> str:
        """A terminal summary: counts, matches (or the top scores when nothing is calibrated), failures."""
        s = self.summary()
        rate = "" if s["suspects_per_second"] is None else f", {s['suspects_per_second']:.2f} suspects/s"
        lines = [f"scan {s['scan']} ({s['status']}): {s['suspects']} suspects, {s['done']} done, "
                 f"{s['skipped']} skipped, {s['failed']} failed, {s['pending']} pending; "
                 f"{s['fingerprints']} fingerprints ({s['calibrated']} calibrated); "
                 f"{s['queries_per_suspect']:.0f} queries per suspect; {s['seconds']:.1f} s{rate}"]
        lines.append(s["error_control"]["statement"])
        header = ["suspect", "fingerprint", "score", "threshold", "decision", "sha256"]
        if not self._decides(s):
            lines.append("no registered fingerprint is calibrated (tafa registry add ... --references DIR): "
                         "every decision is undecided; highest scores:")
            lines += _text_table(header, self._rows(self.top()))
        elif self.matches():
            lines.append(f"{len(self.matches())} matches:")
            lines += _text_table(header, self._rows(self.matches()))
        else:
            lines.append("no matches.")
        if self.failures():
            lines.append(f"{len(self.failures())} suspects failed:")
            lines += [f"  {_short(o.source)}: {o.error}" for o in self.failures()]
        if self.skipped():
            lines.append(f"{len(self.skipped())} suspects skipped (they fit no registered fingerprint):")
            lines += [f"  {_short(o.source)}: {o.error}" for o in self.skipped()]
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
                 f"{s['suspects']} suspects ({s['done']} done, {s['skipped']} skipped, {s['failed']} failed, "
                 f"{s['pending']} pending) against {s['fingerprints']} fingerprints ({s['calibrated']} calibrated); "
                 f"{s['queries_per_suspect']:.0f} queries per suspect; status {s['status']}.", "",
                 markdown_cell(s["error_control"]["statement"]) + ".", ""]
        header = ["suspect", "fingerprint", "score", "threshold", "decision", "sha256"]
        pairs = self.matches() if self._decides(s) else self.top()
        lines += ["## Matches" if self._decides(s) else "## Highest scores (no fingerprint is calibrated)", ""]
        lines += _markdown_table(header, self._rows(pairs)) if pairs else ["None."]
        lines += ["", "## Fingerprints and their false-positive bounds", ""]
        lines += _markdown_table(BOUND_HEADER, self.bound_rows())
        lines += ["", "## Every suspect", ""]
        lines += _markdown_table(SUSPECT_HEADER, self.suspect_rows()) if self.outcomes else ["None."]
        if figure:
            lines += ["", "## Score distributions", "", f"![score distribution per fingerprint]({figure})"]
        if self.failures():
            lines += ["", "## Failed suspects", ""]
            lines += _markdown_table(["suspect", "error"], [[_short(o.source), o.error or ""] for o in self.failures()])
        if self.skipped():
            lines += ["", "## Skipped suspects (they fit no registered fingerprint)", ""]
            lines += _markdown_table(["suspect", "reason"], [[_short(o.source), o.error or ""] for o in self.skipped()])
        return "\n".join(lines) + "\n"

    def to_html(self, figure_png: bytes | None = None) -> str:
        s = self.summary()
        header = ["suspect", "fingerprint", "score", "threshold", "decision", "sha256"]
        pairs = self.matches() if self._decides(s) else self.top()
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tafa scan {html_text(self.id)}</title>"
                 "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
                 "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>",
                 f"<h1>tafa scan {html_text(self.id)}</h1>",
                 f"<p>{s['suspects']} suspects ({s['done']} done, {s['skipped']} skipped, {s['failed']} failed, "
                 f"{s['pending']} pending) "
                 f"against {s['fingerprints']} fingerprints ({s['calibrated']} calibrated); "
                 f"{s['queries_per_suspect']:.0f} queries per suspect; status {html_text(s['status'])}.</p>",
                 f"<p>{html_text(s['error_control']['statement'])}.</p>",
                 "<h2>Matches</h2>" if self._decides(s) else "<h2>Highest scores (no fingerprint is calibrated)</h2>",
                 _html_table(header, self._rows(pairs)) if pairs else "<p>None.</p>",
                 "<h2>Fingerprints and their false-positive bounds</h2>", _html_table(BOUND_HEADER, self.bound_rows()),
                 "<h2>Every suspect</h2>",
                 _html_table(SUSPECT_HEADER, self.suspect_rows()) if self.outcomes else "<p>None.</p>"]
        if figure_png:
            encoded = base64.b64encode(figure_png).decode()
            parts += ["<h2>Score distributions</h2>",
                      f"<img alt='score distribution per fingerprint' src='data:image/png;base64,{encoded}'>"]
        if self.failures():
            parts += ["<h2>Failed suspects</h2>",
                      _html_table(["suspect", "error"], [[_short(o.source), o.error or ""] for o in self.failures()])]
        if self.skipped():
            parts += ["<h2>Skipped suspects (they fit no registered fingerprint)</h2>",
                      _html_table(["suspect", "reason"], [[_short(o.source), o.error or ""] for o in self.skipped()])]
        return "\n".join(parts + ["</body></html>"]) + "\n"

    # -- figures and files ---------------------------------------------------------------------
    def plot(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """PNG of every fingerprint's scores over the suspects (one row each, threshold marked);
        written to ``path`` when given. Returns the PNG bytes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = list(self.thresholds)
        figure, axis = plt.subplots(figsize=(8, 1.2 + 0.45 * max(1, len(names))))
        rng = np.random.default_rng(0)
        for row, name in enumerate(names):
            findings = [f for o in self.outcomes for f in o.findings if f.fingerprint == name and f.score is not None]
            for decision, colour in _COLOURS.items():
                scores = [float(f.score) for f in findings if f.decision == decision and f.score is not None]
                if scores:
                    axis.scatter(scores, row + rng.uniform(-0.25, 0.25, len(scores)), s=9, color=colour,
                                 alpha=0.7, label=decision, linewidths=0)
            threshold = self.thresholds[name]
            if threshold is not None and not self.control.uses_panel:  # panel thresholds vary by suspect
                axis.plot([threshold, threshold], [row - 0.4, row + 0.4], color="black", linewidth=1.5)
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if unique:
            axis.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                        frameon=False)
        labels = [terminal_line(name, 60).replace("$", "\\$") for name in names]  # "$": matplotlib's mathtext
        axis.set_yticks(range(len(names)), labels, fontsize=8)
        axis.set_ylim(-0.6, len(names) - 0.4)
        axis.invert_yaxis()
        axis.set_xlabel("score (black bar: calibrated threshold)")
        title = f"scan {terminal_line(self.id, 60)}: score of every suspect, per fingerprint"
        axis.set_title(title.replace("$", "\\$"), fontsize=10)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        plt.close(figure)
        png = buffer.getvalue()
        if path is not None:
            Path(path).write_bytes(png)
        return png

    def write(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write the report to ``path`` (``.md`` or ``.html``); Markdown gets its plot beside it
        as ``<stem>-scores.png``, HTML embeds it. Returns the files written."""
        target = Path(path)
        check_param("path", str(path), "a file name ending in .md or .html",
                    target.suffix in (".md", ".html"), caller="ScanReport.write")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.suffix == ".html":
            target.write_text(self.to_html(self.plot()))
            return [target]
        figure = target.with_name(f"{target.stem}-scores.png")
        self.plot(figure)
        target.write_text(self.to_markdown(figure.name))
        return [target, figure]


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
                       int(f.queries), f.error) for f in outcome.findings)
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
