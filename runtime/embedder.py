"""ONNX embedding model: reads its own metadata, preprocesses aligned crops, returns embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from siamese.runtime.engines import ONNXRUNTIME, OnnxRuntimeEngine, OpenCVEngine, choose_engine
from siamese.runtime.errors import ModelError
from siamese.runtime.fingerprint import model_fingerprint, read_onnx_header
from siamese.runtime.model_info import ModelInfo


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_graph(session: ort.InferenceSession, info: ModelInfo, source: str) -> None:
    """Refuse a model whose graph input or output disagrees with its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"{source}: an embedding model takes one input and gives one output "
                         f"(this one has {len(inputs)} inputs, {len(outputs)} outputs)")
    if inputs[0].type != "tensor(float)":
        raise ModelError(f"{source}: input type {inputs[0].type}, the metadata needs float32")
    expected = (None, *info.preprocess.input_shape)
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or any(isinstance(got, int) and want is not None and got != want
                              for got, want in zip(shape, expected, strict=True)):
        raise ModelError(f"{source}: graph input {list(shape)} disagrees with the metadata's "
                         f"preprocess {list(expected[1:])} ({info.preprocess.layout})")
    out = tuple(outputs[0].shape)
    if len(out) != 2 or (isinstance(out[1], int) and out[1] != info.embedding_dim):
        raise ModelError(f"{source}: graph output {list(out)} disagrees with the metadata's "
                         f"embedding_dim {info.embedding_dim}")


def _is_torchscript(path: Path) -> bool:
    """TorchScript files are zip archives (.pt); ONNX files are protobuf."""
    with open(path, "rb") as handle:
        return path.suffix in (".pt", ".pth") or handle.read(2) == b"PK"


class Embedder:
    """An exported embedding model run by the engine its metadata records (runtime.engines;
    onnxruntime when none is recorded, when providers are named or when a GPU is present).

    >>> embedder = Embedder("model.onnx")
    >>> vectors = embedder.embed(crops)  # aligned BGR uint8 crops (N, 112, 112, 3)
    """

    def __init__(self, model_path: str | Path, providers: Sequence[str] | None = None,
                 threads: int = 0, batch_size: int = 32, engine: str | None = None) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        if _is_torchscript(self.path):
            raise ModelError(f"{self.path} is a TorchScript file: the runtime runs the ONNX "
                             f"exports (model.onnx, model.int8.onnx); to use TorchScript from "
                             f"Python, siamese.export.torchscript.load_torchscript (needs "
                             f"the train extra: pip install \".[train]\" in the source tree)")
        metadata, input_name = read_onnx_header(self.path)
        self.info = ModelInfo.from_metadata(metadata, source=str(self.path))
        name = choose_engine(self.info.engine, engine, providers)
        if name == ONNXRUNTIME:
            self.engine = OnnxRuntimeEngine(self.path, providers, threads)
            check_graph(self.engine.session, self.info, str(self.path))
        else:
            self.engine = OpenCVEngine(self.path, input_name, threads)
        self.input_name = input_name
        self.fixed_batch = self.engine.fixed_batch
        # a graph with a fixed batch size (some third-party models) is fed exactly that many
        self.batch_size = self.fixed_batch or batch_size
        self.fingerprint = model_fingerprint(self.path)

    @property
    def providers(self) -> list[str]:
        return self.engine.providers

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Embeddings of preprocessed float32 inputs, in batches."""
        outputs = [self._run_batch(inputs[i:i + self.batch_size])
                   for i in range(0, len(inputs), self.batch_size)]
        vectors = np.concatenate(outputs).astype(np.float32) if outputs else np.zeros(
            (0, self.info.embedding_dim), np.float32)
        if vectors.shape[1:] != (self.info.embedding_dim,) or not np.isfinite(vectors).all():
            raise ModelError(f"{self.path} produced embeddings of shape {vectors.shape[1:]} or "
                             f"non-finite values")
        if self.info.metric == "cosine":  # the graph normalises; renormalise after fp16/int8
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        return vectors

    def _run_batch(self, batch: np.ndarray) -> np.ndarray:
        count = len(batch)
        if self.fixed_batch and count < self.fixed_batch:  # pad the last, short batch
            padding = np.zeros((self.fixed_batch - count, *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, padding])
        return self.engine.run(batch)[:count]

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of aligned BGR uint8 crops, one (H, W, 3) or a batch."""
        return self.run(self.info.preprocess(crops))
