"""The scan report agrees with itself (issue 24, item 6): the counts of the summary, of
``tafa registry scans`` and of every report are the same; a skipped suspect is listed as
skipped; the hash column never shows a URL; the bounds table speaks of the decisions the scan
made (not of a calibration it did not use), each suspect gets one decision and the alpha it
was made at; the plot's legend names only what is drawn, its points name their suspects and
every fingerprint's reference scores are drawn beside them.

The world: two owners (the classifier fixture's owner, and one of its references), each
calibrated at alpha 0.01 on the 17 other references -- which support 1/18 at best, so their
own calibrations decide nothing at 0.01 -- and those 17 as the registry's null panel. The
suspects: a pruned copy of owner a (file), owner a served by a KServe v2 endpoint, an
independent model, a model of another input shape (skipped) and a closed endpoint (failed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from kserve_server import KServeServer, free_port
from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.cli import main
from tafa.registry import Registry
from tafa.scanning import OpenOptions, ScanReport, scan

#: Retries without waiting: the closed endpoint fails after its refusals at once (the default back-off
#: waits 3.5 s per scan and changes no report).
CLOSED_AT_ONCE = OpenOptions(max_wait=0.0)
EXPORT = dict(dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})


def _onnx(model: torch.nn.Module, path: Path, shape=(1, 8, 8)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), **EXPORT)
    return str(path)


@pytest.fixture(scope="module")
def world(classifier, tmp_path_factory):
    root = tmp_path_factory.mktemp("scan-report")
    owners = {"a": classifier.owner, "b": classifier.references[0]}
    references = classifier.references[1:]
    registry = root / "registry.sqlite"
    with Registry(registry) as store:
        for name, model in owners.items():
            fingerprint = Fingerprint.create(model, "box:0,1", input_shape=(1, 8, 8), points=16)
            calibration = fingerprint.calibrate_first(references, alpha=0.01)
            assert not calibration.supports_alpha  # 17 references: 1/18 at best, so "no decision" at 0.01
            store.add(fingerprint.save(root / f"{name}.tafa"), name, calibration=calibration)
        store.add_panel([_onnx(model, root / "panel" / f"reference{i:02d}.onnx") for i, model in enumerate(references)])
    suspects = root / "suspects"
    paths = {"a_pruned": _onnx(magnitude_prune(classifier.owner, 0.5), suspects / "a_pruned.onnx"),
             "independent": _onnx(classifier.independent, suspects / "independent.onnx"),
             "odd": _onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)), suspects / "odd.onnx",
                          (1, 4, 4))}
    return SimpleNamespace(root=root, registry=registry, paths=paths, owner=classifier.owner)


@pytest.fixture(scope="module")
def served(world):
    """Owner a behind a KServe v2 endpoint, for the whole module."""
    def predict(x):
        with torch.no_grad():
            return world.owner(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()

    with KServeServer(predict, input_shape=(1, 8, 8), output_shape=(10,)) as server:
        yield server.url


def _suspects(world, served) -> list[str]:
    closed = f"http://127.0.0.1:{free_port()}/v2/models/gone"
    return [world.paths["a_pruned"], served, world.paths["independent"], world.paths["odd"], closed]


@pytest.fixture(scope="module")
def family(world, served):
    """The default control, family-wise, at 0.1: the 17-model null panel supports 1/18."""
    return scan(_suspects(world, served), registry=world.registry, workers=0, control="family", alpha=0.1,
                options=CLOSED_AT_ONCE)


@pytest.fixture(scope="module")
def per_fingerprint(world, served):
    """Each fingerprint's stored calibration, at 0.01 -- which its 17 references cannot support."""
    return scan(_suspects(world, served), registry=world.registry, workers=0, control="per-fingerprint",
                options=CLOSED_AT_ONCE)


