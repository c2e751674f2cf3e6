"""The second stage: boundary geometry after the first stage, decided together (Bonferroni).

An owner the analysis can read gets a second stage in the same file (``Fingerprint.second``):
lines along its first layer's units, a convolution's measured in directions within what each
filter sees; a declared parent, a first layer too large to aim lines at or ``second_stage=False``
gives one stage, and the stored scheme says which. Verification runs the second stage only
when the first does not already judge the suspect derived; each stage decides at its share
of alpha on the same references, so the bound printed is their sum. Too few references for
two stages: the first decides alone, at the whole alpha, and says so. The file keeps the
second stage under the same content hash, and the reader refuses a second stage that nests,
or holds anything but probes and the owner's signature.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.numpy import save

from tafa import Fingerprint, TorchModel
from tafa.attacks import add_weight_noise, magnitude_prune, quantize
from tafa.attacks.obfuscation import permute_units
from tafa.commitment import Commitment
from tafa.decide import Decision, Rule
from tafa.domain import parse_domain
from tafa.errors import FingerprintError, InvalidParameter, TamperedFingerprint
from tafa.fingerprint_file import content_hash, decode
from tafa.probes.boundary import BoundaryProbes
from tafa.relu.linearise import NotWhiteBox
from tafa.scheme import get_scheme

SHAPE = (1, 8, 8)
#: 18 references support 1/19 by rank: two stages at 1/19 each.
ALPHA = 2 / 19
#: The default scheme without its data-like stage (tests/test_datalike.py): these tests are about the
#: boundary geometry as the stage after the first.
GEOMETRY = replace(get_scheme("tafa"), data_style=None)


@pytest.fixture(scope="module")
def staged(classifier) -> Fingerprint:
    return Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=16, directions=2, seed=3,
                              scheme=GEOMETRY)


def _rehashed(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    header = {**header, "content_sha256": content_hash(header, arrays)}
    return save(arrays, metadata={"tafa": json.dumps(header)})


def test_a_dense_owner_gets_the_boundary_stage_and_its_file_keeps_it(staged, tmp_path):
    assert staged.second is not None and staged.scheme.second == "tafa-boundary"
    assert staged.stage_names() == ["tafa", "tafa-boundary", "tafa-students"]  # the extraction stage last
    lines = len(staged.second.probes)
    # the first stage with its coarse scale
    assert staged.stage_queries() == [2 * 16 * (2 * 2 + 1), lines * 178, 64]
    assert staged.queries() == sum(staged.stage_queries())
    assert staged.meta["second_stage"]["made"] and staged.describe()["queries_per_stage"] == staged.stage_queries()
    path = staged.save(tmp_path / "owner.tafa")
    loaded = Fingerprint.load(path)
    assert loaded.sha256 == staged.sha256 and loaded.probe_sha256 == staged.probe_sha256
    assert loaded.second is not None and loaded.second.scheme.to_dict() == staged.second.scheme.to_dict()
    for key, value in staged.second.owner_signature.items():
        np.testing.assert_array_equal(loaded.second.owner_signature[key], value)


def test_the_second_stage_is_asked_for_or_left_out_as_the_owner_allows(classifier):
    off = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=8, directions=2,
                             second_stage=False)
    assert off.second is None and off.scheme.second is None and off.meta["second_stage"]["why"] == "not asked for"
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 4 * 4, 10))
    convolutional = Fingerprint.create(cnn, "box:0,1", input_shape=SHAPE, points=8, directions=2)
    assert convolutional.second is not None and convolutional.scheme.second == "tafa-boundary"
    lines = convolutional.second.probes
    assert lines.info["local_lines"] == len(lines) > 0
    # each line's 16 directions lie within the 5 x 5 pixels its filter sees
    assert set((np.abs(lines.directions.reshape(len(lines), 16, -1)).max(axis=1) > 0).sum(axis=1)) == {25}
    assert np.all(lines.steps < 1e-3 * np.sqrt(64 / 12))  # smaller than a dense unit's step
    # a 1-D convolution over 4 channels: 5 positions, 20 values
    signal = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(8 * 60, 4))
    along = Fingerprint.create(signal, "box:-1,1", input_shape=(4, 64), points=8, directions=2).second
    assert along is not None and along.probes.info["local_lines"] == len(along.probes) > 0
    assert set((np.abs(along.probes.directions.reshape(len(along.probes), 16, -1)).max(axis=1) > 0).sum(axis=1)) == {20}
    # a fully connected first layer with most weights pruned is no convolution: its lines stay dense
    pruned = Fingerprint.create(magnitude_prune(classifier.owner, 0.8), "box:0,1", input_shape=SHAPE, points=8,
                                directions=2).second
    assert pruned is not None and pruned.probes.info["local_lines"] == 0
    # 3 x 3 filters over one channel see 9 values, too few for 16 directions: no second stage, and why
    small = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    unmade = Fingerprint.create(small, "box:0,1", input_shape=SHAPE, points=8, directions=2)
    why = unmade.meta["second_stage"]["why"]
    assert unmade.second is None and "filters see 9 input values, fewer than the 17" in why
    with pytest.raises(InvalidParameter, match="No second stage"):
        Fingerprint.create(small, "box:0,1", input_shape=SHAPE, points=8, directions=2, second_stage=True)
    # a first layer whose units' gradients over the input are too many is not aimed at (no white-box lines:
    # the default then makes no second stage, and says why)
    wide = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(16 * 62 * 62, 10))
    unaimed = BoundaryProbes().select(TorchModel(wide, (1, 64, 64)), parse_domain("box:0,1", (1, 64, 64)), n=4, k=2,
                                      seed=0)
    assert "61,504 units over 4,096 input values are too many to aim lines at" in unaimed.info["analysis"]
    # and the owner is asked nothing for a second stage that will not be kept (its black-box lines were
    # measured on the owner, 5,000 queries, then thrown away: minutes for a ResNet at 64 x 64)
    owner = TorchModel(wide, (1, 64, 64))
    with pytest.raises(NotWhiteBox, match="too many to aim lines at"):
        Fingerprint.create(owner, parse_domain("box:0,1", (1, 64, 64)), scheme="tafa-boundary", white_box_only=True)
    assert owner.queries == 0
    parent = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=8, directions=2,
                                parent=classifier.references[0], parent_references=0)
    assert parent.second is None and "parent" in parent.meta["second_stage"]["why"]


def _five_by_five(seed: int, half: str) -> torch.nn.Module:
    """A small CNN of 5x5 filters trained on one half of the digits (seconds)."""
    from tafa.bench.datasets import load_task
    from tafa.training import fit

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    return fit(net, load_task("digits").split(half), epochs=15, lr=1e-3, seed=seed)


def test_a_convolutional_owners_lines_see_its_copies_filters(classifier):
    """The second stage of a convolutional owner (5x5 filters): copies that keep its filters (int4, 10%
    weight noise, 50% pruning) score far above every other model: an independent network of the same
    architecture trained on the other half, and the committed MLPs and 3x3 CNNs (measured: copies
    0.91-0.96, the others at most 0.48; one of the 29 lines moves a score by about 0.03)."""
    owner = _five_by_five(0, "owner")
    fingerprint = Fingerprint.create(owner, "box:0,1", input_shape=SHAPE, seed=0)
    stage = fingerprint.second
    assert stage is not None and stage.probes.info["local_lines"] == len(stage.probes) == 29
    others = [_five_by_five(1, "other"), *classifier.references, classifier.owner, classifier.independent]
    top = max(stage.score(TorchModel(m, SHAPE)).value for m in others)
    for kept in (quantize(owner, 4), add_weight_noise(owner, 0.1, seed=2), magnitude_prune(owner, 0.5)):
        assert stage.score(TorchModel(kept, SHAPE)).value > top + 0.2


def test_each_stage_decides_at_its_share_of_alpha_and_a_copy_stops_at_the_first(staged, classifier):
    calibration = staged.calibrate(classifier.references, alpha=ALPHA)
    # 18 references support two of the three stages at ALPHA (three would need 28): the first two decide
    assert isinstance(calibration, Rule) and len(calibration.stages) == 2 and calibration.supports_alpha
    assert calibration.names == ["tafa", "tafa-boundary"] and any("the first 2 decide" in n for n in calibration.notes)
    assert [c.alpha_requested for c in calibration.stages] == pytest.approx([ALPHA / 2] * 2)
    assert calibration.bound == pytest.approx(ALPHA) and calibration.n_references == 18
    copy_ = staged.verify(TorchModel(quantize(classifier.owner, 8), SHAPE), calibration=calibration)
    assert copy_.decision is Decision.DERIVED and copy_.stages[1]["score"] is None
    assert copy_.queries == staged.stage_queries()[0] + copy_.evasion["queries"] and copy_.bound == pytest.approx(ALPHA)
    independent = staged.verify(TorchModel(classifier.independent, SHAPE), calibration=calibration)
    # the second stage measured a look at a time, stopped where its threshold was out of reach
    lines = len(staged.second.probes)
    second = independent.stages[1]
    measured = second["stopped"]["probes"] if "stopped" in second else lines
    assert [stage["queries"] for stage in independent.stages] == [staged.stage_queries()[0], measured * 178]
    assert independent.queries == staged.stage_queries()[0] + measured * 178 + independent.evasion["queries"]
    assert ("stopped after" in independent.render()) == ("stopped" in second)
    data = independent.to_dict()
    assert data["bound_method"] == "bonferroni:rank+rank" and len(data["stages"]) == 2
    assert all(stage["alpha"] == pytest.approx(ALPHA / 2) for stage in data["stages"])
    text = independent.render()
    assert "stage 1" in text and "stage 2" in text and "tafa-boundary: score" in text


def test_the_second_stage_stops_once_its_threshold_is_out_of_reach_and_else_is_measured_whole(staged, classifier):
    """A stage whose score is a mean over its lines is measured four lines at a time: below any
    reachable threshold it is exactly the whole measurement; above every reachable one it stops at
    the first look, a fraction of the queries."""
    stage = staged.second
    assert stage.similarity().mean_over_points and not stage.similarity().settles
    lines = len(stage.probes)
    whole, model = stage.score(TorchModel(classifier.independent, SHAPE)), TorchModel(classifier.independent, SHAPE)
    again, stopped = stage.score_until(model, -1.0)
    assert stopped is None and model.queries == lines * 178
    np.testing.assert_array_equal(again.per_point, whole.per_point)
    assert again.value == whole.value and again.parts == whole.parts
    model = TorchModel(classifier.independent, SHAPE)
    early, stopped = stage.score_until(model, 2.0)  # a mean of |cosines| never reaches 2
    assert stopped is not None and stopped["probes"] == 4 and stopped["of"] == lines and stopped["reach"] <= 2.0
    assert model.queries == 4 * 178 and early.value == pytest.approx(whole.per_point[:4].mean())
    assert stage.score_until(TorchModel(classifier.independent, SHAPE), None)[1] is None  # no threshold: whole


def test_verify_stops_where_the_benchmark_says_it_would_after_any_line_past_the_first_four(staged, classifier):
    """The benchmark decides a row as verify would from its per-line values
    (:func:`~tafa.decide.sequential.measured_part`); verify looks after every line once the first 4
    are measured, so a threshold whose reach is lost between looks of 4 stops it there, and it asks
    exactly those lines' queries."""
    from tafa.decide.sequential import measured_part

    stage = staged.second
    lines = len(stage.probes)
    whole = stage.score(TorchModel(classifier.independent, SHAPE)).per_point
    stopping = {}
    for threshold in np.linspace(whole.mean(), 1.0, 60):
        stopping.setdefault(len(measured_part(whole, float(threshold))), float(threshold))
    inside = [count for count in stopping if 4 < count < lines and count % 4]
    assert inside, f"no threshold stops between looks of 4: {sorted(stopping)}"
    for count in inside[:2]:
        model = TorchModel(classifier.independent, SHAPE)
        score, stopped = stage.score_until(model, stopping[count])
        assert stopped is not None and stopped["probes"] == count and model.queries == count * 178
        assert score.value == pytest.approx(whole[:count].mean()) and score.value <= stopping[count]


