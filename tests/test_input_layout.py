"""The suspect's input side (issue 20 item 3, issue 24 item 9): a copy that takes the owner's
input flattened, or with the owner's normalisation folded out of it, is verified with
``--input-layout`` / ``--input-affine`` (``tafa.models.adapt``) and scores as the plain copy does.

The owner is the committed digits classifier (``tests/conftest.py``, input ``(1, 8, 8)``); the
copy is its 50%-pruned network, served as ONNX files in each layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tafa import Fingerprint
from tafa.attacks import magnitude_prune
from tafa.cli import main
from tafa.errors import InvalidParameter, ShapeMismatch
from tafa.models import Normalised, Reshaped, TorchModel, adapt_input

MEAN, STD = 0.5, 0.25  # exact in binary: the folded normalisation adds no rounding of its own


class Denormalise(torch.nn.Module):
    """The owner's input rebuilt from a normalised one: a copy behind it expects ``(x - mean) / std``."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.std + self.mean


def _onnx(model: torch.nn.Module, path: Path, shape: tuple[int, ...]) -> str:
    torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["--quiet", *argv])
    except SystemExit as stopped:  # refused while parsing the arguments
        code = stopped.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tafa: error:"), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def copy(classifier) -> torch.nn.Module:
    return magnitude_prune(classifier.owner, 0.5)


