"""The packaged models as starting points (issue 28): the edge model rebuilt in PyTorch from its
FP32 ONNX, `siamese-train --init`, and `siamese-adapt` with its gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from siamese.runtime.embedder import Embedder
from siamese.train.cli import train_main
from siamese.train.embedding import crop_embedder
from siamese.train.packaged import load_onnx, set_statistics

from tests.conftest import ATT_FACES, LFW_MINI


@pytest.fixture(scope="module")
def mini_crops(mini_faces) -> np.ndarray:
    return np.stack([mini_faces.crop(record.path) for record in mini_faces.select()])


def test_rebuilt_edge_matches_its_onnx_on_real_faces(mini_crops):
    rebuilt = load_onnx("edge")
    onnx_vectors = Embedder(rebuilt.source).embed(mini_crops)
    torch_vectors = crop_embedder(rebuilt.model, rebuilt.info.preprocess, "cpu")(mini_crops)
    assert rebuilt.info.arch == "edge-resnet" and len(mini_crops) >= 32
    assert (onnx_vectors * torch_vectors).sum(1).min() > 0.99999
    # real batch-norm statistics leave the function as it was
    pixels = torch.from_numpy(rebuilt.info.preprocess(mini_crops))
    set_statistics(rebuilt.embedding_model, pixels)
    again = crop_embedder(rebuilt.model, rebuilt.info.preprocess, "cpu")(mini_crops)
    assert (onnx_vectors * again).sum(1).min() > 0.99999


def _train(tmp_path, init: str):
    return CliRunner().invoke(train_main, [
        "--folder", str(ATT_FACES), "--init", init, "--arch", "edge-resnet", "--epochs", "1",
        "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])


def test_train_init_edge_starts_from_the_packaged_model(tmp_path):
    result = _train(tmp_path, "edge")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "best.pt").is_file()


@pytest.mark.parametrize("init, message", [
    ("not-a-model", "no such file, and not a packaged model"),
    ("sface", "not a supported architecture to start from"),
    ("junk.pt", "neither a siamese-edge checkpoint nor an ONNX export"),
])
def test_train_init_refuses_other_input_in_one_line(tmp_path, init, message):
    if init == "junk.pt":
        init = str(tmp_path / "junk.pt")
        (tmp_path / "junk.pt").write_bytes(b"junk")
    result = _train(tmp_path, init)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "load key" not in result.output


def _adapt(tmp_path, *extra: str):
    """Adapt on the 5 AT&T fixture people, checked on the 16 people of the LFW fixture."""
    from siamese.export.adapt import adapt_main

    return CliRunner().invoke(adapt_main, [
        str(ATT_FACES), "--model", "edge", "--out", str(tmp_path / "out"), "--steps", "2",
        "--check", str(LFW_MINI / "lfw-deepfunneled"), "--cache-dir", str(tmp_path / "cache"),
        *extra])


def test_adapt_refuses_a_model_that_does_not_beat_the_packaged_one(tmp_path):
    result = _adapt(tmp_path, "--margin", "1")  # no model can beat TAR by a whole point
    assert result.exit_code == 1, result.output
    assert "not shipped" in result.output and "siamese-calibrate" in result.output
    report = json.loads((tmp_path / "out" / "adapt_report.json").read_text())
    assert report["model"] is None and not report["gate"]["passed"]
    assert not list((tmp_path / "out").glob("*.onnx"))


def test_adapt_writes_a_model_its_threshold_and_report_when_the_gate_passes(tmp_path):
    result = _adapt(tmp_path, "--margin", "-1", "--far", "0.01")  # 64 check faces: FAR 1e-3 is
    # one or two of their impostor pairs, too few to show the design
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "adapt_report.json").read_text())
    model = Path(report["model"])
    assert model.is_file() and (tmp_path / "out" / "adapt_report.md").is_file()
    embedder = Embedder(model)
    assert embedder.info.threshold == pytest.approx(report["threshold"], abs=1e-6)
    assert report["gate"]["packaged"]["roc"]["far"] and report["gate"]["adapted"]["tar_at_far"] >= 0


def test_adapt_bad_input_is_one_line_exit_2(tmp_path):
    from siamese.export.adapt import adapt_main

    result = CliRunner().invoke(adapt_main, [str(tmp_path / "nowhere"), "--out",
                                             str(tmp_path / "o")])
    assert result.exit_code == 2 and "not found" in result.output


def test_adapt_without_a_check_folder_needs_six_people(tmp_path):
    from siamese.export.adapt import adapt_main

    result = CliRunner().invoke(adapt_main, [str(ATT_FACES), "--out", str(tmp_path / "o"),
                                             "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "at least 6 named people" in result.output


def _figures(tar: float, far: float, general: float | None = 0.97):
    from siamese.train.adapt_gate import ModelFigures

    return ModelFigures(tar_at_far=tar, far_at_threshold=far, threshold=0.5, auc=0.9,
                        tar_at_far_roc=tar, general_accuracy=general)


@pytest.mark.parametrize("adapted, passed, reason", [
    (_figures(0.30, 0.001), True, None),
    (_figures(0.21, 0.001), False, "does not beat"),
    (_figures(0.30, 0.0025), False, "exceeds 2x the design"),
    (_figures(0.30, 0.001, 0.96), False, "general-face accuracy drops"),
    (_figures(0.30, 0.001, None), True, None),
])
def test_gate_ships_only_a_better_and_no_less_safe_model(adapted, passed, reason):
    from siamese.train.adapt_gate import gate

    result = gate(_figures(0.20, 0.001), adapted, 1e-3, 0.02, 2.0, 0.005)
    assert result.passed is passed
    assert (reason is None and not result.reasons) or reason in " ".join(result.reasons)


def test_gate_rates_are_counted_on_people_the_threshold_was_not_calibrated_on():
    from siamese.train import metrics
    from siamese.train.adapt_gate import cross_validated_rates
    from siamese.train.calibration import embedding_calibration

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 10)
    centres = rng.normal(size=(8, 16))
    vectors = centres[labels] + rng.normal(scale=1.2, size=(80, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tar, far = cross_validated_rates(vectors, labels, 1e-2)
    half = set(np.random.default_rng(0).permutation(np.arange(8))[:4].tolist())
    first = np.isin(labels, sorted(half))
    counts = np.zeros(4)
    for calib in (first, ~first):
        threshold = embedding_calibration(vectors[calib], labels[calib], "cosine", 1e-2,
                                          require_evidence=False).far_threshold
        genuine, impostor = metrics.all_pair_scores(vectors[~calib], labels[~calib], "cosine")
        counts += [(genuine >= threshold).sum(), len(genuine), (impostor >= threshold).sum(),
                   len(impostor)]
    assert (tar, far) == pytest.approx((counts[0] / counts[1], counts[2] / counts[3]))
    assert 0 < tar < 1


def test_door_degradation_is_seeded_and_keeps_the_crop_shape(mini_crops):
    from siamese.train.degrade import degrade_batch

    crops = mini_crops[:4]
    first = degrade_batch(crops, np.random.default_rng(0))
    assert first.shape == crops.shape and first.dtype == np.uint8
    assert np.array_equal(first, degrade_batch(crops, np.random.default_rng(0)))
    assert not np.array_equal(first, degrade_batch(crops, np.random.default_rng(1)))
    assert np.abs(first.astype(int) - crops).mean() > 10


def test_blend_moves_weights_back_towards_the_start():
    from siamese.train.adapt import blend_weights

    start, model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    adapted = model.weight.detach().clone()
    blend_weights(model, start, 0.25)
    expected = start.weight + 0.25 * (adapted - start.weight)
    assert torch.allclose(model.weight, expected)
