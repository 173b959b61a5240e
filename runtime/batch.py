"""Embeddings of a folder of images for users' own pipelines (`siamese-embed`).

Faces are detected and aligned image by image, then embedded in batches of `batch_size`
(onnxruntime runs one batch per call). Each image contributes its dominant face, or with
`all_faces` every face; images without a usable face are listed as skipped.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError, SiameseError
from siamese.runtime.storage.datasets_io import images_under
from siamese.runtime.storage.fileio import write_bytes_atomic, write_text_atomic
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.imageio import read_image
from siamese.runtime.vision.quality import assess, describe_flags

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier


@dataclass
class EmbeddingTable:
    paths: list[str] = field(default_factory=list)  # relative to the folder
    faces: list[int] = field(default_factory=list)  # face number within its image
    boxes: list[list[float]] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    quality_flags: list[str] = field(default_factory=list)  # ";"-joined, empty when it passes
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def matrix(self, dim: int) -> np.ndarray:
        return np.stack(self.embeddings) if self.embeddings else np.zeros((0, dim), np.float32)


def embed_folder(verifier: Verifier, folder: Path, batch_size: int = 32,
                 all_faces: bool = False, strict: bool = False) -> EmbeddingTable:
    """Every face's embedding with its quality flags; `strict` skips faces failing the gate."""
    if not Path(folder).is_dir():
        raise ConfigError(f"no such folder: {folder}")
    if not 1 <= batch_size <= 1024:
        raise ConfigError("--batch-size must lie in 1-1024")
    table = EmbeddingTable()
    crops: list[np.ndarray] = []

    def flush() -> None:
        if crops:
            table.embeddings.extend(verifier.embedder.embed(np.stack(crops)))
            crops.clear()

    for path in images_under(folder):
        name = str(path.relative_to(folder))
        try:
            image = read_image(path)
            faces = (sorted(verifier.detector.detect(image), key=lambda f: -f.area)
                     if all_faces else [verifier.dominant_face(image, name)])
        except SiameseError as exc:
            table.skipped.append((name, str(exc)))
            continue
        if not faces:
            table.skipped.append((name, "no face found"))
        for number, face in enumerate(faces):
            crop = align_face(image, face.landmarks)
            quality = assess(face, crop, verifier.config.quality)
            if strict and not quality.ok:
                table.skipped.append((f"{name} face {number}", "fails the quality gate ("
                                      + describe_flags(quality, verifier.config.quality) + ")"))
                continue
            table.paths.append(name)
            table.faces.append(number)
            table.boxes.append([round(float(v), 1) for v in face.box])
            table.quality_flags.append(";".join(quality.flags))
            crops.append(crop)
            if len(crops) >= batch_size:
                flush()
    flush()
    return table


def write_table(table: EmbeddingTable, out: Path, dim: int, model_fingerprint: str) -> None:
    """Write `.npz` (paths, faces, boxes, embeddings, model_fingerprint) or `.csv` atomically."""
    matrix = table.matrix(dim)
    if out.suffix == ".npz":
        buffer = io.BytesIO()
        np.savez(buffer, paths=np.asarray(table.paths, dtype=str),
                 faces=np.asarray(table.faces, dtype=np.int32),
                 boxes=np.asarray(table.boxes, dtype=np.float32).reshape(-1, 4),
                 quality_flags=np.asarray(table.quality_flags, dtype=str),
                 embeddings=matrix.astype(np.float32), model_fingerprint=model_fingerprint)
        write_bytes_atomic(out, buffer.getvalue())
    elif out.suffix == ".csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path", "face", "x", "y", "w", "h", *[f"e{i}" for i in range(dim)],
                         "quality_flags"])
        for path, face, box, flags, vector in zip(table.paths, table.faces, table.boxes,
                                                  table.quality_flags, matrix, strict=True):
            writer.writerow([path, face, *box, *(f"{v:.7g}" for v in vector), flags])
        write_text_atomic(out, text.getvalue())
    else:
        raise ConfigError(f"--out must end in .npz or .csv, not {out.name}")