@pytest.fixture(scope="module")
def files(classifier, copy, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("layout")
    folded = torch.nn.Sequential(Denormalise(MEAN, STD), copy)
    made = {
        "owner": _onnx(classifier.owner, root / "owner.onnx", (1, 8, 8)),
        "copy": _onnx(copy, root / "copy.onnx", (1, 8, 8)),
        "flat": _onnx(copy, root / "flat.onnx", (64,)),  # the MLP's Flatten leaves a flat input as it is
        "normalised": _onnx(folded, root / "normalised.onnx", (1, 8, 8)),
        "flat_normalised": _onnx(folded, root / "flat_normalised.onnx", (64,)),
    }
    made["fingerprint"] = str(root / "owner.tafa")
    assert main(["--quiet", "fingerprint", made["owner"], "--domain", "box:0,1", "--out", made["fingerprint"],
                 "--second-stage", "off"]) == 0
    return made


def _score(capsys, files, suspect: str, *options: str) -> dict:
    code, out, err = _run(capsys, "verify", files["fingerprint"], files[suspect], "--json", *options)
    assert code == 0, err
    return json.loads(out)


def test_a_flat_copy_scores_as_the_plain_copy_with_its_layout_declared(files, capsys):
    plain = _score(capsys, files, "copy")
    flat = _score(capsys, files, "flat", "--input-layout", "64")
    assert plain["score"] > 0.5  # a pruned copy, far from nothing: equal scores below mean something
    assert flat["score"] == pytest.approx(plain["score"], abs=1e-6)
    assert flat["queries"] == plain["queries"]  # counted once, through the wrapper
    assert flat["suspect"]["input_shape"] == [1, 8, 8]
    assert flat["suspect"]["input_adapted"] == ["reshaped from [1, 8, 8] to [64] (C order)"]


def test_a_file_that_declares_no_shape_is_opened_at_the_declared_layout(files, copy, capsys, tmp_path):
    """TorchScript declares no input shape: the suspect is opened at --input-layout, even where
    --input-shape (for the references' files) says the owner's."""
    script = tmp_path / "flat.pt"
    torch.jit.trace(copy, torch.zeros(1, 64)).save(str(script))
    files = {**files, "script": str(script)}
    plain = _score(capsys, files, "copy")
    flat = _score(capsys, files, "script", "--allow-torchscript", "--input-shape", "1,8,8", "--input-layout", "64")
    assert flat["score"] == pytest.approx(plain["score"], abs=1e-5)


def test_a_flat_copy_without_its_layout_is_refused_in_one_line_naming_the_option(files, capsys):
    code, _, err = _run(capsys, "verify", files["fingerprint"], files["flat"])
    _one_line_error(code, err, "(64,)", "(1, 8, 8)", "--input-layout 64")


@pytest.mark.parametrize("argv, needles", [
    (["--input-layout", "63"], ("63 values", "64 values")),  # not the owner's number of values
    (["--input-layout", "8,8"], ("(64,)", "(8, 8)")),  # the owner's 64 values, but not what the file declares
    (["--input-layout", "100000,100000,100000"], ("--input-layout", "values")),  # refused while parsing
    (["--input-layout", "0,64"], ("--input-layout", "positive")),
    (["--input-affine", "0.5"], ("--input-affine", "mean,std")),
    (["--input-affine", "0.5,0"], ("--input-affine", "nonzero")),
    (["--input-layout", "64", "--input-affine", "0.1:0.2,1"], ("'mean'", "one per channel")),  # 2 means, 1 channel
])
def test_bad_layouts_and_affines_give_one_line_and_exit_2(files, capsys, argv, needles):
    code, _, err = _run(capsys, "verify", files["fingerprint"], files["flat"], *argv)
    _one_line_error(code, err, *needles)


def test_the_affine_option_undoes_a_folded_normalisation(files, capsys):
    plain = _score(capsys, files, "copy")
    normalised = _score(capsys, files, "normalised", "--input-affine", f"{MEAN},{STD}")
    # float32 rounding of x * std + mean inside the copy is all that differs
    assert normalised["score"] == pytest.approx(plain["score"], abs=1e-4)
    assert normalised["suspect"]["input_adapted"] == ["normalised as (x - 0.5) / 0.25"]
    both = _score(capsys, files, "flat_normalised", "--input-layout", "64", "--input-affine", f"{MEAN},{STD}")
    assert both["score"] == pytest.approx(plain["score"], abs=1e-4)
    assert both["suspect"]["input_adapted"] == ["normalised as (x - 0.5) / 0.25",
                                                "reshaped from [1, 8, 8] to [64] (C order)"]
    # the check can fail: undeclared, the same copy scores far lower
    bare = _score(capsys, files, "normalised")
    assert bare["score"] < plain["score"] - 0.1


def test_the_other_direction_of_a_normalisation_and_a_negative_mean(classifier, copy):
    """A copy that normalises by itself inputs the owner took normalised: give -m/s and 1/s (with
    ``--input-affine=-2,4`` on the command line, as a value starting with '-' must be attached)."""
    owner = TorchModel(copy, (1, 8, 8), name="copy")
    folded_in = TorchModel(torch.nn.Sequential(Denormalise(-MEAN / STD, 1 / STD), copy), (1, 8, 8), name="folded")
    x = np.random.default_rng(1).random((50, 1, 8, 8), dtype=np.float32)
    wrapped = adapt_input(folded_in, (1, 8, 8), mean=-MEAN / STD, std=1 / STD)
    assert np.abs(wrapped(x) - owner(x)).max() < 1e-4
    assert np.abs(folded_in(x) - owner(x)).max() > 0.1  # and unwrapped it differs


def test_the_library_wrappers_keep_the_verdict_and_count_queries_once(classifier, copy):
    fingerprint = Fingerprint.create(classifier.owner, classifier.domain, input_shape=(1, 8, 8), second_stage=False)
    plain = fingerprint.verify(TorchModel(copy, (1, 8, 8), name="copy"))
    flat = TorchModel(copy, (64,), name="flat")
    reshaped = Reshaped(flat, (1, 8, 8))
    verdict = fingerprint.verify(reshaped)
    assert verdict.score == pytest.approx(plain.score, abs=1e-9)
    assert reshaped.queries == flat.queries == verdict.queries > 0
    with pytest.raises(ShapeMismatch, match="takes inputs of shape"):
        fingerprint.verify(flat)


def test_per_channel_normalisation_runs_along_the_first_axis():
    channels = TorchModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), (3, 2, 2), name="rgb")
    mean, std = [0.1, 0.2, 0.3], [0.5, 2.0, 4.0]
    wrapped = Normalised(channels, mean, std)
    x = np.random.default_rng(2).random((5, 3, 2, 2), dtype=np.float32)
    by_hand = (x - np.array(mean, dtype=np.float32)[:, None, None]) / np.array(std, dtype=np.float32)[:, None, None]
    assert np.allclose(wrapped(x), channels(by_hand), atol=1e-6)
    with pytest.raises(InvalidParameter, match="one per channel"):
        Normalised(channels, [0.1, 0.2], 1.0)
    with pytest.raises(InvalidParameter, match="must be a tafa Model"):
        Reshaped(torch.nn.Linear(64, 2), (1, 8, 8))  # type: ignore[arg-type]


def test_the_parsers_bounds_are_the_librarys():
    from tafa.cli import options
    from tafa.models import adapt

    assert options.MAX_LAYOUT_AXES == adapt.MAX_LAYOUT_AXES
    assert options.MAX_LAYOUT_ELEMENTS == adapt.MAX_LAYOUT_ELEMENTS
    with pytest.raises(ShapeMismatch, match="refused before allocating"):
        adapt.layout_size((1 << 40, 1 << 40, 1 << 40))
