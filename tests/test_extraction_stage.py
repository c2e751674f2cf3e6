"""The extraction stage (``Scheme.extraction``, ``tafa-students``): the owner's outputs at inputs it
is confident on, for students distilled on its answers. Made by default for a classifier owner,
stored under the file's hash, decided with the other stages at its share of alpha; the committed
students (``tests/fixtures/classifier-students.safetensors``) score above every reference there, the
independent models below the references' top. A regressor's is the outputs stage (``tafa-outputs``)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tafa import Fingerprint
from tafa.attacks.interface import get_interface
from tafa.decide.rule import Rule
from tafa.errors import FingerprintError
from tafa.fingerprint_file import encode
from tafa.models import TorchModel
from tafa.scheme import get_scheme

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from make import load  # noqa: E402 - the fixtures' own loader, beside them

SHAPE = (1, 8, 8)
#: How far above every reference a committed student scores (measured: 0.033 and 0.052), and
#: how far below the references' top an independent model does (measured: 0.057 and 0.063), at
#: least: far beyond what another CPU's floating-point kernels move (the models are committed; only
#: the owner's 100 Adam steps to its confident inputs and the arithmetic can differ).
MARGIN = 0.01


@pytest.fixture(scope="module")
def students() -> dict:
    return load("classifier-students")


@pytest.fixture(scope="module")
def owner_print(classifier) -> Fingerprint:
    return Fingerprint.create(classifier.owner, classifier.domain, input_shape=SHAPE)


@pytest.fixture(scope="module")
def reference_scores(owner_print, forty_references) -> list[float]:
    return [owner_print.extraction.score(TorchModel(m, SHAPE)).value for m in forty_references.references]


def test_a_classifier_owner_gets_the_extraction_stage_last_and_in_its_file(owner_print, classifier):
    assert owner_print.stage_names() == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-students"]
    assert owner_print.stage_queries()[-1] == 64 and owner_print.meta["extraction_stage"]["made"]
    again = Fingerprint.from_bytes(owner_print.to_bytes())
    assert again.sha256 == owner_print.sha256 and again.stage_names() == owner_print.stage_names()
    np.testing.assert_array_equal(again.extraction.probes.points, owner_print.extraction.probes.points)
    # the owner reproduces itself exactly; its inputs are ones it is confident on
    assert again.extraction.score(TorchModel(classifier.owner, SHAPE)).value == pytest.approx(1.0)
    confidence = np.exp(owner_print.extraction.owner_signature["outputs"])
    confidence /= confidence.sum(axis=1, keepdims=True)
    assert np.median(confidence.max(axis=1)) > 0.9


def test_who_gets_no_extraction_stage_and_why(classifier, regressor):
    cnn = classifier.references[2]  # 3x3 filters: no geometry (too few values a filter)
    assert Fingerprint.create(cnn, classifier.domain, input_shape=SHAPE).stage_names() == [
        "tafa", "tafa-datalike", "tafa-students"]
    # a regressor has no confident inputs: its extraction stage is the outputs stage, at domain draws
    scalar = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape)
    assert scalar.stage_names() == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-outputs"]
    assert scalar.meta["extraction_stage"]["scheme"] == "tafa-outputs" and scalar.stage_queries()[-1] == 64
    assert scalar.scheme.extraction == "tafa-outputs"  # the stored scheme says exactly which one was made
    assert Fingerprint.from_bytes(scalar.to_bytes()).stage_names() == scalar.stage_names()
    off = Fingerprint.create(classifier.owner, classifier.domain, input_shape=SHAPE, second_stage=False)
    assert off.stage_names() == ["tafa"]
    parented = Fingerprint.create(classifier.owner, classifier.domain, input_shape=SHAPE,
                                  parent=classifier.references[0], parent_references=0)
    assert parented.extraction is None and "parent" in parented.meta["extraction_stage"]["why"]


def test_distilled_students_score_above_every_reference_and_independents_below_their_top(
        owner_print, reference_scores, students, classifier, forty_references):
    top = max(reference_scores)
    for name, student in students.items():
        assert owner_print.extraction.score(TorchModel(student, SHAPE)).value > top + MARGIN, name
    for model in (classifier.independent, forty_references.independent2):
        assert owner_print.extraction.score(TorchModel(model, SHAPE)).value < top - MARGIN


def test_the_comparison_ignores_what_an_interface_changes(owner_print, students):
    """A student behind log-softmax, or with its logits halved and shifted (a temperature-2
    softmax turned back into log-probabilities), scores as it does raw: outputs are centred across
    classes and the suspect's scaled by one factor."""
    student = TorchModel(students["student_same"], SHAPE)
    raw = owner_print.extraction.score(student).value
    served = get_interface("log_softmax").apply(student)
    assert owner_print.extraction.score(served).value == pytest.approx(raw, abs=1e-6)
    logits = student(owner_print.extraction.probes.points)
    assert owner_print.extraction.compare({"outputs": 0.5 * logits + 3.0}).value == pytest.approx(raw, abs=1e-9)


