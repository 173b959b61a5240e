import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from siamese.export.cli import main as export_main
from siamese.export.exporter import model_info
from siamese.export.formats import FORMATS
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import ModelError
from siamese.train.checkpoint import Checkpoint
from siamese.train.config import PRESETS
from siamese.train.embedding import crop_embedder
from siamese.train.lfw import LFW
from siamese.train.trainer import Trainer

from .conftest import ATT_FACES, LFW_MINI


@pytest.fixture(scope="module")
def checkpoint(mini_faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    # One epoch at lr 0.05 collapsed every fixture face to cosine > 0.997, so the parity
    # decisions flipped on noise (warpAffine's last bit moved them between OpenCV 4 and 5).
    config = PRESETS["edge"].updated(arch="edge-resnet-s", epochs=3, warmup_epochs=0, p=4, k=4,
                                     lr=0.01)
    records = mini_faces.select(set(LFW(LFW_MINI).view1_train_people))
    Trainer(config, mini_faces, records, out, None, progress=False).run()
    return out / "best.pt"


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    # A three-epoch fixture model scores many pairs close to its threshold, so a few of the 105
    # parity pairs may flip under INT8 (98.1% agree on OpenCV 4.14's crops): relax agreement.
    result = CliRunner().invoke(export_main, [
        str(checkpoint), "--out", str(out), "--fp16", "--int8", "--torchscript",
        "--calib", str(ATT_FACES), "--cache-dir", str(out / "cache"),
        "--int8-min-agreement", "0.9"])
    return out, result


def test_export_writes_four_gated_files(exported):
    out, result = exported
    assert result.exit_code == 0, result.output
    for name in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "model.torchscript.pt"):
        assert (out / name).is_file(), name
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] and len(report["variants"]) == 4
    assert "int8" in result.output and "FAIL" not in result.output


def test_onnx_matches_pytorch_and_metadata_round_trips(exported, checkpoint, mini_faces):
    out, _ = exported
    state = Checkpoint.load(checkpoint)
    crops = np.stack([np.asarray(mini_faces.crops[r.row]) for r in mini_faces.records[:20]])
    reference = crop_embedder(state.build_model(), state.preprocess, "cpu")(crops)
    embedder = Embedder(out / "model.onnx")
    cosine = (reference * embedder.embed(crops)).sum(1)
    assert cosine.min() > 0.9999
    expected = model_info(state, checkpoint)
    assert embedder.info == expected
    assert Embedder(out / "model.int8.onnx").info.variant == "int8"
    inputs = onnx.load(str(out / "model.onnx")).graph.input[0]
    assert inputs.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert len(embedder.embed(crops[:7])) == 7


def test_torchscript_loads_and_matches(exported, checkpoint, mini_faces):
    """The documented loader: metadata from the file, embeddings equal to PyTorch's."""
    from siamese.export.torchscript import load_torchscript

    out, _ = exported
    state = Checkpoint.load(checkpoint)
    info = model_info(state, checkpoint)
    crops = np.stack([np.asarray(mini_faces.crops[r.row]) for r in mini_faces.records[:8]])
    model = load_torchscript(out / "model.torchscript.pt")
    assert model.info.arch == "edge-resnet-s" and model.info.variant == "torchscript"
    assert model.info.threshold == info.threshold
    reference = crop_embedder(state.build_model(), info.preprocess, "cpu")(crops)
    np.testing.assert_allclose(model.embed(crops), reference, atol=1e-5)


