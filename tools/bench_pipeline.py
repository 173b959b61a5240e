"""Full-pipeline benchmark: frames per second and per-stage latency (decode, detect, align,
embed and compare) on a 640x480 video with one face, and the process's peak memory.

    python tools/bench_pipeline.py [--model PATH] [--video FILE] [--frames 300]
    python tools/bench_pipeline.py --large-frames 20

Without --video, a 640x480 MJPEG video is written from examples/ (or the test fixture).
`--large-frames N` instead times detection per frame, one pass (320 px) against the verifier's
two-pass detector, on 640x480 and 3840x2160 frames with a face (about 100 px in the large
frame) and without one: the cost of the second pass that finds small faces in large frames.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.session import TimedFrames
from siamese.runtime.verifier import Verifier
from siamese.runtime.vision.sources import VideoFile

ROOT = Path(__file__).resolve().parents[1]


def synthetic_video(out: Path, frames: int) -> Path:
    """640x480 frames with one LFW face moving slowly across a grey background."""
    faces = sorted((ROOT / "examples").glob("*.jpg")) or sorted(
        (ROOT / "tests/fixtures/lfw_mini/lfw-deepfunneled").glob("*/*_0001.jpg"))
    face = cv2.imread(str(faces[0]))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(frames):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        x = 100 + (i * 2) % 280
        canvas[115:365, x:x + 250] = face
        writer.write(canvas)
    writer.release()
    return out


def large_frame_table(verifier: Verifier, repeats: int) -> None:
    """Median ms per frame of detection, one pass against two, with and without a face."""
    faces = sorted((ROOT / "examples").glob("*.jpg")) or sorted(
        (ROOT / "tests/fixtures/lfw_mini/lfw-deepfunneled").glob("*/*_0001.jpg"))
    face = cv2.imread(str(faces[0]))
    two = verifier.detector
    one = getattr(two, "first", two)
    click.echo(f"{'frame':<10} {'face':<6} {'one pass ms':>12} {'two passes ms':>14} "
               f"{'found (1/2)':>12}")
    for width, height, side in ((640, 480, 250), (3840, 2160, 250)):
        for with_face in (True, False):
            frame = np.full((height, width, 3), 90, np.uint8)
            if with_face:
                top, left = (height - side) // 2, (width - side) // 2
                frame[top:top + side, left:left + side] = face
            times = {}
            found = {}
            for name, detector in (("one", one), ("two", two)):
                samples = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    found[name] = len(detector.detect(frame))
                    samples.append(1e3 * (time.perf_counter() - started))
                times[name] = statistics.median(samples)
            click.echo(f"{width}x{height:<5} {'yes' if with_face else 'no':<6} "
                       f"{times['one']:>12.1f} {times['two']:>14.1f} "
                       f"{found['one']:>5}/{found['two']:<6}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@click.command(cls=SiameseCommand)
@click.option("--model", type=click.Path(path_type=Path), help="[default: packaged model]")
@click.option("--video", type=click.Path(exists=True, path_type=Path))
@click.option("--frames", default=300, show_default=True)
@click.option("--threads", default=0, show_default=True, help="onnxruntime threads (0: auto)")
@click.option("--large-frames", type=click.IntRange(0, 1000), default=0,
              help="Time the large-frame detection pass over N repeats instead.")
def main(model: Path | None, video: Path | None, frames: int, threads: int,
         large_frames: int) -> None:
    """Print one table of per-stage median latency, FPS and peak RSS."""
    verifier = Verifier.from_model(model)
    if large_frames:
        large_frame_table(verifier, large_frames)
        return
    if threads:
        from siamese.runtime.embedder import Embedder

        verifier.embedder = Embedder(verifier.embedder.path, threads=threads)
    with tempfile.TemporaryDirectory() as tmp:
        video = video or synthetic_video(Path(tmp) / "bench.avi", frames)
        faces = sorted((ROOT / "examples").glob("*.jpg")) or sorted(
            (ROOT / "tests/fixtures/lfw_mini/lfw-deepfunneled").glob("*/*_0001.jpg"))
        template = verifier.enroll("bench", [faces[0]])
        source = VideoFile(video)  # decoded on its reader thread, in order
        stages: dict[str, list[float]] = {k: [] for k in
                                          ("decode", "detect", "align", "embed")}
        totals = []
        iterator = iter(TimedFrames(source, None))
        started = time.perf_counter()
        count = 0
        while True:
            t0 = time.perf_counter()
            frame = next(iterator, None)
            t1 = time.perf_counter()
            if frame is None:
                break
            decision = verifier.verify(frame.image, template, frame.index)
            t2 = time.perf_counter()
            stages["decode"].append(1e3 * (t1 - t0))
            for key in ("detect", "align", "embed"):
                if key in decision.latency_ms:
                    stages[key].append(decision.latency_ms[key])
            totals.append(1e3 * (t2 - t0))
            count += 1
        elapsed = time.perf_counter() - started
    info = verifier.embedder.info
    click.echo(f"model {verifier.embedder.path.name} ({info.arch}, {info.variant}), "
               f"providers {','.join(verifier.embedder.providers)}, {count} frames of 640x480")
    click.echo(f"{'stage':<10} {'median ms':>10} {'p95 ms':>8}")
    for key, values in [*stages.items(), ("total", totals)]:
        if values:
            p95 = float(np.percentile(values, 95))
            click.echo(f"{key:<10} {statistics.median(values):>10.2f} {p95:>8.2f}")
    click.echo(f"throughput: {count / elapsed:.1f} frames/s; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