def test_references_are_asked_in_the_batches_a_suspect_is_asked_in(staged, classifier):
    """A model's last bits can depend on the size of its batch (a kink found at a float tie moves a
    line's value), so the references of a stage measured a few lines at a time are asked in exactly
    the suspect's batches: the same model scores the same to the last bit either way."""
    from tafa.decide.sequential import stops

    class Recording(TorchModel):
        def _forward(self, x: np.ndarray) -> np.ndarray:
            self.sizes.append(len(x))
            return super()._forward(x)

    stage = staged.second
    as_reference, as_suspect = Recording(classifier.independent, SHAPE), Recording(classifier.independent, SHAPE)
    as_reference.sizes, as_suspect.sizes = [], []
    (value,) = stage.scores([as_reference])
    score, stopped = stage.score_until(as_suspect, -1.0)
    assert stopped is None and value == score.value
    assert as_reference.sizes == as_suspect.sizes and len(as_reference.sizes) >= len(stops(len(stage.probes)))


def test_a_stage_scored_by_the_bounded_mean_also_stops_once_its_threshold_is_surely_passed(staged, classifier):
    """The ablation ``ablate-boundary-bounded``: above a threshold its bounded mean has surely passed
    the stage stops at the first look, with a score no higher than the whole measurement's."""
    from tafa.scheme import get_scheme

    stage = staged.second
    bounded = replace(stage, scheme=replace(stage.scheme, similarity_params=get_scheme(
        "ablate-boundary-bounded").similarity_params))
    assert bounded.similarity().settles and bounded.similarity().mean_over_points
    lines = len(stage.probes)
    whole = bounded.score(TorchModel(classifier.independent, SHAPE))
    assert whole.value >= whole.per_point.mean()  # the bounded mean is never below the mean
    model = TorchModel(classifier.independent, SHAPE)
    passed, stopped = bounded.score_until(model, -1.0)  # every look's floor is above -1
    assert stopped == {"probes": 4, "of": lines, "passed": True} and model.queries == 4 * 178
    assert -1.0 < passed.value <= whole.value
    np.testing.assert_array_equal(passed.per_point, whole.per_point[:4])
    model = TorchModel(classifier.independent, SHAPE)
    early, stopped = bounded.score_until(model, 2.0)
    assert stopped is not None and "reach" in stopped and model.queries == 4 * 178 and early.value <= 2.0


