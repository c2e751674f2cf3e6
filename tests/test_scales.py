"""The coarse scale (tafa.signature.scales): a ripple or a grid on the answers moves the decision to
differences at a step a bounded ripple or a rounding cannot fake; plain suspects keep the fine scale."""

from __future__ import annotations

import numpy as np
import pytest

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.attacks.evasion import get_evasion
from tafa.attacks.interface import get_interface
from tafa.errors import FingerprintError
from tafa.models import TorchModel
from tafa.signature.scales import ROUGHNESS_LIMIT, SMOOTHED


@pytest.fixture(scope="module")
def made(classifier):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                                     second_stage=False)
    return fingerprint


def _wrapped(kind, module, how: str, decoy=None):
    model = TorchModel(module, kind.input_shape, name=how)
    if how == "plain":
        return model
    if how == "ripple":
        return get_evasion("ripple").apply(model, TorchModel(decoy, kind.input_shape), data=None, seed=0)
    return get_interface(how).apply(model)


@pytest.mark.parametrize("how", ["plain", "ripple", "integer_logits"])
def test_copies_are_found_and_independents_are_not_whatever_the_answers_look_like(classifier, made, how):
    references = classifier.references
    copy = _wrapped(classifier, quantize(classifier.owner, 8), how, classifier.references[0])
    independent = _wrapped(classifier, classifier.independent, how, classifier.references[1])
    found = made.verify(copy, references, alpha=0.1, check_evasion=False)
    cleared = made.verify(independent, references, alpha=0.1, check_evasion=False)
    assert found.coarse is not None and found.coarse["decides"] == (how != "plain")
    assert ("it decides" in found.render()) == (how != "plain") and "coarse scale" in found.render()
    assert found.to_dict()["coarse"]["decides"] == (how != "plain")
    assert found.decision.value == "derived" and cleared.decision.value != "derived"
    if how != "plain":  # decided with each difference averaged over the jittered coarse steps (2,112 more queries)
        assert "averaged over 4 steps" in found.render() and "single_step_score" in found.coarse
        assert found.queries >= 576 + 576 + 64 + 4 * 512  # the jittered steps ask the 64 centres once


@pytest.mark.parametrize("name, how", [("regressor", "round1"), ("generator", "pixels8")])
def test_rounded_regressors_and_decoders_are_decided_at_the_coarse_scale(request, name, how):
    kind = request.getfixturevalue(name)
    fingerprint = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, second_stage=False)
    copy = _wrapped(kind, quantize(kind.owner, 8), how)
    independent = _wrapped(kind, kind.independent, how)
    found = fingerprint.verify(copy, kind.references, alpha=0.1, check_evasion=False)
    cleared = fingerprint.verify(independent, kind.references, alpha=0.1, check_evasion=False)
    assert found.coarse["decides"] and found.decision.value == "derived"
    assert cleared.coarse["decides"] and found.score - cleared.score > 0.3
    if name == "regressor":  # the decoder's independent scores 0.546 against 0.552: too close to assert on
        assert cleared.decision.value != "derived"


def test_the_coarse_scale_is_stored_checked_and_hashed(classifier, made, tmp_path):
    path = made.save(tmp_path / "owner.tafa")
    again = Fingerprint.load(path)
    assert set(again.coarse) == {"steps", *made.owner_signature} and again.sha256 == made.sha256
    assert again.stage_queries() == [2 * made.scheme.make_signature().queries(made.probes)]
    data = bytearray(path.read_bytes())
    coarse = np.ascontiguousarray(made.coarse["derivatives"], dtype=np.float64).tobytes()
    at = bytes(data).find(coarse[:64])
    assert at > 0
    data[at:at + 8] = np.float64(123.0).tobytes()
    with pytest.raises(FingerprintError):
        Fingerprint.from_bytes(bytes(data))
    steps = made.coarse["steps"]
    assert np.all(steps == steps[0]) and 1 < ROUGHNESS_LIMIT


def test_a_file_without_a_coarse_scale_verifies_at_its_own_step_and_a_bad_one_is_refused(classifier, made):
    from test_stored_state import parts, rehashed

    header, arrays = parts(made)
    older = {key: value for key, value in arrays.items() if not key.startswith("coarse.")}
    old = Fingerprint.from_bytes(rehashed(header, older))  # as sessions before 7 wrote it
    assert old.coarse == {} and old.coarse_stage() is None and old.stage_queries() == [made.step_queries()]
    rippled = _wrapped(classifier, quantize(classifier.owner, 8), "ripple", classifier.references[0])
    verdict = old.verify(rippled, classifier.references, alpha=0.1, check_evasion=False)
    assert verdict.coarse is None and verdict.queries == made.step_queries()
    for bad in ({"coarse.steps": -arrays["coarse.steps"]}, {"coarse.derivatives": arrays["coarse.derivatives"][:3]},
                {"coarse.steps": arrays["coarse.steps"][:2]}):
        with pytest.raises(FingerprintError, match="coarse scale"):
            Fingerprint.from_bytes(rehashed(header, {**arrays, **bad}))