def test_verify_decides_a_student_with_four_stages_and_says_which_fired(owner_print, students, forty_references):
    """40 references support four stages at alpha 0.1 (1/40 each); the student is derived."""
    references = [TorchModel(m, SHAPE, name=f"r{i}") for i, m in enumerate(forty_references.references)]
    verdict = owner_print.verify(TorchModel(students["student_other"], SHAPE, name="student"), references, alpha=0.1,
                                 check_evasion=False)
    assert verdict.decision.value == "derived"
    assert [stage["name"] for stage in verdict.stages] == ["tafa", "tafa-datalike", "tafa-boundary", "tafa-students"]


def test_references_too_few_for_every_stage_calibrate_the_first_ones_and_say_so():
    scores = [[0.01 * i for i in range(40)]] * 3
    rule = Rule.from_references([f"r{i}" for i in range(40)], scores[0], 0.05,
                                stage_names=["tafa", "tafa-boundary", "tafa-students"],
                                later=lambda keep: [[scores[1][i] for i in keep], [scores[2][i] for i in keep]])
    assert rule.names == ["tafa", "tafa-boundary"] and rule.supports_alpha
    assert any("the first 2 decide" in note and "not run: tafa-students (59 references, or --parametric" in note
               for note in rule.notes)


def test_a_rehashed_extraction_stage_with_a_stage_of_its_own_is_refused(owner_print):
    """Whoever rewrites the file and hashes it anew cannot nest stages without end."""
    nested = replace(owner_print.extraction, scheme=replace(owner_print.extraction.scheme, second="tafa-boundary"))
    wrong = replace(owner_print, extraction=nested)
    with pytest.raises(FingerprintError, match="extraction stage") as error:
        Fingerprint.from_bytes(encode(wrong._header(), wrong._arrays()))
    assert "\n" not in str(error.value)
    assert get_scheme("tafa").extraction == "tafa-students"


class _Undifferentiable(torch.nn.Module):
    """A ReLU classifier whose forward runs without autograd: its answers are fine, its gradients absent."""

    def __init__(self, owner: torch.nn.Module) -> None:
        super().__init__()
        self.owner = owner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.owner(x)


def test_an_owner_torch_cannot_differentiate_gets_its_fingerprint_without_the_gradient_stages(classifier):
    """The extraction stage and the data-free label stage are found on the owner's gradients; an owner
    without them is fingerprinted all the same, and the metadata says why those two were not made."""
    made = Fingerprint.create(_Undifferentiable(classifier.owner), classifier.domain, input_shape=SHAPE)
    assert made.extraction is None and made.labels is None and "tafa-students" not in made.stage_names()
    assert "could not be found (RuntimeError" in made.meta["extraction_stage"]["why"]
    assert "could not be found (RuntimeError" in made.meta["free_label_stage"]["why"]
    assert Fingerprint.from_bytes(made.to_bytes()).stage_names() == made.stage_names()


