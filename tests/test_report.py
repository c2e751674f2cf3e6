"""The report writer on a small synthetic results dict: files, numbers, images."""

from __future__ import annotations

import json
import math
import os
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from tafa.bench import metrics
from tafa.bench.report import plot_curves, plot_scores, write_markdown, write_report
from tafa.storage import write_atomically
from tafa.errors import InvalidParameter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scheme(rng: np.random.Generator, shift: float, *, lofo: bool = False) -> dict:
    families = {"prune-50": 1, "finetune-all": 1, "quant-int8": 1, "other-seed": 0, "wider": 0}
    scores = [{"model": f"{family}-{i}", "label": label, "family": family,
               "score": float(rng.normal(shift if label else 0.0, 0.2))}
              for family, label in families.items() for i in range(4)]
    pos = [s["score"] for s in scores if s["label"] == 1]
    neg = [s["score"] for s in scores if s["label"] == 0]
    threshold, alpha = metrics.rank_threshold(rng.normal(0.0, 0.2, 19), 0.05)
    tpr, fpr = metrics.rule_rates(pos, neg, threshold)
    result = {
        "auc": metrics.roc_auc(pos, neg), "auc_ci": list(metrics.bootstrap_ci(metrics.roc_auc, pos, neg, n_boot=100)),
        "aruc": metrics.aruc(pos, neg), "aruc_ci": list(metrics.bootstrap_ci(metrics.aruc, pos, neg, n_boot=100)),
        "tpr_at_fpr_1pct": metrics.tpr_at_fpr(pos, neg, 0.01), "tpr_at_fpr_0": metrics.tpr_at_fpr(pos, neg, 0.0),
        "rule": {"threshold": threshold, "alpha": alpha, "tpr": tpr, "fpr": fpr},
        "per_family": {family: {"n": 4, "detection_rate": metrics.detection_rate(
            [s["score"] for s in scores if s["family"] == family], threshold)} for family in families},
        "queries": 96, "fingerprint_seconds": 2.5, "verify_seconds": 0.0421, "scores": scores,
    }
    if lofo:
        result["lofo"] = {"auc": 0.8125, "aruc": 0.4375, "tpr_at_fpr_1pct": 0.25}
    return result


@pytest.fixture
def results() -> dict:
    rng = np.random.default_rng(7)
    return {
        "command": "tafa bench --size smoke", "machine": "test-box (2 cores)", "git_commit": "0123abc",
        "size": "smoke", "seconds": 42.5,
        "scenarios": {
            "classification": {"n_pos": 12, "n_neg": 8, "owner": "mlp-digits", "schemes": {
                "tafa": _scheme(rng, 1.0), "tafa-learned": _scheme(rng, 0.8, lofo=True),
                "ipguard": _scheme(rng, 0.3)}},
            "regression": {"n_pos": 12, "n_neg": 8, "owner": "mlp-diabetes", "schemes": {
                "tafa": _scheme(rng, 1.0), "modeldiff": _scheme(rng, 0.4)}},
        },
    }


def _assert_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # something drawn, not a blank canvas
    return image


def test_write_report_writes_every_file_atomically(results, tmp_path):
    out = tmp_path / "report"
    written = write_report(results, out)
    assert [p.name for p in written] == ["results.json", "results.md", "scores.png", "curves.png"]
    assert all(p.parent == out and p.is_file() for p in written)
    assert sorted(os.listdir(out)) == sorted(p.name for p in written)  # no temporary file left
    assert json.loads((out / "results.json").read_text()) == results
    for png in written[2:]:
        _assert_png(png)
    markdown = (out / "results.md").read_text()
    assert markdown == write_markdown(results, figures=["scores.png", "curves.png"])
    assert "![scores](scores.png)" in markdown and "![curves](curves.png)" in markdown
    # A second run replaces the files in place.
    assert write_report(results, out) == written


