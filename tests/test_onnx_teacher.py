"""The torch-run ONNX teacher (online distillation targets of augmented views)."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from siamese.runtime import Embedder, Preprocess
from siamese.runtime.errors import ConfigError, ModelError
from siamese.runtime.model_info import ModelInfo
from siamese.train.config import PRESETS
from siamese.train.lfw import LFW
from siamese.train.onnx_teacher import OnnxTeacher
from siamese.train.trainer import Trainer

from .conftest import LFW_MINI

SFACE = Path(__file__).resolve().parent.parent / "runtime" / "models" / "sface.onnx"


def _info(size: int) -> ModelInfo:
    return ModelInfo(preprocess=Preprocess(size=size, color="rgb", mean=(0.5,) * 3,
                                           std=(0.25,) * 3),
                     embedding_dim=16, metric="cosine", threshold=0.5, threshold_far=1e-3,
                     arch="tiny", source_sha256="", version="1", variant="fp32")


def tiny_teacher(path: Path, size: int = 16, op: str = "Relu") -> Path:
    """Conv (asymmetric pads) with block-quantised weights, BN, PReLU, Reshape, Gemm (transB)."""
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8)
    scales = rng.uniform(0.001, 0.01, (8, 1, 3, 3)).astype(np.float32)  # blocks of 3 on axis 1
    init = [numpy_helper.from_array(a, n) for a, n in (
        (weights, "wq"), (scales, "ws"), (rng.normal(size=8).astype(np.float32), "b"),
        (rng.uniform(0.5, 2, 8).astype(np.float32), "gamma"),
        (rng.normal(size=8).astype(np.float32), "beta"),
        (rng.normal(size=8).astype(np.float32), "mean"),
        (rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
        (np.full((8, 1, 1), 0.1, np.float32), "slope"),
        (np.array([0, -1], np.int64), "shape"),
        (rng.normal(size=(16, 8 * (size // 2) ** 2)).astype(np.float32) * 0.1, "fc"),
        (rng.normal(size=16).astype(np.float32), "fcb"))]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=1, block_size=3),
             helper.make_node("Conv", ["data", "w", "b"], ["c"], pads=[0, 0, 1, 1],
                              strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"],
                              ["n"], epsilon=1e-3),
             helper.make_node("PRelu", ["n", "slope"], ["p"]),
             helper.make_node(op, ["p"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["out"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                      ["batch", 3, size, size])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 16])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    helper.set_model_props(model, _info(size).to_metadata())
    onnx.save(model, str(path))
    return path


def test_the_torch_teacher_matches_onnxruntime_on_the_same_graph(tmp_path):
    path = tiny_teacher(tmp_path / "tiny.onnx")
    views = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    teacher = OnnxTeacher(path)
    x = teacher.model_input(views).numpy()
    np.testing.assert_allclose(x, (views.numpy() - 0.5) / 0.25, rtol=1e-6)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"data": x})[0]
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(teacher(views).numpy(), reference, atol=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_the_packaged_int8_sface_runs_in_torch_as_onnxruntime_runs_it(mini_faces):
    """Activations fake-quantised as the file says: the runtime's own embeddings (measured on
    64 LFW DevTest faces: mean cosine 0.99954, min 0.99814); with float activations the INT8
    weights alone (mean 0.996 against the INT8 runtime)."""
    records = mini_faces.records[:12]
    crops = np.stack([mini_faces.crop(r.path) for r in records])
    runtime = Embedder(SFACE).embed(crops)
    runtime /= np.linalg.norm(runtime, axis=1, keepdims=True)
    views = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    quantised = (OnnxTeacher(SFACE, float_activations=False)(views).numpy() * runtime).sum(1)
    assert quantised.mean() > 0.999 and quantised.min() > 0.995
    float_activations = (OnnxTeacher(SFACE)(views).numpy() * runtime).sum(1)
    assert 0.98 < float_activations.mean() < quantised.mean()


def test_unsupported_operators_and_missing_metadata_are_named(tmp_path):
    with pytest.raises(ModelError, match="Softplus"):
        OnnxTeacher(tiny_teacher(tmp_path / "softplus.onnx", op="Softplus"))
    plain = onnx.load(str(tiny_teacher(tmp_path / "tiny.onnx")))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="metadata"):
        OnnxTeacher(tmp_path / "plain.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(ModelError, match="cannot read"):
        OnnxTeacher(tmp_path / "junk.onnx")


def test_online_distillation_learns_the_teachers_view_of_each_augmented_face(mini_faces,
                                                                               tmp_path):
    """The student (64 px) is pulled towards the teacher's embedding of the same augmented
    views (resized to the teacher's 16 px): the loss falls over epochs."""
    records = mini_faces.select(set(LFW(LFW_MINI).view1_train_people))
    teacher = tiny_teacher(tmp_path / "tiny.onnx")
    config = PRESETS["edge-distill"].updated(arch="edge-resnet-s", embedding_dim=16,
                                             distill_online=str(teacher), p=4, k=4, lr=0.05,
                                             warmup_epochs=0, seed=1)
    trainer = Trainer(config, mini_faces, records, tmp_path, None, progress=False)
    assert trainer.objective.online_teacher.spec.size == 16
    losses = [trainer.run_epoch(epoch)["loss"] for epoch in range(8)]
    assert losses[-1] < losses[0]


def test_online_teacher_conflicts_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        PRESETS["edge-distill"].updated(distill="t.npz", distill_online="t.onnx").validate()
    with pytest.raises(ConfigError, match="fixed triplets"):
        PRESETS["seed"].updated(distill_online="t.onnx").validate()
