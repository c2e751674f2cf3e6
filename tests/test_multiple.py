"""Error control over many fingerprints: the max-T rule and Benjamini-Hochberg on score tables.

Exact small cases, and the property the scan relies on: on tables where the suspect is drawn
like the panel (pure null), the chance that any fingerprint is declared derived is at most
alpha, within binomial noise, whatever the correlation between fingerprints.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from tafa.decide.multiple import (attained_bound, benjamini_hochberg, by_group, max_t, max_t_threshold, panel_needed,
                                  panel_p_values, rate_for_this_panel, smallest_p, standardise)


def test_max_t_exact_small_case():
    # two fingerprints, four panel models; the suspect is far above the panel on the first
    panel = np.array([[0.1, 0.2], [0.2, 0.1], [0.0, 0.3], [0.3, 0.0]])
    suspect = np.array([0.9, 0.2])
    z, panel_z = standardise(suspect, panel)
    everything = np.vstack([panel, suspect])
    assert z == pytest.approx((suspect - everything.mean(0)) / everything.std(0))
    maxima = panel_z.max(axis=1)
    expected = [(1 + np.sum(maxima >= value)) / 5 for value in z]
    assert max_t(suspect, panel) == pytest.approx(expected)
    assert max_t(suspect, panel)[0] == pytest.approx(1 / 5)  # beats every panel maximum: the smallest p


def test_max_t_the_suspect_at_the_panel_level_is_not_significant():
    panel = np.array([[0.1, 0.2], [0.2, 0.1], [0.0, 0.3], [0.3, 0.0]])
    assert max_t(panel[1], panel).min() > 0.5
    # a suspect that is one of the panel's scores exactly loses the tie
    assert max_t(np.array([0.3, 0.3]), np.array([[0.3, 0.3]] * 3)).tolist() == [1.0, 1.0]


def test_max_t_leaves_out_missing_scores():
    panel = np.array([[0.1, 0.2, np.nan], [0.2, 0.1, 0.5], [0.0, 0.3, 0.4], [0.3, 0.0, 0.2]])
    p = max_t(np.array([0.9, np.nan, 0.3]), panel)
    assert np.isnan(p[1])
    # the row without a score for the third fingerprint is dropped: three panel rows left
    assert p[0] == pytest.approx(1 / 4)
    assert np.all(np.isnan(max_t(np.full(3, np.nan), panel)))


def test_max_t_adjusted_p_values_never_beat_the_per_fingerprint_ones():
    rng = np.random.default_rng(3)
    panel = rng.normal(size=(30, 8))
    suspect = rng.normal(size=8) + np.array([4, 0, 0, 0, 0, 0, 0, 1.0])
    assert np.all(max_t(suspect, panel) >= panel_p_values(suspect, panel) - 1e-12)
    assert np.argmin(max_t(suspect, panel)) == 0


def test_max_t_threshold_is_where_the_decision_flips():
    rng = np.random.default_rng(4)
    panel = rng.normal(size=(39, 5))
    suspect = rng.normal(size=5)
    threshold = max_t_threshold(suspect, panel, 2, 0.05)
    assert threshold is not None
    above, below = suspect.copy(), suspect.copy()
    above[2], below[2] = threshold + 1e-6, threshold - 1e-3
    assert max_t(above, panel)[2] <= 0.05 < max_t(below, panel)[2]
    assert max_t_threshold(suspect, panel[:10], 2, 0.05) is None  # 1/11 > 0.05: no score reaches it


def test_bounds_of_a_panel():
    assert smallest_p(19) == pytest.approx(0.05)
    assert panel_needed(0.05) == 19 and panel_needed(0.01) == 99 and panel_needed(0.3) == 3
    assert attained_bound(0.05, 19) == pytest.approx(0.05)
    assert attained_bound(0.05, 18) == 0
    assert attained_bound(0.05, 58) == pytest.approx(2 / 59)


@pytest.mark.parametrize("correlation", [0.0, 0.9])
def test_max_t_family_wise_rate_on_pure_null_tables_is_at_most_alpha(correlation):
    """The suspect is one more draw like the panel's models: P(any p <= alpha) <= alpha."""
    rng = np.random.default_rng(11 + int(10 * correlation))
    draws, n, m, alpha = 2000, 39, 12, 0.05
    shared = np.sqrt(correlation)
    hits = 0
    for _ in range(draws):
        common = rng.normal(size=(n + 1, 1))
        scores = shared * common + np.sqrt(1 - correlation) * rng.normal(size=(n + 1, m))
        scores = scores * rng.uniform(0.1, 3.0, size=m)       # fingerprints on different scales
        hits += max_t(scores[-1], scores[:-1]).min() <= alpha
    # exact level here: floor(alpha (n + 1)) / (n + 1) = 0.05; binomial tail at 1e-4 above it
    assert hits <= binom.ppf(1 - 1e-4, draws, attained_bound(alpha, n))
    assert hits >= binom.ppf(1e-4, draws, attained_bound(alpha, n))  # and not vacuously conservative