def test_a_verdict_says_where_a_stage_stopped_and_why(staged, classifier):
    """The text names the stop: out of reach (with the reach), or passed (the ablation's)."""
    from tafa.decide import Verdict
    from tafa.decide.similarity import Score

    rule = staged.calibrate(classifier.references, alpha=ALPHA)
    threshold = rule.stages[1].threshold
    first = {"name": "tafa", "score": -1.0, "queries": 576, "seconds": 0.0}
    texts = {}
    for why, stopped, score in (("passed", {"probes": 4, "of": 29, "passed": True}, threshold + 0.01),
                                ("reach", {"probes": 8, "of": 29, "reach": threshold - 0.01}, threshold - 0.2)):
        second = {"name": "tafa-boundary", "score": score, "queries": 4 * 178, "seconds": 0.0, "stopped": stopped}
        verdict = Verdict.decide(Score(-1.0, np.zeros(3)), rule, queries=1000, seconds=0.0, suspect={}, scheme="tafa",
                                 fingerprint_sha256=staged.sha256, stages=[first, second])
        assert verdict.decision is (Decision.DERIVED if why == "passed" else Decision.INDEPENDENT)
        texts[why] = verdict.render()
    assert "stopped after 4 of its 29 probes, the threshold surely passed" in texts["passed"]
    assert "stopped after 8 of its 29 probes, the threshold out of reach" in texts["reach"]


