"""Interfaces (what a service returns instead of raw outputs) and what the verifier recognises
through them, on the committed small models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tafa import Fingerprint
from tafa.attacks import quantize
from tafa.attacks.interface import (ANY, INTERFACES, TASKS, Interface, InterfacedModel, get_interface, interfaces_for,
                                    register_interface)
from tafa.decide.similarity import DerivativeCosine
from tafa.errors import InvalidParameter
from tafa.models import TorchModel
from tafa.signature.interface import grid_step, measure_suspect, recognise

RNG_INPUTS = np.random.default_rng(3).random((40, 1, 8, 8)).astype(np.float32)


def softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    e = np.exp((z - z.max(axis=1, keepdims=True)) / t)
    return e / e.sum(axis=1, keepdims=True)


def centred(rows: np.ndarray) -> np.ndarray:
    return rows - rows.mean(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def owner(classifier) -> TorchModel:
    return TorchModel(classifier.owner, classifier.input_shape, name="owner")


@pytest.fixture(scope="module")
def logits(owner) -> np.ndarray:
    return owner(RNG_INPUTS)


@pytest.fixture(scope="module")
def fingerprint(classifier) -> Fingerprint:
    return Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape,
                              second_stage=False)


# ----------------------------------------------------------------- the wrappers do what they say
def served(name: str, owner: TorchModel) -> np.ndarray:
    return get_interface(name).apply(owner)(RNG_INPUTS)


def test_probability_interfaces(owner, logits):
    z = logits
    assert np.allclose(served("softmax", owner), softmax(z), atol=1e-15)
    assert np.allclose(served("softmax_t05", owner), softmax(z, 0.5), atol=1e-15)
    assert np.allclose(served("softmax_t3", owner), softmax(z, 3.0), atol=1e-15)
    log_p = served("log_softmax", owner)
    assert np.allclose(np.exp(log_p).sum(axis=1), 1.0, atol=1e-12) and np.allclose(centred(log_p), centred(z))
    for decimals in (2, 3):
        rounded = served(f"softmax_round{decimals}", owner)
        assert np.array_equal(rounded, np.round(softmax(z), decimals))
        assert np.abs(rounded - softmax(z)).max() <= 0.5 * 10.0 ** -decimals + 1e-15
    top = served("top3", owner)
    assert ((top > 0).sum(axis=1) == 3).all()
    order = np.argsort(-softmax(z), axis=1)[:, :3]
    assert np.array_equal(np.take_along_axis(top, order, 1), np.take_along_axis(softmax(z), order, 1))


def test_label_and_integer_interfaces(owner, logits):
    assert np.array_equal(served("integer_logits", owner), np.round(logits))
    labels = served("one_hot", owner)
    assert np.array_equal(labels.argmax(axis=1), logits.argmax(axis=1)) and (labels.sum(axis=1) == 1).all()
    assert set(np.unique(labels)) == {0.0, 1.0}


def test_regression_and_generation_interfaces(owner, logits):
    y = logits
    assert np.allclose(served("affine", owner), 2.5 * y + 10.0)
    assert np.allclose(served("affine_negative", owner), -0.5 * y + 3.0)
    assert np.array_equal(served("clip", owner), np.clip(y, -1, 1))
    assert np.array_equal(served("round1", owner), np.round(y, 1))
    assert np.allclose(served("sigmoid", owner), 1 / (1 + np.exp(-y)))
    assert np.allclose(served("tanh", owner), np.tanh(y))
    assert np.array_equal(served("clamp", owner), np.clip(y, 0, 1))
    pixels = served("pixels8", owner)
    assert np.allclose(pixels * 255, np.round(pixels * 255), atol=1e-9) and pixels.min() >= 0 and pixels.max() <= 1
    assert np.abs(pixels - np.clip(y, 0, 1)).max() <= 0.5 / 255 + 1e-12


def test_interfaced_model_counts_queries_and_is_a_black_box(classifier):
    inner = TorchModel(classifier.owner, classifier.input_shape, name="owner", batch_size=16)
    model = get_interface("softmax").apply(inner)
    assert isinstance(model, InterfacedModel) and model.torch_module() is None
    model(RNG_INPUTS)
    assert model.queries == inner.queries == len(RNG_INPUTS)
    assert model.describe()["interface"] == "softmax"
    hashes = {inner.content_hash(), model.content_hash(), get_interface("one_hot").apply(inner).content_hash()}
    assert len(hashes) == 3


def test_half_precision_computes_the_network_in_it(classifier):
    """``bf16`` and ``fp16`` run the whole network in half precision (every activation rounded), the
    module given unchanged: answers within half precision's rounding of the float32 ones, and not
    equal to them; a model that is no torch module is refused with a one-line error."""
    inner = TorchModel(classifier.owner, classifier.input_shape, name="owner")
    exact = inner(RNG_INPUTS)
    for name, eps in (("bf16", 2.0 ** -8), ("fp16", 2.0 ** -11)):
        served = get_interface(name).apply(inner)
        answers = served(RNG_INPUTS)
        spread = np.abs(exact).max()
        assert 0 < np.abs(answers - exact).max() < 64 * eps * spread, name
        assert served.torch_module() is None and served.describe()["interface"] == name
        assert next(classifier.owner.parameters()).dtype == torch.float32
    with pytest.raises(InvalidParameter, match="a model held as a torch module"):
        get_interface("bf16").apply(get_interface("softmax").apply(inner))


def test_half_precision_answers_are_no_clip(classifier, regressor):
    """In half precision a probe's finite-difference inputs round alike, so every output value comes
    back several times, its extremes too: that is no clip (it was read as one, and the suspect then
    compared at the probes "inside" it against references that are not). A clip computed in half
    precision still is one."""
    from tafa.signature.interface import censored, half_precision_bits

    for kind in (classifier, regressor):
        fingerprint = Fingerprint.create(kind.owner, kind.domain, input_shape=kind.input_shape, second_stage=False)
        inputs = fingerprint.scheme.make_signature().inputs(fingerprint.probes)
        for module in (kind.owner, kind.independent):
            for name, bits in (("bf16", 8), ("fp16", 11)):
                answers = get_interface(name).apply(TorchModel(module, kind.input_shape))(inputs)
                rows = answers.reshape(len(answers), -1)
                assert half_precision_bits(rows) == bits
                assert censored(rows)[0] is None, (kind.name, name)
                assert recognise(rows).censored is None
        answers = get_interface("bf16").apply(TorchModel(kind.independent, kind.input_shape))(inputs)
        rows = answers.reshape(len(answers), -1)
        bound = float(np.quantile(rows[:, 0], 0.8))
        rows[:, 0] = np.minimum(rows[:, 0], bound)  # a fifth of the first output at the clip
        mask, bounds = censored(rows)
        assert mask is not None and bound in bounds and mask[:, 0].mean() >= 0.2


def test_registry():
    assert {interface.task for interface in INTERFACES.values()} == {*TASKS, ANY}
    assert [i.name for i in interfaces_for("generation")] == ["sigmoid", "tanh", "clamp", "pixels8", "bf16", "fp16"]
    with pytest.raises(InvalidParameter, match="'name' parameter of get_interface"):
        get_interface("nope")
    with pytest.raises(InvalidParameter, match="not registered yet"):
        register_interface(Interface("softmax", "classification", np.exp))
    with pytest.raises(InvalidParameter, match="'interface.task'"):
        register_interface(Interface("other", "speech", np.exp))


# ----------------------------------------------------------------- recognition
@pytest.mark.parametrize("name,scale", [("softmax", 1.0), ("softmax_t05", 2.0), ("softmax_t3", 1 / 3),
                                        ("log_softmax", 1.0)])
def test_probabilities_are_undone_to_centred_logits(owner, logits, name, scale):
    recognised = recognise(served(name, owner), owner_outputs=logits)
    assert recognised.kind == ("log-probabilities" if name == "log_softmax" else "probabilities")
    assert recognised.centred and recognised.quantised is None
    assert np.abs(recognised.answers - scale * centred(logits)).max() <= 1e-9 * np.abs(logits).max()
    assert "centred log-probabilities" in recognised.note or "centred per row" in recognised.note


def test_sigmoid_and_tanh_are_undone(owner, logits):
    bounded = logits / (np.abs(logits).max() + 1)  # inside the unsaturated range: exactly invertible
    recognised = recognise(1 / (1 + np.exp(-bounded)), owner_outputs=logits)
    assert recognised.kind == "unit interval" and np.allclose(recognised.answers, bounded, atol=1e-9)
    recognised = recognise(np.tanh(bounded), owner_outputs=logits)
    assert recognised.kind == "signed unit interval" and np.allclose(recognised.answers, bounded, atol=1e-9)
    saturated = recognise(served("sigmoid", owner), owner_outputs=logits)
    assert saturated.kind == "unit interval" and np.all(np.isfinite(saturated.answers))


def test_quantised_answers_are_flagged(owner, logits):
    assert recognise(served("integer_logits", owner), logits).kind == "integers"
    assert recognise(served("integer_logits", owner), logits).quantised == 1.0
    labels = recognise(served("one_hot", owner), logits)
    assert labels.kind == "one-hot labels" and labels.quantised == 1.0 and "unreliable" in labels.note
    assert recognise(served("softmax_round3", owner), logits).quantised == 1e-3
    assert recognise(served("softmax_round2", owner), logits).quantised == 0.01
    assert recognise(served("pixels8", owner), logits).quantised == pytest.approx(1 / 255)
    assert recognise(served("top3", owner), logits).kind == "top-k probabilities"
    assert grid_step(logits) is None


def test_raw_answers_and_the_owners_own_form_are_not_interfaces(kind):
    owner = TorchModel(kind.owner, kind.input_shape)
    inputs = np.random.default_rng(0).random((30, *kind.input_shape)).astype(np.float32)
    own = owner(inputs)
    for model in (kind.owner, *kind.references[:3], kind.independent):
        recognised = recognise(TorchModel(model, kind.input_shape)(inputs), owner_outputs=own)
        assert recognised.kind == "raw" and not recognised.centred and recognised.note == ""


# ----------------------------------------------------------------- the comparison through an interface
def test_a_shift_common_to_every_output_is_no_evidence(fingerprint):
    owner = fingerprint.owner_signature
    rng = np.random.default_rng(0)
    shifted = {**owner, "outputs": owner["outputs"] + rng.normal(size=(len(owner["outputs"]), 1)),
               "derivatives": owner["derivatives"] + rng.normal(size=(*owner["derivatives"].shape[:2], 1))}
    assert DerivativeCosine().compare(owner, shifted).value == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", ["softmax", "softmax_t3", "softmax_t05", "log_softmax"])
def test_a_copy_behind_probabilities_scores_like_the_raw_copy(classifier, fingerprint, name):
    copy = TorchModel(quantize(classifier.owner, 8), classifier.input_shape, name="int8")
    raw = fingerprint.measure(copy)
    behind, recognised = measure_suspect(fingerprint.scheme.make_signature(), get_interface(name).apply(copy),
                                         fingerprint.probes, fingerprint.owner_signature)
    assert recognised.centred
    scale = {"softmax_t3": 1 / 3, "softmax_t05": 2.0}.get(name, 1.0)
    expected = centred(raw["derivatives"].reshape(-1, raw["derivatives"].shape[-1])).reshape(raw["derivatives"].shape)
    assert np.abs(behind["derivatives"] - scale * expected).max() <= 1e-6 * np.abs(expected).max()
    centred_raw = fingerprint.compare(raw).value
    assert fingerprint.compare(behind).value == pytest.approx(centred_raw, abs=1e-6)
    assert fingerprint.score(get_interface(name).apply(copy)).value == pytest.approx(centred_raw, abs=1e-6)


def test_rounded_probabilities_reach_the_fingerprint_flagged(classifier, fingerprint):
    copy = get_interface("softmax_round3").apply(TorchModel(classifier.owner, classifier.input_shape))
    _, recognised = measure_suspect(fingerprint.scheme.make_signature(), copy, fingerprint.probes,
                                    fingerprint.owner_signature)
    assert recognised.kind == "probabilities" and recognised.quantised == 1e-3
    assert "rounded to 0.001" in recognised.note



# ----------------------------------------------------------------- the verdict through an interface
def test_verify_judges_a_copy_behind_probabilities_derived_and_a_rounded_one_undecided(classifier, fingerprint):
    """18 references at alpha 1/19 (rank). The int8 copy scores ~1 behind softmax and log-softmax
    (the same as without them, to 1e-6): far above any reference. Rounded probabilities and integer
    logits cannot be undone: the verdict never clears them."""
    references = [TorchModel(model, classifier.input_shape, name=f"reference{i}")
                  for i, model in enumerate(classifier.references)]
    rule = fingerprint.calibrate(references, alpha=1 / 19)
    copy = TorchModel(quantize(classifier.owner, 8), classifier.input_shape, name="int8")
    for name in ("softmax", "log_softmax", "softmax_t3"):
        verdict = fingerprint.verify(get_interface(name).apply(copy), calibration=rule)
        assert verdict.decision == "derived" and verdict.score > 0.99, name
        assert any(note.startswith("answers are ") for note in verdict.notes)
    independent = TorchModel(classifier.independent, classifier.input_shape, name="independent")
    assert fingerprint.verify(get_interface("softmax").apply(independent), calibration=rule).decision == "independent"
    for name in ("softmax_round3", "integer_logits", "one_hot"):
        for model in (copy, independent):
            verdict = fingerprint.verify(get_interface(name).apply(model), calibration=rule)
            assert verdict.decision != "independent", (name, model.name)
            # a stored rule has no coarse threshold: the coarse scale that decides grids needs the references
            assert any("no evidence of independence" in note or "needs the references" in note
                       for note in verdict.notes) or verdict.decision == "derived"
    # with the references themselves, the coarse scale decides integer logits (tafa.signature.scales)
    found = fingerprint.verify(get_interface("integer_logits").apply(copy), references, alpha=1 / 19)
    assert found.decision == "derived" and found.coarse["decides"]


def test_clipped_answers_are_recognised_relative_to_the_owner():
    y = np.array([[0.213719], [1.5], [-0.451903], [1.5], [0.903247], [1.5], [-2.007131]])
    recognised = recognise(y)
    assert recognised.kind == "raw" and recognised.quantised is None and recognised.bounds == (1.5,)
    assert recognised.censored is not None and recognised.censored[:, 0].tolist() == [False, True, False, True,
                                                                                       False, True, False]
    assert "clipped at 1.5" in recognised.note
    # the owner repeats an extreme value itself (a ReLU on its output): the owner's form, no clip
    assert recognise(y, owner_outputs=np.array([[0.0], [0.0], [0.7]])).censored is None
    # twice is no clip; nor is a grid (rounded answers are decided at the coarse scale)
    assert recognise(np.array([[0.313713], [1.5], [1.5], [0.107149]])).censored is None
    rounded = recognise(np.round(y, 1))
    assert rounded.quantised == 0.1 and rounded.censored is None
    assert recognise(np.full((6, 1), 0.123457)).censored is None  # a constant is no clip


def test_a_clipped_copy_is_compared_where_its_answers_are_inside_the_clip(regressor):
    """The committed regressor's int8 copy served clipped to [-1, 1] (the benchmark's ``clip``
    interface): about a fifth of its answers sit at the bounds. Compared at the probes it answers
    inside the clip (53 of 64), with the 18 references scored at the same probes, it scores 1 to
    1e-4 against a threshold of 0.67; the independent model behind the same clip scores 0.18 (its
    threshold, at its own 50 probes, 0.73).
    A clip that leaves too few probes inside gives no decision, never ``independent``."""
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape)
    references = [TorchModel(model, regressor.input_shape, name=f"reference{i}")
                  for i, model in enumerate(regressor.references)]
    clip = get_interface("clip")
    copy = clip.apply(TorchModel(quantize(regressor.owner, 8), regressor.input_shape, name="int8"))
    verdict = fingerprint.verify(copy, references, alpha=1 / 19)
    assert verdict.decision == "derived" and verdict.score > 0.999
    assert any(note.startswith("compared at the ") and "inside the clip" in note for note in verdict.notes)
    threshold = verdict.calibration.stages[0].threshold
    assert threshold < 0.95
    independent = clip.apply(TorchModel(regressor.independent, regressor.input_shape, name="independent"))
    cleared = fingerprint.verify(independent, references, alpha=1 / 19)
    assert cleared.decision == "independent" and cleared.score < threshold - 0.2
    # a stored rule's thresholds were made on every probe: the references are needed
    rule = fingerprint.calibrate(references, alpha=1 / 19)
    stored = fingerprint.verify(copy, calibration=rule)
    assert stored.decision == "undecided" and any("needs the references themselves" in n for n in stored.notes)
    # clipped so narrowly that almost no probe is answered inside: no decision
    narrow = Interface("narrow", "regression", lambda y: np.clip(y, -0.05, 0.05), "clipped to [-0.05, 0.05]")
    hidden = fingerprint.verify(narrow.apply(TorchModel(regressor.independent, regressor.input_shape)), references,
                                alpha=1 / 19)
    assert hidden.decision == "undecided" and any("inside the clip" in note for note in hidden.notes)


def test_the_boundary_geometry_of_a_clipped_suspect_is_read_through_its_clip(regressor):
    """A clip adds kinks of its own where the network's output crosses a bound, and the geometry
    stage took them for the network's: the committed regressor's int8 copy behind ``clip`` read 0.71
    there (0.97 unclipped). The view of a clipped suspect reads the geometry through the suspect's
    clip, an answer at a bound unknown: the copy reads 0.74, above all 18 references asked through
    the same clip (0.45 at most), and a reference scores exactly as if served through that clip (the
    suspect and its references are measured alike)."""
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape)
    assert fingerprint.second is not None and fingerprint.second.scheme.signature == "kinks"
    clip = get_interface("clip")
    copy = clip.apply(TorchModel(quantize(regressor.owner, 8), regressor.input_shape, name="int8"))
    signature, recognised, _ = fingerprint.measure_checked(copy, check=False)
    view, _, too_few = fingerprint.uncensored(signature, recognised)
    assert too_few is None and view.second is not None
    assert view.second.scheme.signature_params["clip"] == [[-1.0, 1.0]]
    geometry = view.second
    plain, through = fingerprint.second.score(copy).value, geometry.score(copy).value
    references = [TorchModel(model, regressor.input_shape, name=f"reference{i}")
                  for i, model in enumerate(regressor.references)]
    asked = [geometry.score(reference).value for reference in references]
    assert asked == [geometry.score(clip.apply(reference)).value for reference in references]
    assert through > plain + 0.01 and through > max(asked) + 0.15
    independent = clip.apply(TorchModel(regressor.independent, regressor.input_shape, name="independent"))
    assert geometry.score(independent).value < float(np.median(asked))


def test_a_parent_aware_fingerprint_compares_a_clipped_suspect_at_its_probes(regressor):
    """With a declared parent, every comparison is relative to the parent's signature: a clipped
    suspect's view keeps the parent's signature at the same probes (it once crashed the benchmark on
    the shared-parent decoder zoo: arrays of 44 probes against the parent's 64)."""
    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape,
                                     parent=regressor.references[0], parent_references=0)
    copy = get_interface("clip").apply(TorchModel(quantize(regressor.owner, 8), regressor.input_shape, name="int8"))
    signature, recognised, _ = fingerprint.measure_checked(copy, check=False)
    view, at_view, too_few = fingerprint.uncensored(signature, recognised)
    assert view is not fingerprint and too_few is None
    assert len(view.parent_signature["outputs"]) == len(view.probes) < len(fingerprint.probes)
    assert view.compare(at_view).value > 0.99


