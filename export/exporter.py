"""One export entry: every requested format written, compared with PyTorch, and gated."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from siamese.export.config import ExportConfig
from siamese.export.faces import FaceSets, load_face_sets
from siamese.export.formats import FORMATS, ExportSource
from siamese.export.parity import Parity, compare
from siamese.runtime.embedder import file_fingerprint
from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.storage.fileio import write_text_atomic
from siamese.train.checkpoint import Checkpoint
from siamese.train.embedding import crop_embedder
from siamese.train.evaluate import pair_accuracy

log = logging.getLogger(__name__)


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


def model_info(checkpoint: Checkpoint, path: Path) -> ModelInfo:
    """The metadata every exported file carries, from the checkpoint at `path`."""
    calibration = checkpoint.calibration
    bound = calibration.val_far_upper_95
    if bound is None or bound > calibration.target_far:
        log.warning("%s: its held-out pairs do not show FAR %g at 95%% (upper bound %s): "
                    "recalibrate on more held-out people (tools/recalibrate.py)", path,
                    calibration.target_far, "unknown" if bound is None else f"{bound:.3g}")
    return ModelInfo(preprocess=checkpoint.preprocess, embedding_dim=checkpoint.embedding_dim,
                     metric=checkpoint.metric, threshold=float(calibration.far_threshold),
                     threshold_far=float(calibration.target_far), arch=checkpoint.arch,
                     source_sha256=file_fingerprint(path), version=package_version(),
                     variant="fp32", accuracy_threshold=float(calibration.accuracy_threshold),
                     flip_average=checkpoint.flip_average)


def _lfw_accuracy(embed: Callable[[np.ndarray], np.ndarray], faces: FaceSets, metric: str,
                  threshold: float) -> float:
    return pair_accuracy(embed, faces.lfw_crops, faces.lfw_pairs, metric, threshold)


def export_checkpoint(config: ExportConfig) -> ExportReport:
    """Write each of `config.formats` (FP32 ONNX first); gate each against PyTorch.

    A file that fails its gate is deleted and recorded as failed in the report.
    """
    checkpoint = Checkpoint.load(config.checkpoint)
    model = checkpoint.build_model()
    info = model_info(checkpoint, config.checkpoint)
    lfw_root, calib_dir = config.lfw_root, config.calib_dir
    if lfw_root is None and calib_dir is None and checkpoint.source is not None:
        lfw_root, calib_dir = checkpoint.source.lfw_root, checkpoint.source.folder_root
        log.info("calibration and parity faces from the training data at %s",
                 lfw_root or calib_dir)
    faces = load_face_sets(lfw_root, calib_dir, config.cache_dir,
                           set(checkpoint.train_people), config.calib_faces,
                           config.parity_faces, config.seed)
    reference_embed = crop_embedder(model, info.preprocess, "cpu")
    reference = reference_embed(faces.parity)
    accuracy_threshold = info.accuracy_threshold
    reference_accuracy = (_lfw_accuracy(reference_embed, faces, info.metric, accuracy_threshold)
                          if faces.lfw_pairs else None)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(config.checkpoint, info)
    source = ExportSource(model, info, FORMATS["fp32"].path_in(config.out_dir),
                          info.preprocess(faces.calibration), config.opset)
    for name in config.formats:
        export_format = FORMATS[name]
        path = export_format.path_in(config.out_dir)
        export_format.write(source, path)
        embed = export_format.embedder(path)
        accuracy = ((reference_accuracy, _lfw_accuracy(embed, faces, info.metric,
                                                       accuracy_threshold))
                    if faces.lfw_pairs else None)
        parity = compare(reference, embed(faces.parity), info.metric, info.threshold,
                         config.gates.get(name, export_format.gate), accuracy)
        report.results.append(VariantResult(name, path, path.stat().st_size, parity))
        if not parity.passed:
            log.warning("%s failed its parity gate: %s", name, "; ".join(parity.failures))
            path.unlink()
            if name == "fp32":
                break  # every other format derives from a faithful FP32 model
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
