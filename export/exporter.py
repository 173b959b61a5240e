"""One export entry: every requested format written, compared with PyTorch, and gated."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from siamese.export import variants
from siamese.export.config import ExportConfig
from siamese.export.faces import FaceSets, load_face_sets
from siamese.export.onnx_export import export_fp32
from siamese.export.parity import Parity, compare
from siamese.export.torchscript import load_torchscript
from siamese.runtime.embedder import Embedder, file_fingerprint
from siamese.runtime.errors import ModelError
from siamese.runtime.fileio import write_text_atomic
from siamese.runtime.model_info import ModelInfo
from siamese.train.checkpoint import build_model, checkpoint_preprocess, load_checkpoint
from siamese.train.embedding import crop_embedder
from siamese.train.evaluate import pair_accuracy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """One row of the format table: file suffix and what embeds crops with the written file."""

    suffix: str
    description: str


FORMATS: dict[str, Format] = {
    "fp32": Format(".onnx", "ONNX FP32, graph-optimised"),
    "fp16": Format(".fp16.onnx", "ONNX FP16 (float32 inputs and outputs), for GPUs"),
    "int8": Format(".int8.onnx", "ONNX INT8, static per-channel QDQ"),
    "torchscript": Format(".torchscript.pt", "TorchScript, traced"),
}


@dataclass
class VariantResult:
    name: str
    path: Path
    size_bytes: int
    parity: Parity

    def to_dict(self) -> dict:
        return {"variant": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
                **self.parity.to_dict()}


@dataclass
class ExportReport:
    checkpoint: Path
    info: ModelInfo
    results: list[VariantResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.parity.passed for result in self.results)

    def to_dict(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "model": self.info.to_dict(),
                "variants": [result.to_dict() for result in self.results], "passed": self.passed}


def package_version() -> str:
    try:
        return metadata.version("siamese-edge")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def latest_checkpoint(runs: Path = Path("runs")) -> Path:
    """The most recently written best.pt under runs/."""
    found = sorted(runs.glob("**/best.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ModelError(f"no checkpoint given and none found under {runs}/ (train one with "
                         "siamese-train, or name a checkpoint)")
    return found[-1]


def model_info(state: dict, checkpoint: Path) -> ModelInfo:
    calibration = state["calibration"]
    return ModelInfo(preprocess=checkpoint_preprocess(state),
                     embedding_dim=int(state["embedding_dim"]), metric=state["metric"],
                     threshold=float(calibration["far_threshold"]),
                     threshold_far=float(calibration["target_far"]), arch=state["arch"],
                     source_sha256=file_fingerprint(checkpoint), version=package_version(),
                     variant="fp32",
                     accuracy_threshold=float(calibration["accuracy_threshold"]),
                     flip_average=bool(state.get("flip_average", False)))


def _lfw_accuracy(embed: Callable[[np.ndarray], np.ndarray], faces: FaceSets, metric: str,
                  threshold: float) -> float:
    return pair_accuracy(embed, faces.lfw_crops, faces.lfw_pairs, metric, threshold)


def export_checkpoint(config: ExportConfig) -> ExportReport:
    """Write FP32 ONNX (always) and the requested variants; gate each against PyTorch.

    A variant that fails its gate is deleted and recorded as failed in the report.
    """
    state = load_checkpoint(config.checkpoint)
    model = build_model(state)
    info = model_info(state, config.checkpoint)
    lfw_root = config.lfw_root
    source = state.get("source") or {}
    if lfw_root is None and config.calib_dir is None and source.get("kind") == "lfw" \
            and Path(source["root"]).is_dir():
        lfw_root = Path(source["root"])
        log.info("calibration and parity faces from the training LFW at %s", lfw_root)
    faces = load_face_sets(lfw_root, config.calib_dir, config.cache_dir,
                           set(state["train_people"]), config.calib_faces, config.parity_faces,
                           config.seed)
    reference_embed = crop_embedder(model, info.preprocess, "cpu")
    reference = reference_embed(faces.parity)
    accuracy_threshold = info.accuracy_threshold
    reference_accuracy = (_lfw_accuracy(reference_embed, faces, info.metric, accuracy_threshold)
                          if faces.lfw_pairs else None)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(config.checkpoint, info)
    fp32_path = config.out_dir / f"model{FORMATS['fp32'].suffix}"
    requested = ["fp32"] + [name for name in ("fp16", "int8", "torchscript")
                            if getattr(config, name)]
    for name in requested:
        path = config.out_dir / f"model{FORMATS[name].suffix}"
        if name == "fp32":
            export_fp32(model, info, path, config.opset)
        elif name == "fp16":
            variants.export_fp16(fp32_path, info, path)
        elif name == "int8":
            variants.export_int8(fp32_path, info, path, info.preprocess(faces.calibration))
        else:
            variants.export_torchscript(model, info, path)
        embed = (load_torchscript(path).embed if name == "torchscript"
                 else Embedder(path, providers=["CPUExecutionProvider"]).embed)
        accuracy = ((reference_accuracy, _lfw_accuracy(embed, faces, info.metric,
                                                       accuracy_threshold))
                    if faces.lfw_pairs else None)
        parity = compare(reference, embed(faces.parity), info.metric, info.threshold,
                         config.gates[name], accuracy)
        report.results.append(VariantResult(name, path, path.stat().st_size, parity))
        if not parity.passed:
            log.warning("%s failed its parity gate: %s", name, "; ".join(parity.failures))
            path.unlink()
            if name == "fp32":
                break  # every other variant derives from a faithful FP32 model
    write_text_atomic(config.out_dir / "export_report.json",
                      json.dumps({**report.to_dict(), "config": config.to_dict()}, indent=2))
    return report


def format_table(report: ExportReport) -> str:
    """The printed parity table, one row per variant."""
    header = (f"{'variant':<12} {'status':<6} {'size MB':>8} {'max|err|':>9} {'min cos':>8} "
              f"{'mean cos':>8} {'agree':>7} {'LFW acc':>8}")
    lines = [header, "-" * len(header)]
    for result in report.results:
        p = result.parity
        acc = f"{100 * p.accuracy:.2f}%" if p.accuracy is not None else "-"
        lines.append(f"{result.name:<12} {'pass' if p.passed else 'FAIL':<6} "
                     f"{result.size_bytes / 1e6:>8.2f} {p.max_abs_error:>9.2e} "
                     f"{p.min_cosine:>8.5f} {p.mean_cosine:>8.5f} "
                     f"{100 * p.decision_agreement:>6.2f}% {acc:>8}")
    if report.results and report.results[0].parity.reference_accuracy is not None:
        lines.append(f"PyTorch reference LFW View 1 accuracy: "
                     f"{100 * report.results[0].parity.reference_accuracy:.2f}%")
    return "\n".join(lines)