def test_a_scan_never_clears_a_clipped_suspect(regressor):
    """A scan decides at every probe with its stored first-stage threshold: a clipped suspect is
    left undecided there (tafa verify, with the references, compares it inside the clip)."""
    from tafa.scanning import Panel, Suspect

    fingerprint = Fingerprint.create(regressor.owner, regressor.domain, input_shape=regressor.input_shape)
    references = [TorchModel(model, regressor.input_shape, name=f"reference{i}")
                  for i, model in enumerate(regressor.references)]
    panel = Panel.from_fingerprints({"owner": fingerprint},
                                    {"owner": fingerprint.calibrate_first(references, alpha=1 / 19)})
    independent = TorchModel(regressor.independent, regressor.input_shape, name="independent")
    [plain] = panel.check_model(independent, Suspect("independent.onnx")).findings
    [clipped] = panel.check_model(get_interface("clip").apply(independent), Suspect("clipped.onnx")).findings
    assert plain.decision == "independent" and clipped.decision == "undecided"


def test_a_clipped_onnx_regressor_through_the_command_line(regressor, tmp_path, capsys):
    """The committed regressor's int8 copy exported to ONNX with a clamp to [-1, 1] after its
    output (an ONNX Clip): `tafa verify` with the 18 references (ONNX files) at alpha 1/19 names
    the clip, compares inside it and says derived; the independent model behind the same clamp is
    independent."""
    import json

    import torch

    from tafa.cli import main

    class Clamped(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.clamp(self.inner(x), -1.0, 1.0)

    def onnx(model: torch.nn.Module, path) -> str:
        torch.onnx.export(model, (torch.zeros(1, *regressor.input_shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        return str(path)

    references = tmp_path / "references"
    references.mkdir()
    for i, model in enumerate(regressor.references):
        onnx(model, references / f"reference{i:02d}.onnx")
    owner = onnx(regressor.owner, tmp_path / "owner.onnx")
    fingerprint = tmp_path / "owner.tafa"
    assert main(["--quiet", "fingerprint", owner, "--domain", regressor.domain, "--out", str(fingerprint)]) == 0
    verdicts = {}
    for name, model in (("copy", quantize(regressor.owner, 8)), ("independent", regressor.independent)):
        capsys.readouterr()
        code = main(["--quiet", "verify", str(fingerprint), onnx(Clamped(model), tmp_path / f"{name}.onnx"),
                     "--references", str(references), "--alpha", str(1 / 19), "--json"])
        verdicts[name] = json.loads(capsys.readouterr().out)
        assert code == 0, (name, code)  # the decision is in the JSON (an exit status per decision: --exit-code)
        assert any("inside the clip" in note for note in verdicts[name]["notes"]), verdicts[name]["notes"]
    assert verdicts["copy"]["decision"] == "derived" and verdicts["copy"]["score"] > 0.999
    assert verdicts["independent"]["decision"] == "independent" and verdicts["independent"]["score"] < 0.5


def test_the_first_stage_on_the_classes_a_top_k_list_shows(classifier, fingerprint, owner):
    """Behind a top-3 list an exact copy scores 1 on the classes it shows (the floor the zeroed ones are
    given is left out), an int8 copy nearly so, the independent model far less; read with every class
    shown, the stage is the first stage's own comparison; it applies to a top-k list alone."""
    from tafa.shown_stage import ShownStage
    from tafa.signature.derivatives import Derivatives

    measurement = fingerprint.scheme.make_signature()
    assert isinstance(measurement, Derivatives)
    inputs = measurement.inputs(fingerprint.probes)
    top3 = get_interface("top3")
    recognised = recognise(top3.apply(owner)(inputs), fingerprint.owner_signature["outputs"])
    assert recognised.kind == "top-k probabilities" and recognised.hidden is not None
    assert recognised.hidden.sum(axis=1).tolist() == [7] * len(inputs)
    stage = fingerprint.shown_stage(recognised)
    assert stage is not None and stage.compare(recognised).value == pytest.approx(1.0, abs=1e-9)
    shown = stage.compare(recognised).per_point.size
    assert 0 < shown <= len(fingerprint.probes)
    int8 = stage.score(top3.apply(TorchModel(quantize(classifier.owner, 8), classifier.input_shape))).value
    other = stage.score(top3.apply(TorchModel(classifier.independent, classifier.input_shape))).value
    assert int8 > 0.99 and other < int8 - 0.05, (int8, other)
    everything = ShownStage(measurement, fingerprint.probes, fingerprint.owner_signature)
    independent = TorchModel(classifier.independent, classifier.input_shape)
    assert everything.score(independent).value == pytest.approx(fingerprint.score(independent).value, abs=1e-9)
    for name in ("softmax", "softmax_round2", "one_hot"):
        assert fingerprint.shown_stage(recognise(get_interface(name).apply(owner)(inputs),
                                                 fingerprint.owner_signature["outputs"])) is None


def test_the_boundary_geometry_on_the_classes_a_top_k_list_shows(classifier, owner):
    """Behind a top-3 list the boundary geometry reads the log of each value shown, compares slopes on
    the classes both sides show (centred across them) and measures each jump on the classes its inputs
    all show: the int8 copy keeps the owner's kinks (measured 0.687), the independent model does not
    (0.422); a list whose length moves with the input gets no such stage (its references could not be
    asked through the same list at the geometry's adaptive queries)."""
    from tafa.signature.derivatives import Derivatives

    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=classifier.input_shape)
    measurement = fingerprint.scheme.make_signature()
    assert isinstance(measurement, Derivatives) and fingerprint.second is not None
    inputs = measurement.inputs(fingerprint.probes)
    top3 = get_interface("top3")
    geometry = fingerprint.shown_geometry(recognise(top3.apply(owner)(inputs), fingerprint.owner_signature["outputs"]))
    assert geometry is not None and geometry.scheme.make_signature().shown
    int8 = geometry.score(top3.apply(TorchModel(quantize(classifier.owner, 8), classifier.input_shape))).value
    other = geometry.score(top3.apply(TorchModel(classifier.independent, classifier.input_shape))).value
    assert int8 > other + 0.15, (int8, other)
    answers = top3.apply(owner)(inputs)
    third = np.argsort(answers[::2], axis=1)[:, -3:-2]  # every other input shows two classes
    np.put_along_axis(answers[::2], third, 0.0, axis=1)
    shifting = recognise(answers, fingerprint.owner_signature["outputs"])
    assert fingerprint.shown_stage(shifting) is not None and fingerprint.shown_geometry(shifting) is None


def test_a_copy_behind_a_top_1_list_is_derived_and_an_independent_one_is_not(classifier):
    """The label with its probability, the others zeroed (``top1``): one value per row, so nothing of
    the first stage's derivatives survives and the label stage decides with the coarse scale. Measured
    (18 references, alpha 0.1, the parametric tail): the int8 copy 0.147 above its threshold, the 50%
    pruned one 0.129; the independent model 0.408 below (it was often judged evasive before the
    evasion check's segments compared every batch at one floor: tests/test_evasion.py)."""
    from tafa.attacks import magnitude_prune

    fingerprint = Fingerprint.create(TorchModel(classifier.owner, classifier.input_shape), classifier.domain, seed=0)
    references = [TorchModel(model, classifier.input_shape, name=f"reference{i}")
                  for i, model in enumerate(classifier.references)]
    top1 = get_interface("top1")
    for name, module in (("int8", quantize(classifier.owner, 8)), ("pruned", magnitude_prune(classifier.owner, 0.5))):
        verdict = fingerprint.verify(top1.apply(TorchModel(module, classifier.input_shape, name=name)), references,
                                     alpha=0.1, parametric=True)
        assert verdict.decision == "derived" and verdict.margin_to_threshold > 0.06, (name, verdict.notes)
        assert "labels" in verdict.scheme, verdict.scheme
    other = fingerprint.verify(top1.apply(TorchModel(classifier.independent, classifier.input_shape, name="other")),
                               references, alpha=0.1, parametric=True)
    assert other.decision != "derived" and other.margin_to_threshold < -0.2, other.notes