def test_stopping_early_never_makes_a_stage_fire_that_the_whole_measurement_would_not():
    """The false-positive bound holds as it is. Out of reach: a stage stopped early scores below its
    threshold. Passed: the bounded mean of what it measured is at most the whole measurement's, so a
    stage that stops above its threshold would have been above it measured whole."""
    from tafa.decide.sequential import bounded_mean, measured_part, stopped_score

    rng = np.random.default_rng(0)
    stopped = {False: 0, True: 0}
    for _ in range(2000):
        values = np.clip(rng.normal(rng.uniform(0, 1), rng.uniform(0.01, 0.5), size=int(rng.integers(5, 40))), 0, 1)
        threshold = float(rng.uniform(0, 1))
        part = measured_part(values, threshold)
        stopped[False] += len(part) < len(values)
        assert len(part) == len(values) or part.mean() <= threshold
        assert not (values.mean() <= threshold < part.mean())  # stopping never moves a stage above its threshold
        whole = bounded_mean(values)
        assert whole >= values.mean() - 1e-12
        part = measured_part(values, threshold, bounded=True)
        score = stopped_score(part, len(values), bounded=True)
        stopped[True] += len(part) < len(values) and score > threshold
        assert score <= whole + 1e-12 and not (whole <= threshold < score)
    assert 200 < stopped[False] < 1800 and 200 < stopped[True] < 1800  # each happens


