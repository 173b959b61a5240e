"""Noise floors and margins of the 3-D test and of the continuity of motion, per video.

For each video, every frame's largest face is compared with the video's most frontal frame
(smallest |naive yaw|); the table gives the nose offset's median, 90th percentile and maximum
in frontal eye distances, the naive yaw range, the offset's change from frame to frame (p99
and maximum, and the fastest in eye distances per second, on the file's clock), the refusals
the continuity test (runtime.liveness.continuity.MotionTrack) would make over the whole video
played as recorded, and the cost of one nose_offset call and of one MotionTrack.add.

    python tools/planarity_floor.py /work/data/bona-fide/*.gif /work/data/attacks/*/*.avi
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.liveness.challenge import TURN_OFFSET
from siamese.runtime.liveness.check import RETURNED
from siamese.runtime.liveness.continuity import MIN_DT, MotionTrack
from siamese.runtime.liveness.planarity import Offset, naive_yaw, nose_offset
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector, largest_face
from siamese.runtime.vision.sources import MediaClock


@dataclass
class Video:
    sizes: np.ndarray  # nose offsets against the most frontal frame
    yaws: np.ndarray
    frames: int
    steps: np.ndarray  # the offset's change between consecutive frames with a face
    speeds: np.ndarray  # the same per second of the file's clock
    refusals: list[str]  # what the continuity test would refuse, as recorded


def measure(path: Path, detector: FaceDetector) -> Video:
    capture, marks, times, frames = cv2.VideoCapture(str(path)), [], [], 0
    clock = MediaClock(capture.get(cv2.CAP_PROP_FPS))
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames += 1
        now = clock.tick(capture.get(cv2.CAP_PROP_POS_MSEC))
        face = largest_face(detector.detect(image))
        if face is not None:
            marks.append(face.landmarks)
            times.append(now)
    capture.release()
    if not marks:
        return Video(np.empty(0), np.empty(0), frames, np.empty(0), np.empty(0), [])
    yaws = np.array([naive_yaw(m) for m in marks])
    ref = marks[int(np.argmin(np.abs(yaws)))]
    found = [(t, o) for t, o in zip(times, (nose_offset(ref, m) for m in marks), strict=True)
             if o is not None]
    points = np.array([[o.dx, o.dy] for _, o in found])
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    gaps = np.maximum(np.diff([t for t, _ in found]), MIN_DT)
    track, refusals = MotionTrack(), []
    for now, offset in found:
        refusal = track.add(now, offset, RETURNED, TURN_OFFSET)
        if refusal is not None:
            refusals.append(refusal)
            track = MotionTrack()  # go on as a new check would
    return Video(np.array([o.size for _, o in found]), yaws, frames, steps, steps / gaps,
                 refusals)


def track_cost_ms(calls: int = 20000) -> float:
    rng = np.random.default_rng(0)
    offsets = [Offset(*rng.normal(0, 0.02, 2)) for _ in range(100)]
    track = MotionTrack()
    started = time.process_time()
    for i in range(calls):
        if i % 1000 == 0:
            track = MotionTrack()
        track.add(i / 15, offsets[i % 100], RETURNED, TURN_OFFSET)
    return 1e3 * (time.process_time() - started) / calls


def cost_ms(calls: int = 20000) -> float:
    rng = np.random.default_rng(0)
    base = np.array([[40, 50], [80, 50], [60, 75], [45, 95], [75, 95]], float)
    pairs = [(base + rng.normal(0, 1, base.shape), base + rng.normal(0, 3, base.shape))
             for _ in range(100)]
    started = time.process_time()  # CPU time: the machine is shared, wall time is not ours
    for i in range(calls):
        nose_offset(*pairs[i % 100])
    return 1e3 * (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="*", type=Path)
    args = parser.parse_args()
    detector = FaceDetector(config=DetectorConfig(max_side=320))
    print("| video | frames | faces | offset median | p90 | max | naive yaw range | step p99 "
          "| step max | fastest /s | continuity refusals |\n" + "|---" * 11 + "|")
    for path in args.videos:
        video = measure(path, detector)
        name = f"{path.parent.name}/{path.name}"
        if len(video.steps) == 0:
            print(f"| {name} | {video.frames} | {len(video.yaws)} | - | - | - | - | - | - | - "
                  f"| - |")
            continue
        sizes, yaws, steps = video.sizes, video.yaws, video.steps
        print(f"| {name} | {video.frames} | {len(yaws)} | {np.median(sizes):.3f} | "
              f"{np.percentile(sizes, 90):.3f} | {sizes.max():.3f} | {yaws.min():+.2f} .. "
              f"{yaws.max():+.2f} | {np.percentile(steps, 99):.3f} | {steps.max():.3f} | "
              f"{video.speeds.max():.2f} | {len(video.refusals)} |")
    print(f"\nnose_offset: {cost_ms():.4f} ms of CPU per call (one frame); MotionTrack.add: "
          f"{track_cost_ms():.4f} ms")


if __name__ == "__main__":
    main()
