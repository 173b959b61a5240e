"""Scores of the passive texture model (runtime/liveness/passive.py) on videos and images.

For every frame's largest face (YuNet at 320 px, as the liveness evaluation runs it) the
model's real score, per model and fused; then, per group (a folder of attack videos, or the
bona fide clips), the score distribution, the fraction of frames under each threshold and the
fraction of "sessions" (consecutive windows of --window scored frames, as the liveness check
takes the median of its first frames) whose median is under it, and the files whose first
--window scored frames have a median under it. Bona fide: under = refused
(BPCER); attacks: at or over = accepted (APCER). And the cost per face (crop, resize, run).

    python tools/eval_texture.py --bona-fide /work/data/bona-fide \\
        --attacks /tmp/pad-att --thresholds 0.3 0.5 0.7 --log /tmp/texture.jsonl
    python tools/eval_texture.py --bench examples/Abdullah_Gul_0003.jpg --threads 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.liveness.passive import TEXTURE_PATH, TextureModel
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector, largest_face
from siamese.runtime.vision.imageio import read_image

_spec = importlib.util.spec_from_file_location(
    "make_attacks", Path(__file__).with_name("make_attacks.py"))
attacks = sys.modules.setdefault("make_attacks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(attacks)

VIDEOS = (".mkv", ".gif", ".avi", ".mp4")


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    if path.suffix.lower() not in VIDEOS:
        return [read_image(path)]
    return attacks.read_clip(path, limit)


def score_file(path: Path, model: TextureModel, detector: FaceDetector, limit: int
               ) -> list[list[float]]:
    """Per-model real scores of each frame's largest face (frames without a face skipped)."""
    rows = []
    for frame in read_frames(path, limit):
        face = largest_face(detector.detect(frame))
        if face is not None:
            rows.append([float(v) for v in model.scores(frame, face.box)])
    return rows


def bench(model: TextureModel, path: Path, runs: int) -> str:
    image = read_image(path)
    face = largest_face(FaceDetector().detect(image))
    model.score(image, face.box)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        model.score(image, face.box)
        times.append(1e3 * (time.perf_counter() - started))
    return (f"{path.name} {image.shape[1]}x{image.shape[0]}: median {statistics.median(times):.2f}"
            f" ms per face (crop + resize + run, {len(model.info.models)} models), p90 "
            f"{np.percentile(times, 90):.2f} ms, {runs} runs")


def table(records: list[dict], thresholds: list[float], window: int, column: str) -> None:
    print("\ngroup | frames | median | p10 | p90 | " + " | ".join(
        f"frames < {t:g} | windows < {t:g} | files < {t:g}" for t in thresholds))
    groups = sorted({r["group"] for r in records}, key=lambda g: (g != "bona_fide", g))
    for group in groups:
        files = [r for r in records if r["group"] == group]
        scores = [score(row, column) for r in files for row in r["scores"]]
        medians = [statistics.median(score(row, column) for row in r["scores"][i:i + window])
                   for r in files for i in range(0, max(1, len(r["scores"]) - window + 1),
                                                 window) if r["scores"]]
        firsts = [statistics.median(score(row, column) for row in r["scores"][:window])
                  for r in files if r["scores"]]
        if not scores:
            continue
        cells = " | ".join(f"{np.mean(np.less(scores, t)):.1%} | {np.mean(np.less(medians, t)):.1%}"
                           f" | {sum(f < t for f in firsts)}/{len(firsts)}" for t in thresholds)
        print(f"{group} ({len(files)} files, {len(medians)} windows) | {len(scores)} | "
              f"{np.median(scores):.3f} | {np.percentile(scores, 10):.3f} | "
              f"{np.percentile(scores, 90):.3f} | {cells}")


def score(row: list[float], column: str) -> float:
    return float(np.mean(row)) if column == "fused" else row[int(column)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=TEXTURE_PATH)
    parser.add_argument("--bona-fide", type=Path, nargs="*", default=[],
                        help="bona fide videos or images, or folders of them")
    parser.add_argument("--attacks", type=Path, help="a folder of one sub-folder per species")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5])
    parser.add_argument("--window", type=int, default=10, help="frames per session window")
    parser.add_argument("--limit", type=int, default=200, help="frames read per video")
    parser.add_argument("--log", type=Path, help="write (or, with --table, read) per-file scores")
    parser.add_argument("--table", action="store_true", help="only print the tables of --log")
    parser.add_argument("--bench", type=Path, help="time the model on this image's face")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime and OpenCV threads")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    model = TextureModel(args.model, threads=args.threads)
    if args.bench:
        print(f"threads {args.threads}: " + bench(model, args.bench, args.runs))
        return
    if args.table:
        records = [json.loads(line) for line in args.log.read_text().splitlines()]
    else:
        detector = FaceDetector(config=DetectorConfig(max_side=320))
        jobs = [("bona_fide", p) for root in args.bona_fide for p in sorted(
            root.rglob("*") if root.is_dir() else [root]) if p.is_file()]
        if args.attacks:
            jobs += [(folder.name, p) for folder in sorted(args.attacks.iterdir())
                     if folder.is_dir() for p in sorted(folder.iterdir())]
        records = [{"group": group, "file": str(path),
                    "scores": score_file(path, model, detector, args.limit)}
                   for group, path in jobs]
        if args.log:
            args.log.write_text("".join(json.dumps(r) + "\n" for r in records))
    for column in ["fused", *map(str, range(len(model.info.models)))]:
        name = "fused" if column == "fused" else model.info.models[int(column)]
        print(f"\n## {name}", end="")
        table(records, args.thresholds, args.window, column)


if __name__ == "__main__":
    sys.exit(main())