def _moved(owner: torch.nn.Module, layer: int, scale: float, seed: int) -> torch.nn.Module:
    """The owner with one Linear layer's weights and bias disturbed by ``scale`` of their spread."""
    copy_ = copy.deepcopy(owner)
    linear = [m for m in copy_.modules() if isinstance(m, torch.nn.Linear)][layer]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in (linear.weight, linear.bias):
            tensor += scale * tensor.std() * torch.randn(tensor.shape, generator=generator)
    return copy_


def test_a_copy_keeping_the_owners_first_layer_has_its_kinks_at_the_owners_crossings(staged, classifier):
    """A new head (or later layers fine-tuned) leaves every first-layer hyperplane where the owner
    has it: the derivative along each line changes across the owner's crossing as the owner's does
    and not across it. Moving the first layer (as fine-tuning it, or a sibling's fine-tune of a
    shared parent, does) takes them away; an independent model has none there."""
    stage = staged.second
    new_head = stage.score(TorchModel(_moved(classifier.owner, -1, 0.5, seed=1), SHAPE))
    moved = stage.score(TorchModel(_moved(classifier.owner, 0, 0.3, seed=2), SHAPE))
    independent = stage.score(TorchModel(classifier.independent, SHAPE))
    assert new_head.parts["crossings"] >= 0.8 and new_head.value >= 0.9
    assert moved.parts["crossings"] <= 0.2 and independent.parts["crossings"] <= 0.2
    assert new_head.value - independent.value > 0.3


def test_a_fingerprint_stored_before_crossings_were_measured_still_loads_and_compares_as_then(staged, classifier,
                                                                                          tmp_path):
    """Files made before session 14 have no ``crossing`` array: the reader accepts them, and the
    stage compares orientations alone, as it did."""
    old = replace(staged.second, owner_signature={key: value for key, value in staged.second.owner_signature.items()
                                                   if key != "crossing"})
    older = replace(staged, second=old)
    path = older.save(tmp_path / "older.tafa")
    loaded = Fingerprint.load(path)
    assert "crossing" not in loaded.second.owner_signature
    suspect = _moved(classifier.owner, -1, 0.5, seed=1)
    score = loaded.second.score(TorchModel(suspect, SHAPE))
    assert "crossings" not in score.parts
    now = staged.second.score(TorchModel(suspect, SHAPE))
    assert now.parts["crossings"] >= 0.8 and score.value <= now.value


