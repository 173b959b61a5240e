"""Model fingerprints: measured figures may be rewritten, anything that decides may not."""

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from siamese.export.bench import BenchRow, record_figures
from siamese.export.onnx_export import save_atomic, write_metadata
from siamese.runtime import Embedder
from siamese.runtime.errors import ModelError
from siamese.runtime.fingerprint import model_fingerprint
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.storage.references import Template, load_template, save_template

EDGE = Path(__file__).resolve().parent.parent / "runtime" / "models" / "siamese_edge.onnx"


@pytest.fixture
def model(tmp_path) -> Path:
    return Path(shutil.copy(EDGE, tmp_path / "model.onnx"))


def test_recorded_figures_keep_the_fingerprint_and_templates_still_load(model, tmp_path):
    before = model_fingerprint(model)
    key = load_or_create_key(tmp_path / "key")
    save_template(Template("x", np.full((1, 128), 128 ** -0.5, np.float32), before),
                  tmp_path / "t.json", key)
    record_figures(model, BenchRow("m", "edge-resnet", "fp32", 3.6, "cpu", 1.5, 900.0, 0.97,
                                   0.86), threads=2)
    assert Embedder(model).info.measured["ms_per_face"] == 1.5  # the file did change
    assert model_fingerprint(model) == before == Embedder(model).fingerprint
    assert load_template(tmp_path / "t.json", model_fingerprint(model), key, 128).name == "x"


def test_a_changed_threshold_or_weight_is_another_model(model):
    before = model_fingerprint(model)
    proto = onnx.load(str(model))
    info = Embedder(model).info
    write_metadata(proto, replace(info, threshold=info.threshold - 0.2))
    save_atomic(proto, model)
    lowered = model_fingerprint(model)
    assert lowered != before
    weights = proto.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weights).copy()
    array.flat[0] += 1e-3
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    save_atomic(proto, model)
    assert model_fingerprint(model) not in (before, lowered)


def test_a_truncated_model_is_one_clear_error(model):
    model.write_bytes(model.read_bytes()[:1001])
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        model_fingerprint(model)
