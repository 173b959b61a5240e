"""Import a third-party ONNX embedder (e.g. OpenCV Zoo's SFace) as a siamese-edge model.

The graph is repaired and simplified so onnxruntime loads and runs it fast (only the real image
input stays a graph input, with a dynamic batch; every constant subgraph, such as the
dequantisation of block-quantised weights, is folded once into float32 initialisers), then it
gets our metadata: its Preprocess spec, thresholds calibrated on held-out people (every pair of
their faces, each person weighted equally, as for our own models), and its provenance. The
runtime, siamese-eval and siamese-bench then use it like our own exports.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from siamese.export.faces import FaceSets
from siamese.export.onnx_export import save_atomic, write_metadata
from siamese.export.parity import Gate, Parity, compare
from siamese.export.variants import FLOAT_KEEP_RECIPES, export_int8
from siamese.runtime.embedder import Embedder, file_fingerprint
from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.calibration import Calibration, embedding_calibration
from siamese.train.evaluate import pair_accuracy

log = logging.getLogger(__name__)

NON_CONSTANT_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike",
                              "RandomUniformLike", "Multinomial", "Bernoulli"})


@dataclass(frozen=True)
class ImportConfig:
    model: Path
    out: Path
    name: str  # recorded as the model's arch, e.g. "sface"
    preprocess: Preprocess
    provenance: str
    target_far: float = 1e-3
    fold: bool = True  # fold constant subgraphs (dequantised weights) into FP32 initialisers


def _only_image_input(model: onnx.ModelProto) -> str:
    """Keep the one graph input that a node reads and no initialiser feeds (stray inputs, such
    as SFace's listing of its weights, are dropped); its batch axis becomes dynamic."""
    initialisers = {i.name for i in model.graph.initializer}
    read = {name for node in model.graph.node for name in node.input}
    real = [i for i in model.graph.input if i.name not in initialisers and i.name in read
            and len(i.type.tensor_type.shape.dim) == 4]
    if len(real) != 1:
        raise ModelError(f"expected one 4-D image input, found {[i.name for i in real]}")
    image = onnx.ValueInfoProto()
    image.CopyFrom(real[0])
    image.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.input[:]
    model.graph.input.append(image)
    for output in model.graph.output:
        if output.type.tensor_type.shape.dim:
            output.type.tensor_type.shape.dim[0].dim_param = "batch"
    return image.name


def _fold_constants(model: onnx.ModelProto, input_name: str) -> int:
    """Evaluate every node that depends on initialisers only (once, with onnxruntime) and
    replace those nodes by initialisers holding their outputs. Returns the nodes folded."""
    known = {i.name for i in model.graph.initializer}
    constant_nodes = []
    for node in model.graph.node:  # ONNX graphs are stored in topological order
        if node.op_type not in NON_CONSTANT_OPS and all(not i or i in known for i in node.input):
            constant_nodes.append(node)
            known.update(node.output)
    if not constant_nodes:
        return 0
    folded_names = [o for n in constant_nodes for o in n.output]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in folded_names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    values = session.run(folded_names, {input_name: np.zeros(shape, np.float32)})
    consumed = {i for n in model.graph.node if n not in constant_nodes for i in n.input}
    consumed |= {o.name for o in model.graph.output}
    keep_nodes = [n for n in model.graph.node if n not in constant_nodes]
    del model.graph.node[:]
    model.graph.node.extend(keep_nodes)
    new = [numpy_helper.from_array(np.asarray(v), name)
           for name, v in zip(folded_names, values, strict=True) if name in consumed]
    still_used = {i for n in model.graph.node for i in n.input}
    initialisers = [i for i in model.graph.initializer if i.name in still_used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(initialisers + new)
    return len(constant_nodes)


def prepare_graph(path: Path, fold: bool = True) -> onnx.ModelProto:
    """The model with one dynamic-batch image input and (with `fold`) its constants folded.

    Unfolded, block-quantised weights stay 8-bit in the file (smaller, slower to run)."""
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelError(f"cannot read ONNX model {path}: {exc}") from None
    input_name = _only_image_input(model)
    folded = _fold_constants(model, input_name) if fold else 0
    log.info("%s: folded %d constant nodes", path, folded)
    onnx.checker.check_model(model)
    return model


def import_onnx(config: ImportConfig, held_out_crops: np.ndarray,
                held_out_labels: np.ndarray) -> tuple[Path, Calibration]:
    """Write `config.out/model.onnx` with metadata; thresholds from held-out people's crops.

    Returns the path and the calibration (thresholds, held-out AUC and pair counts).
    """
    model = prepare_graph(config.model, config.fold)
    outputs = model.graph.output[0].type.tensor_type.shape.dim
    dim = outputs[-1].dim_value if outputs else 0
    source = file_fingerprint(config.model)
    info = ModelInfo(preprocess=config.preprocess, embedding_dim=int(dim), metric="cosine",
                     threshold=0.5, threshold_far=config.target_far, arch=config.name,
                     source_sha256=source, version=metadata.version("siamese-edge"),
                     variant="imported", provenance=config.provenance)
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "model.onnx"
    write_metadata(model, info)
    save_atomic(model, path)
    calibration = embedding_calibration(Embedder(path).embed(held_out_crops), held_out_labels,
                                        info.metric, config.target_far)
    info = replace(info, threshold=calibration.far_threshold,
                   accuracy_threshold=calibration.accuracy_threshold)
    write_metadata(model, info)
    save_atomic(model, path)
    return path, calibration


IMPORT_INT8_GATE = Gate(mean_cosine=0.99, decision_agreement=0.995, max_accuracy_drop=0.002)


def _view1(embedder: Embedder, sets: FaceSets) -> float:
    return pair_accuracy(embedder.embed, sets.lfw_crops, sets.lfw_pairs, embedder.info.metric,
                         embedder.info.accuracy_threshold)


def quantise_import(fp32_path: Path, out: Path, sets: FaceSets, held_out_crops: np.ndarray,
                    held_out_labels: np.ndarray, gate: Gate = IMPORT_INT8_GATE,
                    recipes: tuple[str, ...] = FLOAT_KEEP_RECIPES) -> list[tuple[str, Parity]]:
    """Static per-channel QDQ INT8 of an imported FP32 model, calibrated on `sets.calibration`
    (training-side faces), gated against the FP32 file on `sets.parity` faces (every pair, at the
    FP32 FAR threshold) and on LFW View 1 (at the FP32 accuracy threshold).

    The `keep_float` recipes are tried in order (all nodes quantised first, then with more kept
    float) until one passes; only that file is written, with its thresholds recalibrated on the
    held-out people and its parity figures in the metadata. Returns every attempt's figures.
    """
    reference = Embedder(fp32_path)
    reference_figures = _reference_figures(reference, sets)
    attempts = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            candidate_path = Path(tmp) / f"int8-{recipe}.onnx"
            parity = _gated_int8(reference, reference_figures, sets, gate, candidate_path, recipe)
            attempts.append((recipe, parity))
            if parity.passed:
                _write_int8(candidate_path, out, reference.info, recipe, parity, held_out_crops,
                            held_out_labels)
                break
    return attempts


def _reference_figures(reference: Embedder, sets: FaceSets) -> tuple[np.ndarray, float | None]:
    """The FP32 file's parity-face embeddings and View 1 accuracy, computed once."""
    return reference.embed(sets.parity), _view1(reference, sets) if sets.lfw_pairs else None


def _gated_int8(reference: Embedder, reference_figures: tuple[np.ndarray, float | None],
                sets: FaceSets, gate: Gate, path: Path, recipe: str) -> Parity:
    """INT8 of the reference's file at `path` (`keep_float` recipe), gated against it."""
    info = reference.info
    export_int8(reference.path, info, path, info.preprocess(sets.calibration),
                input_name=reference.input_name, keep_float=recipe)
    candidate = Embedder(path)
    reference_parity, reference_view1 = reference_figures
    accuracy = (reference_view1, _view1(candidate, sets)) if sets.lfw_pairs else None
    parity = compare(reference_parity, candidate.embed(sets.parity), info.metric,
                     info.threshold, gate, accuracy)
    if not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node):
        parity = replace(parity, failures=(*parity.failures, "no node was quantised"))
    return parity


def _parity_figures(parity: Parity, against: str, recipe: str) -> dict:
    measured = {"parity_mean_cosine": parity.mean_cosine,
                "parity_min_cosine": parity.min_cosine,
                "parity_decision_agreement": parity.decision_agreement,
                "parity_pairs": parity.pairs, "parity_against": against,
                "int8_kept_float": recipe}
    if parity.accuracy is not None:
        measured.update(lfw_view1_fp32=parity.reference_accuracy, lfw_view1=parity.accuracy)
    return measured


def _write_int8(candidate_path: Path, out: Path, info: ModelInfo, recipe: str, parity: Parity,
                held_out_crops: np.ndarray, held_out_labels: np.ndarray) -> None:
    """The passing INT8 file at `out`, thresholds recalibrated, parity figures recorded."""
    calibration = embedding_calibration(Embedder(candidate_path).embed(held_out_crops),
                                        held_out_labels, info.metric, info.threshold_far)
    model = onnx.load(str(candidate_path))
    write_metadata(model, replace(info.with_variant("int8"), threshold=calibration.far_threshold,
                                  accuracy_threshold=calibration.accuracy_threshold,
                                  measured=_parity_figures(parity, "fp32 import", recipe)))
    save_atomic(model, out)


def requantise(fp32_path: Path, out: Path, sets: FaceSets, gate: Gate) -> Parity:
    """INT8 again from one of our FP32 files (a packaged model), gated like `quantise_import`'s
    first recipe; its thresholds are kept (they were chosen on the FP32 file by the security
    rule, tools/recalibrate.py). `out` is written only when the gate passes."""
    reference = Embedder(fp32_path)
    info = reference.info
    if info.variant != "fp32":
        raise ModelError(f"{fp32_path} is a {info.variant} file; requantise an fp32 one")
    with tempfile.TemporaryDirectory() as tmp:
        candidate_path = Path(tmp) / "int8.onnx"
        parity = _gated_int8(reference, _reference_figures(reference, sets), sets, gate,
                             candidate_path, "none")
        if parity.passed:
            model = onnx.load(str(candidate_path))
            write_metadata(model, replace(info.with_variant("int8"),
                                          measured=_parity_figures(parity, "fp32", "none")))
            save_atomic(model, out)
    return parity