@pytest.mark.parametrize("change, message", [
    (lambda stage: replace(stage, owner_signature={"outputs": np.zeros((64, 11))}), "does not fit the probes"),
    (lambda stage: replace(stage, owner_signature={"outputs": np.full((64, 10), np.nan)}), "not finite"),
    (lambda stage: replace(stage, owner_signature={"outputs": np.zeros((10, 10))}), "does not fit the probes"),
    (lambda stage: replace(stage, probes=replace(stage.probes, points=np.zeros((64, 3)))), "do not fit input shape"),
])
def test_a_rehashed_extraction_stage_that_does_not_fit_is_refused_in_one_line(owner_print, change, message):
    wrong = replace(owner_print, extraction=change(owner_print.extraction))
    with pytest.raises(FingerprintError, match=message) as error:
        Fingerprint.from_bytes(encode(wrong._header(), wrong._arrays()))
    assert "\n" not in str(error.value)


def test_the_outputs_stage_sees_a_regressor_copy_through_a_triangle_wave(regressor):
    """A regressor's extraction stage is the outputs stage: its outputs at 64 domain draws, centred,
    against the owner's. A triangle wave added to the committed regressor's int8 copy (``0.1 tri(x R)``,
    the benchmark's ``evasion/triangle``) corrupts the first stage's finite differences (0.40, under
    every one of the 18 references' first-stage scores but 0.68), but moves the outputs by its
    amplitude alone: 0.997 there, above every reference (0.93 at most); the independent model behind
    the same wave stays below the references' median (0.65 against 0.81)."""
    from tafa.attacks import quantize
    from tafa.attacks.evasion import TriangleRipple

    shape = regressor.input_shape
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=shape)
    stage = fingerprint.extraction
    assert stage is not None and stage.scheme.name == "tafa-outputs"
    references = [stage.score(TorchModel(model, shape)).value for model in regressor.references]
    first = [fingerprint.score(TorchModel(model, shape)).value for model in regressor.references]
    copy = TriangleRipple(TorchModel(quantize(regressor.owner, 8), shape, name="int8"))
    assert fingerprint.score(copy).value < max(first) - 0.1
    assert stage.score(copy).value > max(references) + 0.03
    independent = TriangleRipple(TorchModel(regressor.independent, shape, name="independent"))
    assert stage.score(independent).value < float(np.median(references)) - 0.05


def test_verify_judges_a_regressor_copy_behind_a_triangle_wave_derived_by_its_outputs(regressor):
    """Through ``verify`` (the 18 references, alpha 1/19, ``parametric`` so that all four stages
    decide): the committed regressor's int8 copy behind the triangle wave is below its thresholds at
    the first stage (0.40 against 0.80), the data-like stage (0.38 against 0.88) and the geometry
    (0.28 against 0.50), and above it at the outputs stage (0.997 against 0.956): derived, the
    outputs stage the one that fired. Before the
    outputs stage it was judged independent. The independent model behind the same wave stays
    independent (0.65 there)."""
    from tafa.attacks import quantize
    from tafa.attacks.evasion import TriangleRipple

    shape = regressor.input_shape
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=shape)
    references = [TorchModel(model, shape, name=f"reference{i}") for i, model in enumerate(regressor.references)]
    copy = TriangleRipple(TorchModel(quantize(regressor.owner, 8), shape, name="int8"))
    verdict = fingerprint.verify(copy, references, alpha=1 / 19, parametric=True)
    assert verdict.decision == "derived" and [stage["name"] for stage in verdict.stages] == fingerprint.stage_names()
    thresholds = [calibration.threshold for calibration in verdict.calibration.stages]
    scores = [stage["score"] for stage in verdict.stages]
    assert scores[0] < thresholds[0] - 0.1 and scores[1] < thresholds[1] - 0.1 and scores[2] < thresholds[2] - 0.1
    assert scores[3] > thresholds[3] + 0.02
    independent = TriangleRipple(TorchModel(regressor.independent, shape, name="independent"))
    cleared = fingerprint.verify(independent, references, alpha=1 / 19, parametric=True)
    assert cleared.decision == "independent" and cleared.stages[3]["score"] < thresholds[3] - 0.2