def test_the_second_stage_sees_a_permuted_copy_as_the_owner(staged, classifier):
    """Boundary geometry is a property of the function: permuting hidden units changes no kink."""
    permuted = staged.second.score(TorchModel(permute_units(classifier.owner, seed=5), SHAPE)).value
    independent = staged.second.score(TorchModel(classifier.independent, SHAPE)).value
    assert permuted > 0.99 and permuted - independent > 0.2


def test_too_few_references_for_each_stages_share_decide_them_together(staged, classifier):
    """Five references support 0.2 by rank for one stage (1/6), not for each of three stages' share:
    the stages decide together by max-T (one bound, 1/6, for all of them), and a copy the first
    stage catches is judged derived there, the later stages not asked (their scores taken at the
    least favourable). With a parametric tail the Bonferroni rule of every stage decides as before."""
    copy = TorchModel(quantize(classifier.owner, 8), SHAPE)
    verdict = staged.verify(copy, classifier.references[:5], alpha=0.2, check_evasion=False)
    assert verdict.decision is Decision.DERIVED and verdict.bound == pytest.approx(1 / 6)
    assert [stage["score"] is None for stage in verdict.stages] == [False, True, True]
    assert any("decide together by max-T over the 5 references" in note for note in verdict.notes)
    assert verdict.p_value == pytest.approx(1 / 6)
    parametric = staged.verify(copy, classifier.references[:5], alpha=0.2, parametric=True, check_evasion=False)
    assert parametric.calibration.method.startswith("bonferroni") and parametric.decision is Decision.DERIVED
    one_stage = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=8, directions=2,
                                   second_stage=False)
    with pytest.raises(InvalidParameter, match="calibration with 2 stages"):
        one_stage.verify(classifier.independent, calibration=staged.calibrate(classifier.references, alpha=ALPHA))


def test_a_commitment_re_creates_both_stages(staged, classifier):
    assert Commitment.of(staged).reproduce(classifier.owner).probe_sha256 == staged.probe_sha256


def test_the_reader_refuses_a_second_stage_that_nests_or_carries_more(staged):
    header, arrays = decode(staged.to_bytes(), source="test")
    header = {key: value for key, value in header.items() if key != "content_sha256"}
    nested = {**header, "second": {**header["second"], "second": header["second"]}}
    with pytest.raises(FingerprintError, match="malformed"):
        Fingerprint.from_bytes(_rehashed(nested, arrays))
    deeper = {**header, "second": {**header["second"], "scheme": {**header["second"]["scheme"],
                                                                 "second": "tafa-boundary"}}}
    with pytest.raises(FingerprintError, match="cannot have a stage of its own"):
        Fingerprint.from_bytes(_rehashed(deeper, arrays))
    with pytest.raises(FingerprintError, match="arrays other than probes"):
        Fingerprint.from_bytes(_rehashed(header, {**arrays, "second.verifier.w": np.zeros(3)}))
    with pytest.raises(FingerprintError, match="malformed"):
        Fingerprint.from_bytes(_rehashed({**header, "second": "tafa-boundary"}, arrays))
    changed = dict(arrays)
    changed["second.owner.jump"] = changed["second.owner.jump"] * 0.5
    with pytest.raises(TamperedFingerprint):
        Fingerprint.from_bytes(save(changed, metadata={"tafa": json.dumps({**header, "content_sha256":
                                                                           content_hash(header, arrays)})}))