def _html_table(page: str, heading: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the table under ``<h2>heading</h2>``, cells as text."""
    block = page.split(f"<h2>{heading}</h2>", 1)[1].split("</table>", 1)[0]
    cells = lambda row, tag: [re.sub("<[^>]+>", "", c) for c in re.findall(f"<{tag}>(.*?)</{tag}>", row)]  # noqa
    header = cells(block.split("</thead>")[0], "th")
    rows = [cells(row, "td") for row in re.findall("<tr>(.*?)</tr>", block.split("<tbody>")[1])]
    return header, rows


def _markdown_table(text: str, heading: str) -> tuple[list[str], list[list[str]]]:
    lines = text.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    split = lambda line: [re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\)\|", line)[1:-1]]  # noqa
    return split(lines[0]), [split(line) for line in lines[2:]]


def _by_suspect(header: list[str], rows: list[list[str]]) -> dict[str, dict[str, str]]:
    return {row[0].rsplit("/", 1)[-1]: dict(zip(header, row)) for row in rows}


# -- counts -------------------------------------------------------------------------------------

def test_counts_agree_between_the_summary_registry_scans_and_every_report(world, family, tmp_path, capsys):
    summary = family.summary()
    counts = {state: summary[state] for state in ("done", "skipped", "failed", "pending")}
    assert counts == {"done": 3, "skipped": 1, "failed": 1, "pending": 0}
    assert family.scan.counts == counts  # the registry's record, by the same rule
    assert main(["registry", "scans", "--registry", str(world.registry), "--json"]) == 0
    (listed,) = [r for r in json.loads(capsys.readouterr().out) if r["id"] == family.id]
    assert listed["counts"] == counts
    assert main(["registry", "scans", "--registry", str(world.registry)]) == 0
    header, *rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    (row,) = [r for r in rows if r[0] == family.id]
    assert {state: int(row[header.index(state)]) for state in counts} == counts
    phrase = "5 suspects (3 done, 1 skipped, 1 failed, 0 pending)"
    assert family.write(tmp_path / "r.html") and phrase in (tmp_path / "r.html").read_text()
    family.write(tmp_path / "r.md")
    assert phrase in (tmp_path / "r.md").read_text()
    assert "5 suspects, 3 done, 1 skipped, 1 failed, 0 pending" in family.render()
    # the every-suspect table lists each state as often as the counts say
    _, suspects = _html_table(family.to_html(), "Every suspect")
    assert {state: [r[1] for r in suspects].count(state) for state in counts} == counts


def test_a_skipped_suspect_is_listed_as_skipped_never_done(world, family):
    page = family.to_html()
    for header, rows in (_html_table(page, "Every suspect"), _markdown_table(family.to_markdown(), "Every suspect")):
        odd = _by_suspect(header, rows)["odd.onnx"]
        assert odd["status"] == "skipped" and odd["decision"] == "-" and "[1, 4, 4]" in odd["by fingerprint"]
    (outcome,) = [o for o in json.loads(family.to_json())["outcomes"] if o["source"] == world.paths["odd"]]
    assert outcome["state"] == "skipped" and outcome["decision"] == "-"


# -- the hash column ------------------------------------------------------------------------------

def test_the_hash_column_shows_a_hash_or_a_dash_never_a_url(world, served, family):
    assert any(o.source == served for o, _ in family.matches())  # the endpoint is in the matches table too
    page, markdown = family.to_html(), family.to_markdown()
    tables = [_html_table(page, "Matches"), _html_table(page, "Every suspect"),
              _markdown_table(markdown, "Matches"), _markdown_table(markdown, "Every suspect")]
    seen = 0
    for header, rows in tables:
        for row in rows:
            cell = row[header.index("sha256")]
            assert re.fullmatch(r"[0-9a-f]{12}|-", cell), cell
            is_url = row[0].startswith("http")
            assert (cell == "-") == is_url, row  # files have a hash (failed or not); endpoints none
            seen += is_url
    assert seen >= 3  # the served endpoint twice, the closed one once
    text = family.render()
    (line,) = [line for line in text.splitlines() if "127.0.0.1" in line and "derived" in line]
    assert line.rstrip().endswith(" -") and "http://127.0 " not in line.replace(served, "")


# -- the bounds table and one decision per suspect --------------------------------------------------

def test_a_family_wise_report_speaks_of_the_decisions_it_made_not_an_unused_calibration(world, served, family):
    decided = {o.source.rsplit("/", 1)[-1]: family.decision(o) for o in family.outcomes}
    assert decided["a_pruned.onnx"] == "derived" and decided[served.rsplit("/", 1)[-1]] == "derived"
    assert decided["independent.onnx"] == "independent"
    for document in (family.render(), family.to_markdown(), family.to_html()):
        assert "no decision" not in document and "not the requested" not in document
    header, rows = _html_table(family.to_html(), "Fingerprints and their false-positive bounds, as this scan decided")
    for row in rows:
        cells = dict(zip(header, row))
        assert cells["alpha"] == "0.1 family-wise" and cells["references"] == "17 (null panel)"
        assert cells["threshold"] == "per suspect" and cells["false-positive bound"].startswith("0.0556")
        assert "not what this scan decides by" in cells["note"]
    header, rows = _html_table(family.to_html(), "Every suspect")
    for name, row in _by_suspect(header, rows).items():
        assert row["alpha"] == ("-" if row["status"] != "done" else "0.1 family-wise"), name
    header, rows = _html_table(family.to_html(), "Matches")
    assert rows and all(dict(zip(header, row))["alpha"] == "0.1 family-wise" for row in rows)


def test_a_per_fingerprint_report_says_no_decision_exactly_where_none_was_made(per_fingerprint):
    assert {f.decision for o in per_fingerprint.outcomes for f in o.findings} == {"undecided"}
    assert not per_fingerprint.matches()
    header, rows = _markdown_table(per_fingerprint.to_markdown(),
                                   "Fingerprints and their false-positive bounds, as this scan decided")
    for row in rows:
        cells = dict(zip(header, row))
        assert cells["alpha"] == "0.01 per fingerprint" and "no decision" in cells["note"]
    header, rows = _markdown_table(per_fingerprint.to_markdown(), "Every suspect")
    assert {row["decision"] for row in _by_suspect(header, rows).values() if row["status"] == "done"} == {"undecided"}


# -- the plot -------------------------------------------------------------------------------------

def _legend(report: ScanReport) -> set[str]:
    figure = report.figure()
    try:
        legend = figure.axes[0].get_legend()
        labels = {text.get_text() for text in legend.get_texts()}
        drawn = {artist.get_label() for artist in [*figure.axes[0].lines, *figure.axes[0].collections]}
        assert labels <= drawn
        return labels
    finally:
        plt.close(figure)


def _svg_legend(report: ScanReport) -> set[str]:
    return set(re.findall(r"<g class='legend'>.*?<text[^>]*>(.*?)</text></g>", report.svg()))


def test_the_legend_names_only_what_is_drawn(family, per_fingerprint):
    # family-wise: each suspect has its own threshold, so no bar is drawn and none is named
    assert "threshold" not in _legend(family) and "threshold" not in _svg_legend(family)
    assert "class='threshold'" not in family.svg()
    assert _svg_legend(family) == {"derived", "independent", "reference score (null panel)"}
    assert _legend(family) == _svg_legend(family)
    figure = family.figure()
    assert "threshold" not in figure.axes[0].get_xlabel()
    plt.close(figure)
    # per fingerprint: one calibrated threshold per fingerprint, drawn and named
    assert per_fingerprint.svg().count("class='threshold'") == 2
    assert _svg_legend(per_fingerprint) == {"undecided", "threshold", "reference score (references)"}
    assert _legend(per_fingerprint) == _svg_legend(per_fingerprint)


def test_every_point_names_its_suspect(world, served, family):
    svg = family.svg()
    points = re.findall(r"<circle class='suspect'[^>]*><title>(.*?)</title></circle>", svg)
    scored = [(o, f) for o in family.outcomes for f in o.findings if f.score is not None]
    assert len(points) == len(scored) == 6  # three compared suspects x two fingerprints
    for outcome, finding in scored:
        name = outcome.source.rsplit("/", 1)[-1]
        assert sum(name in title and f" {finding.fingerprint} score {finding.score:.4f}, {finding.decision}" in title
                   for title in points) == 1, (name, finding.fingerprint)
    figure = family.figure()  # the PNG names its matches
    labels = {text.get_text() for text in figure.axes[0].texts}
    plt.close(figure)
    assert {"a_pruned.onnx", served} <= labels and "independent.onnx" not in labels


def test_every_fingerprint_is_drawn_beside_its_reference_distribution(family, per_fingerprint, tmp_path):
    for report, what in ((family, "null panel"), (per_fingerprint, "references")):
        for name in ("a", "b"):
            scores, kind = report.reference_scores(name)
            assert kind == what and len(scores) == 17
            ticks = re.findall(rf"<line class='reference'[^>]*><title>{what} score (-?[0-9.]+) \({name}\)</title>",
                               report.svg())
            assert sorted(map(float, ticks)) == pytest.approx(sorted(scores), abs=1e-4)
    # the owner a's copies score far above the panel's every model, the independent suspect among them
    scores, _ = family.reference_scores("a")
    by_name = {o.source.rsplit("/", 1)[-1]: {f.fingerprint: f.score for f in o.findings} for o in family.outcomes}
    assert by_name["a_pruned.onnx"]["a"] > max(scores) + 0.1
    page = (family.write(tmp_path / "r.html")[0]).read_text()
    assert page.count("<line class='reference'") == 34 and "<svg" in page


def test_the_report_says_which_stages_a_scan_does_not_run(family, per_fingerprint):
    """Both owners are MLP classifiers: tafa verify would also run their data-like stage, boundary
    geometry and extraction stage. A family-wise scan runs them on every suspect (each a column of its max-T
    table); a scan deciding with the stored calibrations does not, and every form of its report
    says so."""
    said = ("not run here: tafa-datalike (2 fingerprints), tafa-boundary (2 fingerprints), tafa-students (2 "
            "fingerprints)")
    for document in (per_fingerprint.render(), per_fingerprint.to_markdown(), per_fingerprint.to_html()):
        assert said in document
    assert said in json.loads(per_fingerprint.to_json())["summary"]["not_scanned"]
    assert "not run here" not in family.render() and json.loads(family.to_json())["summary"]["not_scanned"] is None
    compared = [f for o in family.outcomes for f in o.findings if f.score is not None]
    assert compared and all([stage["name"] for stage in f.stages] == ["tafa-datalike", "tafa-boundary", "tafa-students"]
                            and all(stage["score"] is not None and stage["queries"] > 0 for stage in f.stages)
                            for f in compared)