def test_runtime_points_a_torchscript_model_to_the_loader(exported, tmp_path):
    out, _ = exported
    result = subprocess.run([sys.executable, "-c", "from siamese.runtime.commands.verify import "
                             "compare_main; compare_main()", "--model",
                             str(out / "model.torchscript.pt"), "a.jpg", "b.jpg"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "load_torchscript" in result.stderr and result.stderr.count("\n") == 1


def test_a_damaged_variant_fails_its_gate_and_is_removed(checkpoint, tmp_path, monkeypatch):
    honest = FORMATS["fp16"]

    def damaged_export(source, path):
        honest.write(source, path)
        model = onnx.load(str(path))
        weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        values = onnx.numpy_helper.to_array(weight).copy()
        values.flat[::3] *= -3.0  # a perturbed weight tensor
        weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
        onnx.save(model, str(path))
        return path

    monkeypatch.setitem(FORMATS, "fp16", replace(honest, write=damaged_export))
    result = CliRunner().invoke(export_main, [
        str(checkpoint), "--out", str(tmp_path), "--fp16", "--calib", str(ATT_FACES),
        "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 1
    assert "fp16 FAILED its gate" in result.output
    assert (tmp_path / "model.onnx").is_file() and not (tmp_path / "model.fp16.onnx").exists()


def test_model_without_metadata_is_refused(tmp_path):
    model = torch.nn.Linear(4, 2)
    path = tmp_path / "plain.onnx"
    torch.onnx.export(model, (torch.zeros(1, 4),), str(path), dynamo=False)
    with pytest.raises(ModelError, match="lacks siamese-edge metadata"):
        Embedder(path)


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path):
    result = CliRunner().invoke(export_main, [str(tmp_path / "none.pt")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: checkpoint not found: {tmp_path / 'none.pt'}"


def test_eval_scores_an_exported_onnx_model(exported, tmp_path):
    from siamese.train.cli import eval_main

    out, _ = exported
    result = CliRunner().invoke(eval_main, [
        str(out / "model.int8.onnx"), "--lfw-root", str(LFW_MINI), "--cache-dir",
        str(tmp_path / "cache"), "--out", str(tmp_path / "eval"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["variant"] == "int8" and report["view1"]["pairs"] == 16


def test_mirror_averaged_model_exports_once_and_ignores_mirroring(checkpoint, exported, tmp_path,
                                                                   mini_faces):
    import subprocess
    import sys
    from pathlib import Path

    flipped = tmp_path / "flip.pt"
    flipped.write_bytes(checkpoint.read_bytes())
    tool = Path(__file__).parent.parent / "tools" / "recalibrate.py"
    run = subprocess.run([sys.executable, str(tool), str(flipped), "--faces",
                          str(mini_faces.directory), "--flip-average", "--device", "cpu",
                          "--allow-unproven-far"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert Checkpoint.load(flipped).flip_average is True
    result = CliRunner().invoke(export_main, [str(flipped), "--out", str(tmp_path / "out"),
                                              "--calib", str(ATT_FACES), "--cache-dir",
                                              str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    model = tmp_path / "out" / "model.onnx"
    embedder = Embedder(model)
    assert embedder.info.flip_average is True
    # each weight is stored once: the file is about the size of the plain model's
    plain = exported[0] / "model.onnx"
    assert model.stat().st_size < 1.1 * plain.stat().st_size
    crops = np.stack([np.asarray(mini_faces.crops[r.row]) for r in mini_faces.records[:6]])
    np.testing.assert_allclose(embedder.embed(crops), embedder.embed(crops[:, :, ::-1]),
                               atol=1e-5)
    assert not Embedder(plain).info.flip_average


def _third_party_model(path):
    """A tiny embedder as third parties ship them: fixed batch 1, a stray 4-D input that no
    node reads, and block-quantised weights dequantised in the graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-100, 100, size=(16, 3, 8, 8)).astype(np.int8)
    scales = np.full((16, 3, 8, 1), 0.002, np.float32)
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], axis=3,
                              block_size=8),
             helper.make_node("Conv", ["data", "w"], ["conv"], strides=[8, 8]),
             helper.make_node("Flatten", ["conv"], ["fc1"])]
    graph = helper.make_graph(
        nodes, "third_party",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16]),
         helper.make_tensor_value_info("stray_weight", TensorProto.FLOAT, [16, 3, 8, 8])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(scales, "w_scale")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(path))
    return path


def _import_tiny(source, tmp_path, *extra):
    """siamese-import of the tiny third-party model, thresholds on the AT&T fixture."""
    from siamese.export.cli import import_main

    return CliRunner().invoke(import_main, [
        str(source), "--out", str(tmp_path / "imported"), "--name", "tiny", "--provenance",
        "test model, CC0", "--size", "16", "--mean", "0,0,0", "--std", "1/255,1/255,1/255",
        "--calib", str(ATT_FACES), "--cache-dir", str(tmp_path / "cache"), "--far", "1e-2",
        *extra])


def test_import_wraps_a_third_party_model_for_the_runtime(tmp_path):

    source = _third_party_model(tmp_path / "third.onnx")
    result = _import_tiny(source, tmp_path)
    # (the fixture's 360 held-out impostor pairs show FAR 1e-2, not 1e-3: it needs 2,995)
    assert result.exit_code == 0, result.output
    embedder = Embedder(tmp_path / "imported" / "model.onnx")
    assert embedder.info.arch == "tiny" and embedder.info.provenance == "test model, CC0"
    assert embedder.info.embedding_dim == 64 and 0 < embedder.info.threshold < 1
    assert not any(n.op_type == "DequantizeLinear"
                   for n in onnx.load(str(tmp_path / "imported" / "model.onnx")).graph.node)
    crops = np.random.default_rng(1).integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    vectors = embedder.embed(crops)  # a dynamic batch now
    assert vectors.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("formats", [("int8",), ("fp32", "png"), ("fp32", "int8", "int8")])
def test_export_formats_are_rows_of_the_format_table(tmp_path, formats):
    from siamese.export.config import ExportConfig
    from siamese.runtime.errors import ConfigError

    assert set(FORMATS) == {"fp32", "fp16", "int8", "torchscript"}
    assert len({row.suffix for row in FORMATS.values()}) == len(FORMATS)
    with pytest.raises(ConfigError):
        ExportConfig(tmp_path / "best.pt", tmp_path, formats=formats)


def test_int8_float_recipes_name_depthwise_and_first_convolutions():
    from onnx import TensorProto, helper, numpy_helper
    from siamese.export.variants import FLOAT_KEEP_RECIPES, float_nodes

    weights = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in
               (("w1", (4, 3, 3, 3)), ("w2", (4, 1, 3, 3)), ("w3", (8, 4, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="first"),
             helper.make_node("Conv", ["a", "w2"], ["b"], name="depthwise", group=4),
             helper.make_node("Conv", ["b", "w3"], ["y"], name="pointwise")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    model = helper.make_model(graph)
    assert [float_nodes(model, r) for r in FLOAT_KEEP_RECIPES] == [
        [], ["depthwise"], ["depthwise", "first"]]
    with pytest.raises(ValueError, match="keep_float"):
        float_nodes(model, "everything")


def test_import_int8_writes_the_first_recipe_that_passes(tmp_path):

    source = _third_party_model(tmp_path / "third.onnx")
    result = _import_tiny(source, tmp_path, "--int8")
    assert result.exit_code == 0, result.output
    # one conv, no depthwise: quantising every node holds the gate, so nothing else is tried
    assert result.output.count("parity against FP32") == 1
    info = Embedder(tmp_path / "imported" / "model.int8.onnx").info
    assert info.variant == "int8" and info.measured["int8_kept_float"] == "none"
    assert info.measured["parity_mean_cosine"] >= 0.99


def test_import_int8_tries_every_recipe_and_writes_nothing_when_none_passes(tmp_path):
    from siamese.export.faces import FaceSets
    from siamese.export.import_model import ImportConfig, import_onnx, quantise_import
    from siamese.export.parity import Gate
    from siamese.export.variants import FLOAT_KEEP_RECIPES
    from siamese.runtime.vision.preprocess import Preprocess

    source = _third_party_model(tmp_path / "third.onnx")
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 255, (40, 112, 112, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(10), 4)  # 720 impostor pairs: enough to show FAR 1e-2
    config = ImportConfig(source, tmp_path / "imported", "tiny",
                          Preprocess(size=16, mean=(0, 0, 0), std=(1 / 255,) * 3),
                          "test model, CC0", 1e-2)
    fp32, _ = import_onnx(config, crops, labels)
    out = tmp_path / "imported" / "model.int8.onnx"
    attempts = quantise_import(fp32, out, FaceSets(crops[:12], crops[12:]), crops, labels,
                               gate=Gate(mean_cosine=1.0))  # INT8 noise keeps it under 1
    assert [recipe for recipe, _ in attempts] == list(FLOAT_KEEP_RECIPES)
    assert all(not parity.passed for _, parity in attempts) and not out.exists()
    # the tiny model's only convolution is its first: the last recipe quantises nothing
    assert "no node was quantised" in attempts[-1][1].failures


def test_detector_parity_matches_faces_by_overlap_and_gates_recall_and_landmarks():
    from siamese.export.detector import detector_parity

    face = np.array([10, 10, 50, 60, *np.arange(10) + 20], np.float32)
    other = np.array([100, 100, 40, 40, *np.arange(10) + 110], np.float32)
    reference = [np.stack([face, other]), face[None], np.zeros((0, 14), np.float32)]
    # the same faces in the other score order, and half a pixel off: parity passes
    nudged = face + np.r_[np.zeros(4), np.full(10, 0.5)].astype(np.float32)
    same = detector_parity(reference, [np.stack([other, nudged]), face[None], reference[2]])
    assert same.passed and same.mean_iou == pytest.approx(1.0)
    # mean over the two images with faces: one nudged by (0.5, 0.5), one exact
    assert same.mean_landmark_shift_px == pytest.approx(np.hypot(0.5, 0.5) / 2, abs=1e-5)
    # a missed face and a 5-pixel landmark error fail, each with its reason
    shifted = face + np.r_[np.zeros(4), np.full(10, 5.0)].astype(np.float32)
    worse = detector_parity(reference, [shifted[None], np.zeros((0, 14), np.float32),
                                        reference[2]])
    assert not worse.passed and worse.recall < worse.reference_recall
    assert any("recall" in f for f in worse.failures)
    assert any("landmark shift" in f for f in worse.failures)
    with pytest.raises(ValueError):
        detector_parity(reference, reference[:2])


def test_quantised_detector_still_finds_the_fixture_faces(tmp_path):
    from siamese.export.detector import quantise_detector
    from siamese.runtime.vision.detector import YUNET_PATH, FaceDetector
    from siamese.runtime.vision.imageio import read_image

    photos = sorted(ATT_FACES.rglob("*.pgm"))
    out = quantise_detector(YUNET_PATH, tmp_path / "yunet.int8.onnx", photos[:8])
    graph = onnx.load(str(out)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    detector = FaceDetector(out)
    assert detector.engine == "opencv"  # the packaged file's engine record is not carried over
    assert all(detector.detect(read_image(p)) for p in photos[8:14])
    with pytest.raises(ValueError, match="4 calibration photos"):
        quantise_detector(YUNET_PATH, tmp_path / "x.onnx", photos[:2])


def test_recalibrate_rewrites_an_onnx_models_thresholds_by_the_varied_faces_rule(tmp_path):
    from siamese.train.face_cache import open_prepared

    source = _third_party_model(tmp_path / "third.onnx")
    result = _import_tiny(source, tmp_path)
    assert result.exit_code == 0, result.output
    model = tmp_path / "imported" / "model.onnx"
    before = Embedder(model).info
    (cache,) = (tmp_path / "cache").rglob("folder-*")
    people = sorted({r.identity for r in open_prepared(cache).records})
    people_file = tmp_path / "people.txt"
    people_file.write_text(f"{len(people)}\n" + "".join(f"{p}\t6\n" for p in people))
    tool = Path(__file__).parent.parent / "tools" / "recalibrate.py"
    args = [sys.executable, str(tool), str(model), "--faces", str(cache)]
    assert subprocess.run(args, capture_output=True, text=True).returncode == 2  # no --people
    run = subprocess.run([*args, "--people", str(people_file), "--varied-faces", str(cache),
                          "--varied-half", "all"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    after = Embedder(model).info
    # the varied set is the same faces with every pair taken as an impostor pair, genuine
    # pairs included: its FAR threshold is higher, and the higher one is kept
    assert after.threshold > before.threshold and "varied faces: 0." in run.stdout
    assert after.accuracy_threshold == pytest.approx(before.accuracy_threshold, abs=1e-6)
