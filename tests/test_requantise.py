"""INT8 again from the packaged FP32 edge model: 7-bit weights, gated, thresholds kept."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from siamese.export.faces import load_face_sets
from siamese.export.formats import FORMATS
from siamese.export.import_model import requantise
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import ModelError
from siamese.runtime.model_zoo import PACKAGED

from .conftest import ATT_FACES


@pytest.fixture(scope="module")
def face_sets(tmp_path_factory):
    return load_face_sets(None, ATT_FACES, tmp_path_factory.mktemp("cache"), set(), 40, 40)


def test_requantised_edge_passes_its_gate_with_seven_bit_weights(face_sets, tmp_path):
    fp32 = PACKAGED["edge-fp32"].path
    out = tmp_path / "edge.int8.onnx"
    parity = requantise(fp32, out, face_sets, FORMATS["int8"].gate)
    assert parity.passed and parity.mean_cosine > 0.99, parity
    reference, candidate = Embedder(fp32).info, Embedder(out).info
    assert candidate.variant == "int8" and candidate.threshold == reference.threshold
    assert candidate.measured["parity_mean_cosine"] == pytest.approx(parity.mean_cosine)
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert weights and max(int(np.abs(w.astype(int)).max()) for w in weights) == 64  # 7-bit


def test_requantise_refuses_an_int8_source_and_writes_nothing(face_sets, tmp_path):
    out = tmp_path / "again.onnx"
    with pytest.raises(ModelError, match="requantise an fp32"):
        requantise(PACKAGED["edge"].path, out, face_sets, FORMATS["int8"].gate)
    assert not out.exists()
