"""The fingerprint file, the domain, the calibrated threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tafa import Box, Fingerprint, Gaussian, calibrate, parse_domain
from tafa.errors import DomainError, FingerprintError, InvalidParameter, TamperedFingerprint
from tafa.probes import Analysis


@pytest.fixture(scope="module")
def fingerprint(generator):
    return Fingerprint.create(generator.owner, "gaussian", input_shape=(8,), points=16, directions=3, seed=3)


def test_save_load_roundtrip_gives_identical_scores(fingerprint, generator, tmp_path):
    path = fingerprint.save(tmp_path / "fp.tafa")
    loaded = Fingerprint.load(path)
    assert loaded.sha256 == fingerprint.sha256
    assert loaded.domain.describe() == "gaussian(mean=0, std=1)"
    for model in (generator.owner, generator.independent):
        assert loaded.score(model).value == fingerprint.score(model).value


def test_same_seed_same_fingerprint(generator, fingerprint):
    again = Fingerprint.create(generator.owner, "gaussian", input_shape=(8,), points=16, directions=3, seed=3)
    np.testing.assert_array_equal(again.probes.points, fingerprint.probes.points)
    other = Fingerprint.create(generator.owner, "gaussian", input_shape=(8,), points=16, directions=3, seed=4)
    assert not np.array_equal(other.probes.points, fingerprint.probes.points)


def test_header_edit_is_detected(fingerprint, tmp_path):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    path = fingerprint.save(tmp_path / "fp.tafa")
    with safe_open(str(path), framework="np") as handle:
        header = json.loads(handle.metadata()["tafa"])
    header["owner_sha256"] = "0" * 64  # claim another owner
    save_file(load_file(str(path)), str(path), metadata={"tafa": json.dumps(header)})
    with pytest.raises(TamperedFingerprint):
        Fingerprint.load(path)


def test_not_a_fingerprint(tmp_path):
    path = tmp_path / "empty.tafa"
    path.write_bytes(b"")
    with pytest.raises(FingerprintError):
        Fingerprint.load(path)


def test_failed_save_leaves_nothing_behind(fingerprint, tmp_path, monkeypatch):
    import os

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", explode)  # the bytes are written, the disk fails before the rename
    with pytest.raises(OSError):
        fingerprint.save(tmp_path / "fp.tafa")
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters_are_named(generator):
    with pytest.raises(InvalidParameter, match="'points' parameter of Fingerprint.create"):
        Fingerprint.create(generator.owner, "gaussian", input_shape=(8,), points=1)
    with pytest.raises(InvalidParameter, match="'directions'"):
        Fingerprint.create(generator.owner, "gaussian", input_shape=(8,), directions=9)


def test_domain_specs(tmp_path):
    assert isinstance(parse_domain("box:-2,2", (10,)), Box)
    gaussian = parse_domain("gaussian:1,0.5", (3,))
    assert isinstance(gaussian, Gaussian) and gaussian.bounds()[1][0] == pytest.approx(3.0)
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"lo": [0, 0, -1], "hi": [1, 2, 1]}))
    box = parse_domain(f"box:{bounds}", (3,))
    assert box.sample(100, 0).max(axis=0)[1] > 1.0
    for spec in ("cube:0,1", "box:0", "box:a,b", "gaussian:0,-1", "box:1,0", f"box:{tmp_path}/none.json"):
        with pytest.raises(DomainError):
            parse_domain(spec, (3,))


@given(st.lists(st.floats(-1, 1), min_size=1, max_size=60), st.sampled_from([0.01, 0.05, 0.1, 0.3]))
def test_calibration_never_accepts_more_references_than_its_bound(scores, alpha):
    cal = calibrate(scores, alpha)
    above = np.mean(np.asarray(scores) > cal.threshold)
    assert above <= alpha + 1e-12  # on the references themselves
    assert cal.threshold >= cal.rank_threshold - 1e-12
    if cal.method == "rank":
        assert cal.bound <= alpha + 1e-12 or cal.bound == pytest.approx(1 / (len(scores) + 1))


def test_calibration_rank_and_parametric():
    n99 = calibrate(np.linspace(0, 0.5, 99), 0.01)
    assert n99.method == "rank" and n99.threshold == pytest.approx(0.5) and n99.bound == 0.01
    small = calibrate([0.1, 0.2, 0.25, 0.3], 0.01, parametric=True)
    assert small.method == "parametric" and small.threshold > 0.3 and small.rank_bound == pytest.approx(0.2)


def test_scheme_references_and_probe_analysis_are_typed():
    from tafa.scheme import ReferenceSource, Scheme, get_scheme

    free = get_scheme("tafa-free")
    assert free.references is ReferenceSource.DATA_FREE and free.to_dict()["references"] == "data-free"
    assert Scheme.from_dict(free.to_dict()).references is ReferenceSource.DATA_FREE
    assert get_scheme("tafa").references is ReferenceSource.NONE
    assert Scheme("x", "random", "outputs", "output-cosine", 4, references="data").references is ReferenceSource.DATA
    with pytest.raises(ValueError, match="'data free'"):
        Scheme("x", "random", "outputs", "output-cosine", 4, references="data free")
    assert Analysis.of("black-box (owner has no torch module)") is Analysis.BLACK_BOX
    assert Analysis.of("white-box references") is Analysis.WHITE_BOX
    assert Analysis.of("blackbox") is Analysis.of(None) is Analysis.NONE


def test_a_black_box_fingerprint_says_so_in_its_verdict(generator):
    from tafa.models import TorchModel

    class Opaque(TorchModel):  # a real model whose torch module is hidden, as a service's would be
        def torch_module(self):
            return None

    owner = Opaque(generator.owner, (8,))
    fingerprint = Fingerprint.create(owner, "gaussian", points=8, directions=2, input_shape=(8,))
    assert fingerprint.probes.analysis is Analysis.BLACK_BOX
    assert any(note.startswith("fingerprint made black-box") for note in fingerprint.verify(owner).notes)