def test_a_decoder_copy_behind_a_triangle_wave_is_found_by_its_smoothed_outputs(generator):
    """The triangle wave ``0.1 tri(x R)`` (the benchmark's ``evasion/triangle``) bends a decoder's
    answers so the coarse scale decides, and swamps even its averaged differences; the outputs
    averaged over each probe's 32 jittered coarse steps (read from the same answers) keep the
    owner's pattern. Against the 18 committed references at alpha 1/19: the int8 and 50%-pruned
    copies behind the wave score 0.68 and 0.62 (threshold 0.45; the differences alone gave them
    0.48 and 0.42 under a threshold of 0.65, and both were judged independent); the independent
    decoder behind the same wave scores 0.18."""
    from tafa.attacks import magnitude_prune
    from tafa.attacks.evasion import TriangleRipple

    shape = generator.input_shape
    fingerprint = Fingerprint.create(generator.owner, generator.domain, input_shape=shape, second_stage=False)
    assert fingerprint.coarse[SMOOTHED].shape == fingerprint.owner_signature["outputs"].shape
    references = [TorchModel(model, shape, name=f"reference{i}") for i, model in enumerate(generator.references)]
    for module in (quantize(generator.owner, 8), magnitude_prune(generator.owner, 0.5)):
        verdict = fingerprint.verify(TriangleRipple(TorchModel(module, shape)), references, alpha=1 / 19)
        assert verdict.coarse["decides"] and verdict.decision.value == "derived"
        assert verdict.score > verdict.calibration.threshold + 0.1
    cleared = fingerprint.verify(TriangleRipple(TorchModel(generator.independent, shape)), references, alpha=1 / 19)
    assert cleared.coarse["decides"] and cleared.decision.value == "independent"
    assert cleared.score < cleared.calibration.threshold - 0.15
    stage = fingerprint.coarse_stage(averaged=True)
    score = stage.score(TriangleRipple(TorchModel(quantize(generator.owner, 8), shape)))
    assert score.parts["smoothed"] > score.parts["differences"] + 0.3  # the wave leaves the smoothed outputs


def test_smoothed_outputs_are_kept_for_single_values_and_images_and_checked(classifier, made, regressor):
    """A classifier's coarse scale keeps no smoothed outputs (its score is as before); a regressor's
    does, stored, hashed and checked for shape like the rest, and a file written before them
    decides with the differences alone."""
    from test_stored_state import parts, rehashed

    assert SMOOTHED not in made.coarse
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape,
                                     second_stage=False)
    header, arrays = parts(fingerprint)
    assert f"coarse.{SMOOTHED}" in arrays
    older = Fingerprint.from_bytes(rehashed(header, {k: v for k, v in arrays.items() if k != f"coarse.{SMOOTHED}"}))
    model = TorchModel(regressor.references[0], regressor.input_shape)
    now, before = fingerprint.coarse_stage(averaged=True).score(model), older.coarse_stage(averaged=True).score(model)
    assert "smoothed" not in before.parts and now.parts["differences"] == before.value
    assert now.value == (now.parts["differences"] + now.parts["smoothed"]) / 2
    for bad in (arrays[f"coarse.{SMOOTHED}"][:3], arrays[f"coarse.{SMOOTHED}"].reshape(-1)):
        with pytest.raises(FingerprintError, match="smoothed"):
            Fingerprint.from_bytes(rehashed(header, {**arrays, f"coarse.{SMOOTHED}": bad}))


def test_the_coarse_screen_clears_a_plain_suspect_at_a_few_probes_and_measures_a_rough_one_fully(classifier, made):
    """A suspect nothing but its roughness could send to the coarse scale is asked at the first 16
    coarse probes first (144 queries, not 576): a plain copy reads far from rough there and is not
    asked at the others (its verdict says so); a rippled one reads rough and is measured at every
    probe, as before the screen (the same score and roughness)."""
    from tafa.signature.scales import SCREEN_PROBES

    plain = TorchModel(quantize(classifier.owner, 8), classifier.input_shape)
    fine = made.measure(plain)
    before = plain.queries
    score, relative, _ = made.measure_coarse(plain, fine, screen=True)
    assert plain.queries - before == SCREEN_PROBES * 9 and score.per_point.size == SCREEN_PROBES and relative < 1.2
    rippled = _wrapped(classifier, quantize(classifier.owner, 8), "ripple", classifier.references[0])
    fine = made.measure(rippled)
    screened, full = made.measure_coarse(rippled, fine, screen=True), made.measure_coarse(rippled, fine)
    assert screened[1] == full[1] > ROUGHNESS_LIMIT and screened[0].value == full[0].value
    assert screened[0].per_point.size == len(made.probes)
    verdict = made.verify(plain, classifier.references, alpha=0.1)
    assert verdict.coarse["probes"] == SCREEN_PROBES and "the others not asked" in verdict.render()
