"""The embedding engine a model's metadata names (runtime.engines): read, used, refused clearly."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from siamese.export.onnx_export import save_atomic, write_metadata
from siamese.runtime import Embedder
from siamese.runtime.engines import choose_engine
from siamese.runtime.errors import ModelError
from siamese.runtime.fingerprint import model_fingerprint
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import FaceDetector
from siamese.runtime.vision.imageio import read_image

MODELS = Path(__file__).resolve().parent.parent / "runtime" / "models"
FACES = sorted((Path(__file__).resolve().parent / "fixtures" / "lfw_mini"
                / "lfw-deepfunneled").glob("*/*_0001.jpg"))


def with_engine(source: Path, out: Path, engine: str) -> Path:
    model = onnx.load(str(source))
    write_metadata(model, replace(Embedder(source).info, engine=engine))
    save_atomic(model, out)
    return out


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    detector = FaceDetector()
    out = []
    for path in FACES[:6]:
        image = read_image(path)
        out.append(align_face(image, detector.detect(image)[0].landmarks))
    return np.stack(out)


def test_the_recorded_engine_is_used_and_keeps_the_fingerprint(tmp_path):
    source = MODELS / "siamese_edge.onnx"
    model = with_engine(source, tmp_path / "edge.onnx", "opencv")
    embedder = Embedder(model)
    assert embedder.info.engine == "opencv"
    assert embedder.engine.name == "opencv"
    assert model_fingerprint(model) == model_fingerprint(source)
    assert Embedder(model, engine="onnxruntime").engine.name == "onnxruntime"
    assert Embedder(model, providers=["CPUExecutionProvider"]).engine.name == "onnxruntime"


def test_engines_agree_on_the_fixture_faces(tmp_path, crops):
    model = with_engine(MODELS / "siamese_edge.onnx", tmp_path / "edge.onnx", "opencv")
    by_opencv = Embedder(model).embed(crops)
    by_onnxruntime = Embedder(model, engine="onnxruntime").embed(crops)
    assert len(by_opencv) == len(crops)
    cosine = (by_opencv * by_onnxruntime).sum(axis=1)
    assert cosine.min() > 0.9999


def test_an_engine_that_cannot_load_the_model_is_a_clear_error(tmp_path):
    # OpenCV's DNN engine does not load onnxruntime's INT8 graphs: an error, not a switch
    model = with_engine(MODELS / "siamese_edge.int8.onnx", tmp_path / "int8.onnx", "opencv")
    with pytest.raises(ModelError, match="OpenCV's DNN engine cannot load model") as error:
        Embedder(model)
    assert "\n" not in str(error.value)


def test_an_unknown_engine_is_refused(tmp_path):
    source = tmp_path / "edge.onnx"
    shutil.copy(MODELS / "siamese_edge.onnx", source)
    with pytest.raises(ModelError, match="unknown engine"):
        Embedder(source, engine="tensorrt")
    proto = onnx.load(str(source))
    proto.metadata_props.add(key="siamese.engine", value='"tensorrt"')
    onnx.save(proto, str(source))
    with pytest.raises(ModelError, match="engine must be one of"):
        Embedder(source)


def test_a_gpu_keeps_onnxruntime(monkeypatch):
    monkeypatch.setattr("siamese.runtime.engines.gpu_present", lambda: True)
    assert choose_engine("opencv", None, None) == "onnxruntime"
    monkeypatch.setattr("siamese.runtime.engines.gpu_present", lambda: False)
    assert choose_engine("opencv", None, None) == "opencv"
    assert choose_engine("", None, None) == "onnxruntime"
