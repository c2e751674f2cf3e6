"""The benchmark: zoo determinism and caching, the smoke run end to end, metric plumbing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tafa.bench.run import Scored, summarise
from tafa.bench.scenarios import FULL, SMOKE
from tafa.bench.zoo import build_zoos, recipe_key, recipes
from tafa import get_scheme
from tafa.cli import main
from tafa.decide import LearnedSimilarity
from tafa.models import module_hash


def test_full_zoos_meet_the_benchmark_sizes():
    for spec in FULL:
        rows = recipes(spec)
        scored = [r for r in rows if r.role == "scored"]
        assert sum(r.label == 1 and r.family != "extraction" for r in scored) >= 20
        assert sum(r.label == 0 for r in scored) >= 20
        calibration = {recipe_key(spec, r) for r in rows if r.role == "calibration"}
        assert len(calibration) == spec.calibration
        assert calibration.isdisjoint(recipe_key(spec, r) for r in scored)  # calibration never scored
        assert {r.family for r in scored if r.label == 0} >= {"same-arch", "other-split", "same-init"}
    assert {spec.scenario for spec in FULL} == {"classification", "regression", "generation"}


@pytest.mark.slow
def test_zoo_is_deterministic_and_cached(tmp_path):
    spec = replace(SMOKE[0], attacks=("int8", "ft_all_small"), same_arch_same_split=1, same_arch_other_split=0,
                   other_arch=0, same_init=0, calibration=1)
    first = build_zoos([spec], tmp_path / "a", jobs=1, progress=False)[0]
    second = build_zoos([spec], tmp_path / "b", jobs=2, progress=False)[0]
    for name in first.models:
        assert module_hash(first.models[name]) == module_hash(second.models[name]), name
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    again = build_zoos([spec], tmp_path / "a", jobs=1, progress=False)[0]  # from the cache: nothing trained
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == files
    assert module_hash(again.models["ft_all_small"]) == module_hash(first.models["ft_all_small"])


def test_summary_on_a_case_with_a_known_answer():
    rows = [Scored("p1", 1, "pruning", "scored", 0.9), Scored("p2", 1, "finetune", "scored", 0.4),
            Scored("d1", 1, "extraction", "scored", 0.1), Scored("n1", 0, "same-arch", "scored", 0.5),
            Scored("n2", 0, "same-arch", "scored", 0.2), Scored("c1", 0, "reference", "calibration", 0.6)]
    summary = summarise(rows, {"": 0.6}, (-1.0, 1.0), 0.5, n_boot=50)
    assert summary["n_pos"] == 2 and summary["n_neg"] == 2  # extraction and calibration left out
    assert summary["auc"] == pytest.approx(0.75)  # pairs: (0.9>0.5, 0.9>0.2, 0.4<0.5, 0.4>0.2)
    assert summary["tpr_at_fpr_0"] == pytest.approx(0.5)
    assert summary["rule"]["tpr"] == 0.5 and summary["rule"]["fpr"] == 0.0
    assert summary["per_family"]["pruning"]["detection_rate"] == 1.0
    assert summary["per_family"]["finetune"]["detection_rate"] == 0.0
    assert summary["extraction"]["detection_rate"] == 0.0


@pytest.mark.slow
def test_smoke_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--quiet", "bench", "--size", "smoke", "--out", str(out), "--cache", str(tmp_path / "cache")])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert {"command", "machine", "git_commit", "scenarios"} <= set(results)
    scenarios = results["scenarios"]
    assert {name for name in scenarios if "pooled" in name} == {
        "classification (pooled)", "regression (pooled)", "generation (pooled)"}
    for name, entry in scenarios.items():
        for scheme, row in entry["schemes"].items():
            assert {"auc", "aruc", "tpr_at_fpr_1pct", "tpr_at_fpr_0", "per_family", "queries",
                    "fingerprint_seconds", "verify_seconds"} <= set(row)
            assert 0.0 <= row["auc"] <= 1.0 and row["queries"] > 0
            # obfuscation is function-preserving: a similarity scores the permuted copy like the owner
            # (the highest score there is); a learned verifier puts it above every independent model
            permuted = [s["score"] for s in row["scores"] if s["model"].endswith("permute")]
            negatives = [s["score"] for s in row["scores"] if s["label"] == 0]
            assert permuted, (name, scheme)
            if isinstance(get_scheme(scheme).build()[2], LearnedSimilarity):
                assert min(permuted) > max(negatives), (name, scheme)
            else:
                assert all(value == pytest.approx(max(s["score"] for s in row["scores"]), abs=1e-4)
                           for value in permuted), (name, scheme)
    markdown = (out / "results.md").read_text()
    assert "tafa" in markdown and "random-output" in markdown
    assert (out / "scores.png").stat().st_size > 10_000 and (out / "curves.png").stat().st_size > 10_000