@pytest.mark.parametrize(("alpha", "n"), [(0.05, 19), (0.05, 59), (0.1, 17), (0.01, 299)])
def test_the_rate_for_one_panel_exceeds_its_90_percent_bound_for_one_panel_in_ten(alpha, n):
    """Deciding p <= alpha passes a suspect beyond the k-th largest of n exchangeable panel
    maxima; the rate for a given panel is the mass above it. Over many panels (uniform maxima)
    that rate exceeds rate_for_this_panel for 10 % of them, and averages the attained bound."""
    rng = np.random.default_rng(n)
    k = int(np.floor(alpha * (n + 1) + 1e-12))
    panels = 4000
    rates = 1.0 - np.sort(rng.uniform(size=(panels, n)), axis=1)[:, n - k]  # mass above the k-th largest
    bound = rate_for_this_panel(alpha, n)
    assert bound is not None and bound > attained_bound(alpha, n)
    above = int(np.sum(rates > bound))
    assert binom.ppf(1e-4, panels, 0.1) <= above <= binom.ppf(1 - 1e-4, panels, 0.1)
    assert abs(rates.mean() - attained_bound(alpha, n)) < 4 * rates.std() / np.sqrt(panels)
    assert rate_for_this_panel(alpha, n, confidence=0.5) < bound < rate_for_this_panel(alpha, n, confidence=0.99)


def test_the_rate_for_one_panel_narrows_with_the_panel_and_needs_a_panel_that_supports_alpha():
    rates = [rate_for_this_panel(0.05, n) for n in (19, 59, 199, 1999)]
    assert rates == sorted(rates, reverse=True) and rates[-1] == pytest.approx(0.05, abs=0.01)
    assert rate_for_this_panel(0.05, 18) is None
    with pytest.raises(Exception, match="'confidence' parameter of rate_for_this_panel"):
        rate_for_this_panel(0.05, 19, confidence=1.0)


def test_benjamini_hochberg_known_example():
    # Benjamini & Hochberg (1995), q = 0.05 on 15 p-values: the four smallest are listed
    p = np.array([0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
                  0.5719, 0.6528, 0.7590, 1.0000])
    listed = benjamini_hochberg(p[::-1], 0.05)[::-1]
    assert listed.tolist() == [True] * 4 + [False] * 11
    # step-up: a p-value above its own line is listed when a larger rank passes
    assert benjamini_hochberg(np.array([0.01, 0.036, 0.03, 0.5]), 0.05).tolist() == [True, True, True, False]
    assert benjamini_hochberg(np.array([np.nan, 0.001]), 0.05).tolist() == [False, True]
    with pytest.raises(Exception, match="'q'"):
        benjamini_hochberg(p, 1.5)


def test_benjamini_hochberg_controls_the_false_discovery_rate_on_mixed_tables():
    rng = np.random.default_rng(5)
    rates = []
    for _ in range(400):
        null = rng.uniform(size=80)
        signal = rng.uniform(size=20) * 1e-3
        listed = benjamini_hochberg(np.concatenate([null, signal]), 0.1)
        rates.append(listed[:80].sum() / max(1, listed.sum()))
    assert np.mean(rates) <= 0.1 * 0.8 + 3 * np.std(rates) / np.sqrt(len(rates))


def test_by_group_takes_the_largest_p_value_over_the_groups():
    rng = np.random.default_rng(6)
    panel = rng.normal(size=(40, 6))
    panel[20:] += 2.0  # a second, harder group: its models score higher everywhere
    suspect = rng.normal(size=6) + np.array([5.0, 0, 0, 0, 0, 0])
    groups = ["easy"] * 20 + ["hard"] * 20
    alone = [max_t(suspect, panel[:20]), max_t(suspect, panel[20:])]
    assert by_group(max_t, suspect, panel, groups) == pytest.approx(np.maximum(*alone))
    assert by_group(max_t, suspect, panel, None) == pytest.approx(max_t(suspect, panel))
    assert by_group(max_t, suspect, panel, ["one"] * 40) == pytest.approx(max_t(suspect, panel))
    with pytest.raises(Exception, match="'groups'"):
        by_group(max_t, suspect, panel, ["a"] * 3)