def test_markdown_contains_the_header_and_every_number(results):
    markdown = write_markdown(results)
    for text in ("tafa bench --size smoke", "test-box (2 cores)", "0123abc", "42.5 s",
                 "## Scenario: classification", "## Scenario: regression", "mlp-digits",
                 "12 derived models", "8 independent models"):
        assert text in markdown
    sections = markdown.split("## Scenario: ")[1:]
    for section, scenario in zip(sections, results["scenarios"].values(), strict=True):
        for name, scheme in scenario["schemes"].items():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` | "))
            lo, hi = scheme["auc_ci"]
            assert f"{scheme['auc']:.3f} [{lo:.3f}, {hi:.3f}]" in row
            assert f"{scheme['aruc']:.3f}" in row
            assert f"| {scheme['tpr_at_fpr_1pct']:.3f} | {scheme['tpr_at_fpr_0']:.3f} |" in row
            assert f"| {scheme['rule']['tpr']:.2f} / {scheme['rule']['fpr']:.2f} |" in row  # the alpha = 0.01 rule
            assert row.endswith("| 96 | 2.5 | 0.0421 |")
    family_rows = [line for line in markdown.splitlines() if line.startswith("| prune-50 |")]
    assert len(family_rows) == 2  # one per scenario
    classification = results["scenarios"]["classification"]["schemes"]
    expected = " | ".join(f"{classification[s]['per_family']['prune-50']['detection_rate']:.2f}"
                          for s in ("tafa", "tafa-learned", "ipguard"))
    assert family_rows[0] == f"| prune-50 | derived | 4 | {expected} |"
    assert "| wider | independent | 4 |" in markdown
    # Derived families are listed before independent ones.
    assert markdown.index("| quant-int8 |") < markdown.index("| other-seed |")


def test_markdown_shows_leave_one_family_out_only_when_present(results):
    markdown = write_markdown(results)
    assert markdown.count("Leave-one-family-out") == 1
    lofo_part = markdown[markdown.index("Leave-one-family-out"):]
    row = next(line for line in lofo_part.splitlines() if line.startswith("| `tafa-learned` |"))
    learned = results["scenarios"]["classification"]["schemes"]["tafa-learned"]
    lo, hi = learned["auc_ci"]
    assert row.startswith(f"| `tafa-learned` | {learned['auc']:.3f} [{lo:.3f}, {hi:.3f}] | {0.8125:.3f} | ")
    assert row.endswith(f"| {learned['tpr_at_fpr_1pct']:.3f} | 0.250 |")
    assert f"| {0.4375:.3f} |" in row
    for scenario in results["scenarios"].values():
        for scheme in scenario["schemes"].values():
            scheme.pop("lofo", None)
    assert "Leave-one-family-out" not in write_markdown(results)


def test_missing_and_non_finite_values_print_as_a_dash_and_json_stays_strict(results, tmp_path):
    scheme = results["scenarios"]["regression"]["schemes"]["modeldiff"]
    scheme["auc"] = float("nan")
    scheme["aruc_ci"] = [float("-inf"), np.float64(0.5)]
    del scheme["queries"]
    row = next(line for line in write_markdown(results).splitlines() if line.startswith("| `modeldiff` |"))
    assert row.startswith("| `modeldiff` | \u2014 | ")
    assert "| \u2014 | 2.5 |" in row
    write_report(results, tmp_path)
    text = (tmp_path / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)["scenarios"]["regression"]["schemes"]["modeldiff"]
    assert saved["auc"] is None and saved["aruc_ci"] == [None, 0.5]


def test_plots_cope_with_schemes_without_scores(results, tmp_path):
    results["scenarios"]["generative"] = {"n_pos": 0, "n_neg": 0, "owner": "vae", "schemes": {
        "tafa": {"auc": 0.5, "rule": {"threshold": math.nan}}}}
    _assert_png(plot_scores(results, tmp_path / "scores.png"))
    _assert_png(plot_curves(results, tmp_path / "curves.png"))
    _assert_png(plot_curves({"scenarios": {}}, tmp_path / "empty.png"))


def test_the_panels_grow_with_scenarios_and_schemes(results, tmp_path):
    tafa = results["scenarios"]["regression"]["schemes"]["tafa"]
    small = {"scenarios": {"regression": {"schemes": {"tafa": tafa}}}}
    one = _assert_png(plot_curves(small, tmp_path / "one.png"))
    full = _assert_png(plot_curves(results, tmp_path / "full.png"))
    assert full.shape[0] > one.shape[0] and full.shape[1] > one.shape[1]


@pytest.mark.parametrize("bad", [None, [], {"scenarios": [1, 2]}, {"command": "x"}])
def test_results_without_scenarios_are_refused(bad, tmp_path):
    calls = (write_markdown, partial(write_report, out_dir=tmp_path), partial(plot_scores, path=tmp_path / "s.png"))
    for call in calls:
        with pytest.raises(InvalidParameter, match="The 'results' parameter of .* must be a mapping with a 'scen"):
            call(bad)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.md"
    target.write_text("old")

    def fail(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]
    write_atomically(target, lambda handle: handle.write(b"new"))
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o644


def test_summary_tables_come_first_for_pooled_scenarios_only(results):
    assert "## Summary per scenario" not in write_markdown(results)
    pooled = dict(results["scenarios"]["classification"], n_pos=24, n_neg=16)
    learned = pooled["schemes"]["tafa-learned"]
    learned["extraction"] = {"n": 2, "tpr_at_fpr_1pct": 0.5, "detection_rate": 0.5}
    learned["utility_kept"] = {"auc": 0.9, "tpr_at_fpr_1pct": 0.75, "n_pos": 20}
    results["scenarios"]["classification (pooled)"] = pooled
    markdown = write_markdown(results)
    summary = markdown[markdown.index("## Summary per scenario"):markdown.index("## Scenario: classification")]
    assert "### classification (pooled): 24 derived, 16 independent" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| `tafa-learned` |"))
    lo, hi = learned["auc_ci"]
    rule = learned["rule"]
    assert row == (f"| `tafa-learned` | {learned['auc']:.3f} [{lo:.3f}, {hi:.3f}] | "
                   f"{learned['aruc']:.3f} [{learned['aruc_ci'][0]:.3f}, {learned['aruc_ci'][1]:.3f}] | "
                   f"\u2014 | {learned['tpr_at_fpr_1pct']:.2f} | \u2014 | {rule['tpr']:.2f} / {rule['fpr']:.2f} | "
                   f"0.900 / 0.75 (20) | 0.812 / 0.25 | "
                   f"0.50 | 96 | 2.5 | 42.1 |")
    plain = next(line for line in summary.splitlines() if line.startswith("| `tafa` |"))
    assert plain.split(" | ")[7:10] == ["\u2014"] * 3  # no utility-gated, LOFO or extraction figures


def test_false_positive_and_shared_initialisation_tables():
    rule = {"tpr": 0.9, "fpr": 0.05, "false_positives": 1, "fpr_ci": [0.001, 0.249],
            "families": {"same-arch": {"n": 12, "false_positives": 1, "fpr": 1 / 12, "ci": [0.002, 0.385]},
                         "other-split": {"n": 8, "false_positives": 0, "fpr": 0.0, "ci": [0.0, 0.369]}}}
    scheme = {"auc": 0.9, "rules": {"0.05": rule, "0.01": dict(rule, false_positives=0, fpr=0.0, fpr_ci=[0.0, 0.168])},
              "shared_init": {"n": 4, "median_score": 0.7, "min_score": 0.6, "max_score": 0.8,
                              "median_calibrated": 0.5, "above_every_independent": 0.75,
                              "judged_derived": {"0.05": 1.0, "0.01": 0.5}}}
    markdown = write_markdown({"scenarios": {"regression: z": {"n_pos": 1, "n_neg": 20, "schemes": {"tafa": scheme}}}})
    lines = markdown.splitlines()
    assert "| same-arch (\u03b1=0.05) | .083 [.002, .385] (1/12) |" in lines
    assert "| other-split (\u03b1=0.05) | .000 [.000, .369] (0/8) |" in lines
    assert "| **all independent (\u03b1=0.05)** | .050 [.001, .249] (1/20) |" in lines
    assert "| **all independent (\u03b1=0.01)** | .000 [.000, .168] (0/20) |" in lines
    assert "| `tafa` | 4 | 0.700 [0.600, 0.800] | 0.50 | 0.75 | 1.00 / 0.50 |" in lines


def test_the_recipe_table_shows_destroyed_copies_and_the_gated_rule():
    scheme = {"auc": 0.8, "rules": {"0.05": {"tpr": 0.5, "fpr": 0.0}, "0.01": {"tpr": 0.25, "fpr": 0.0}},
              "utility_kept": {"n_pos": 3, "n_all": 4, "auc": 1.0, "tpr_at_fpr_1pct": 1.0,
                               "rules": {"0.05": 0.667, "0.01": 0.333}},
              "per_recipe": {"prune80": {"n": 1, "family": "pruning", "median_utility": 0.3, "kept": 0.0,
                                         "detection": {"0.05": 0.0, "0.01": 0.0}},
                             "int8": {"n": 1, "family": "quantization", "median_utility": 1.0, "kept": 1.0,
                                      "detection": {"0.05": 1.0, "0.01": 1.0}}}}
    markdown = write_markdown({"scenarios": {"regression: z": {"n_pos": 4, "n_neg": 3, "schemes": {
        "tafa": scheme, "other": {"auc": 0.7}}}}})  # a scheme without utility figures gets no column
    lines = markdown.splitlines()
    assert "| recipe | family | n | median utility | kept ≥ 90% | `tafa` |" in lines
    assert "| prune80 | pruning | 1 | 0.30 | 0.00 | 0.00 / 0.00 |" in lines
    assert "| int8 | quantization | 1 | 1.00 | 1.00 | 1.00 / 1.00 |" in lines
    assert "| **copies keeping ≥ 90% (n=3)** |  |  |  |  | **0.67 / 0.33** |" in lines
    assert "| **all copies (n=4)** |  |  |  |  | **0.50 / 0.25** |" in lines
    main = next(line for line in lines if line.startswith("| `tafa` | 0.800"))
    assert "| 1.000 / 1.00 (3) |" in main