def test_the_benchmark_decides_with_the_rule_tafa_verify_applies(staged, classifier):
    """One decision object: the benchmark's rule (made from scored rows, as tafa bench does) and
    ``Fingerprint.verify`` on the same references give the same thresholds and decisions."""
    from tafa.bench.run import ALPHAS, Scored, calibrations, fires
    from tafa.decide.threshold import references_needed

    references = [TorchModel(model, SHAPE, name=f"reference{i:02d}") for i, model in enumerate(classifier.references)]
    stages = [staged, *staged.later_stages()]
    columns = [stage.scores(references) for stage in stages]
    rows = [Scored(model.name, 0, "same-arch", "calibration", values[0], stages=tuple(values))
            for model, *values in zip(references, *columns)]
    rules = calibrations(rows, staged.stage_names(), staged.copy_line())
    suspects = {"int8": quantize(classifier.owner, 8), "independent": classifier.independent}
    for alpha in ALPHAS:
        parametric = len(references) < references_needed(alpha)  # 18 references: both levels need the tail
        decisions = {}
        for name, model in suspects.items():
            verdict = staged.verify(TorchModel(model, SHAPE), references, alpha=alpha, parametric=parametric)
            rule = rules[alpha]
            assert [stage.threshold for stage in rule.stages] == pytest.approx(
                [stage.threshold for stage in verdict.calibration.stages])
            assert rule.method == verdict.calibration.method and rule.bound == pytest.approx(verdict.bound)
            scores = tuple(stage["score"] for stage in verdict.stages) if verdict.stages else (verdict.score,)
            measured = Scored(name, int(name == "int8"), "", "scored", scores[0],
                              stages=tuple(stage.score(TorchModel(model, SHAPE)).value if i >= len(scores)
                                           or scores[i] is None else scores[i] for i, stage in enumerate(stages)))
            assert fires(rule, measured) == (verdict.decision is Decision.DERIVED), (alpha, name)
            decisions[name] = verdict.decision
        # the int8 copy sits far above every reference (score ~0.99): derived both ways at every level
        assert decisions["int8"] is Decision.DERIVED and decisions["independent"] is not Decision.UNDECIDED


def test_a_copy_only_the_geometry_sees_is_found_with_too_few_references_for_each_share(classifier):
    """17 references at 0.1: by rank, Bonferroni's shares leave the first stage alone (19 references
    for two stages, 29 for three), which scores a copy that kept the owner's first layer and drew
    the rest afresh as a stranger (-0.05 against the references' highest 0.38); the stages together
    (max-T, bound 1/18) find it by its boundary geometry (0.73 against the references' highest 0.50),
    and a stored rule of the first stage alone does not."""
    import copy as copying

    owner = copying.deepcopy(classifier.owner)
    torch.manual_seed(0)
    for layer in [m for m in owner.modules() if isinstance(m, torch.nn.Linear)][1:]:
        layer.reset_parameters()
    fingerprint = Fingerprint.create(classifier.owner, "box:0,1", input_shape=SHAPE, points=16, scheme=GEOMETRY)
    references = classifier.references[1:]
    verdict = fingerprint.verify(TorchModel(owner, SHAPE), references, alpha=0.1, check_evasion=False)
    assert verdict.decision is Decision.DERIVED and verdict.bound == pytest.approx(1 / 18)
    first, geometry, _ = verdict.stages
    assert first["score"] < verdict.calibration.stages[0].threshold - 0.3
    assert geometry["name"] == "tafa-boundary" and geometry["score"] > verdict.calibration.stages[1].threshold + 0.1
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a verdict's JSON")

    data = json.loads(verdict.to_json(), parse_constant=refuse)  # strict JSON: every threshold finite
    assert data["bound_method"] == "max-t" and data["p_value"] == pytest.approx(1 / 18)
    assert data["stages"][2]["score"] is None  # the geometry fired: the extraction stage not asked
    alone = fingerprint.calibrate(references, alpha=0.1)
    assert alone.names == ["tafa"]  # what the references support by rank, stage by stage
    assert fingerprint.verify(TorchModel(owner, SHAPE), calibration=alone,
                              check_evasion=False).decision is Decision.INDEPENDENT