def test_by_group_bounds_the_rate_for_a_suspect_like_the_harder_group():
    """A panel mixing an easy and a hard group: pooled, a suspect like the hard group matches
    more often than alpha; taken group by group, at most alpha."""
    rng = np.random.default_rng(8)
    draws, m, alpha = 1500, 10, 0.05
    pooled = grouped = 0
    for _ in range(draws):
        easy = rng.normal(size=(40, m))
        hard = 0.6 + 1.5 * rng.normal(size=(20, m))
        suspect = 0.6 + 1.5 * rng.normal(size=m)              # drawn like the hard group
        panel = np.vstack([easy, hard])
        pooled += max_t(suspect, panel).min() <= alpha
        grouped += by_group(max_t, suspect, panel, ["easy"] * 40 + ["hard"] * 20).min() <= alpha
    assert grouped <= binom.ppf(1 - 1e-4, draws, alpha)
    assert pooled > binom.ppf(1 - 1e-4, draws, alpha)  # the pooled panel does not bound this group


def test_a_joint_rule_fires_exactly_when_max_t_does_and_unknown_stages_only_make_it_stricter():
    """``Rule.joint``: with every stage known its thresholds agree with max-T's p-values (a stage
    fires exactly when its p-value is at most alpha); with some stages unknown, the known stages'
    p-values are never below max-T's with the unknown ones filled in by any value, so deciding
    before measuring them never fires where the whole measurement would not."""
    from tafa.decide.multiple import max_t_unknown
    from tafa.decide.rule import Rule

    rng = np.random.default_rng(7)
    for trial in range(40):
        n, stages = int(rng.integers(19, 60)), int(rng.integers(2, 4))
        table = rng.normal(size=(n, stages)) * rng.uniform(0.05, 0.3, size=stages) + rng.uniform(0, 0.6, size=stages)
        suspect = table[rng.integers(n)] + rng.normal(size=stages) * 0.2 + (trial % 3) * 0.15
        rule = Rule.joint(table, [f"s{k}" for k in range(stages)], 0.05, list(suspect))
        p = max_t(suspect, table)
        assert [stage.fires(value) for stage, value in zip(rule.stages, suspect)] == list(p <= 0.05)
        assert rule.decide(list(suspect)).value == ("derived" if p.min() <= 0.05 else "independent")
        partial = suspect.copy()
        partial[1:] = np.nan  # only the first stage known
        bounded, _, _ = max_t_unknown(partial, table)
        for fill in rng.normal(size=(20, stages - 1)) * 2:
            full = np.concatenate([suspect[:1], fill])
            assert bounded[0] >= max_t(full, table)[0] - 1e-12


def test_the_stages_together_keep_their_bound_for_a_suspect_drawn_like_the_references():
    """Exchangeability, simulated: 19 references and a suspect drawn alike (three correlated stages
    on different scales). Max-T with the suspect in the standardisation judges it derived at the
    rate of the bound, 1/20, within three standard errors over 20,000 draws; ``Rule.joint`` decides
    exactly as max-T does, and deciding with the first stage known alone (the later ones at their
    least favourable) never fires where the whole measurement would not."""
    from tafa.decide.rule import Rule

    rng = np.random.default_rng(11)
    scale, shift = np.array([0.1, 0.05, 0.2]), np.array([0.2, 0.5, 0.7])
    mixing = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.3, 0.3, 0.9]])
    trials = 20000
    draws = rng.standard_normal((trials, 20, 3)) @ mixing.T * scale + shift
    fired = np.array([max_t(draw[19], draw[:19]).min() <= 0.05 for draw in draws])
    assert abs(fired.mean() - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / trials), fired.mean()
    names = ["first", "geometry", "outputs"]
    for draw, whole in zip(draws[:300], fired[:300]):
        table, suspect = draw[:19], list(draw[19])
        assert Rule.joint(table, names, 0.05, suspect).fires(suspect) == whole
        partial = [suspect[0], None, None]
        assert whole or not Rule.joint(table, names, 0.05, partial).fires(partial)
