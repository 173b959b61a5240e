"""Detector speed and parity: YuNet through this process's OpenCV on LFW (and any image folder).

Run once per OpenCV (a second one with PYTHONPATH pointing at another cv2), then compare:

    python tools/bench_detector.py run --images path/to/lfw/lfw-deepfunneled --out a.npz
    PYTHONPATH=/opt/cv5 python tools/bench_detector.py run --images ... --out b.npz
    python tools/bench_detector.py compare a.npz b.npz

`run` detects every image (the runtime's FaceDetector, as Verifier uses it: longest side 320,
OpenCV threads as given) and records per image the time of `detect` alone (decoding is outside
the clock), the faces found, and the highest-scoring face's box and landmarks. `compare`
prints recall (images with a face) of each, and for images where both found a face the box IoU
and the mean landmark shift in pixels of the second against the first.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector
from siamese.runtime.vision.imageio import read_image

DETECT_SIDE = 320  # as Verifier


@click.group()
def main() -> None:
    """Detector benchmark and parity."""


@main.command()
@click.option("--images", "roots", required=True, multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--threads", default=2, show_default=True)
@click.option("--every", default=1, show_default=True, help="Only every N-th image (by path).")
def run(roots: tuple[Path, ...], out: Path, threads: int, every: int) -> None:
    """Detect every image; save per-image results."""
    cv2.setNumThreads(threads)
    paths = sorted(p for root in roots for p in root.rglob("*")
                   if p.suffix.lower() in (".jpg", ".png", ".pgm", ".jpeg"))
    paths = paths[::every]
    detector = FaceDetector(config=DetectorConfig(max_side=DETECT_SIDE))
    ms, counts = np.zeros(len(paths)), np.zeros(len(paths), int)
    boxes, marks = np.full((len(paths), 4), np.nan), np.full((len(paths), 10), np.nan)
    for warm in paths[:20]:
        detector.detect(read_image(warm))
    for i, path in enumerate(paths):
        image = read_image(path)
        started = time.perf_counter()
        faces = detector.detect(image)
        ms[i] = 1e3 * (time.perf_counter() - started)
        counts[i] = len(faces)
        if faces:
            boxes[i], marks[i] = faces[0].box, faces[0].landmarks.ravel()
    np.savez(out, paths=np.array([str(p) for p in paths]), ms=ms, counts=counts, boxes=boxes,
             landmarks=marks, opencv=cv2.__version__, threads=threads)
    click.echo(f"OpenCV {cv2.__version__}, {threads} threads: {len(paths)} images, "
               f"median {np.median(ms):.2f} ms, mean {ms.mean():.2f} ms per image, recall "
               f"{100 * (counts > 0).mean():.2f}%")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


@main.command()
@click.argument("reference", type=click.Path(exists=True, path_type=Path))
@click.argument("candidate", type=click.Path(exists=True, path_type=Path))
def compare(reference: Path, candidate: Path) -> None:
    """Recall, box IoU and landmark shift of CANDIDATE against REFERENCE."""
    ref, cand = np.load(reference), np.load(candidate)
    if not (ref["paths"] == cand["paths"]).all():
        raise click.UsageError("the two runs did not detect the same images")
    both = (ref["counts"] > 0) & (cand["counts"] > 0)
    iou = _iou(ref["boxes"][both], cand["boxes"][both])
    shift = np.linalg.norm((ref["landmarks"][both] - cand["landmarks"][both]).reshape(-1, 5, 2),
                           axis=2).mean(1)
    for name, run_ in (("reference", ref), ("candidate", cand)):
        click.echo(f"{name}: OpenCV {run_['opencv']}, {int(run_['threads'])} threads, "
                   f"{len(run_['ms'])} images, median {np.median(run_['ms']):.2f} ms, mean "
                   f"{run_['ms'].mean():.2f} ms, recall {100 * (run_['counts'] > 0).mean():.2f}%")
    click.echo(f"both found a face in {both.sum()} images; top face box IoU mean {iou.mean():.4f}, "
               f"min {iou.min():.4f}; landmark shift mean {shift.mean():.3f} px, max "
               f"{shift.max():.3f} px; face counts differ in "
               f"{int((ref['counts'] != cand['counts']).sum())} images")


if __name__ == "__main__":
    main()
