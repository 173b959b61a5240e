"""The 3-D test's noise floor and margins: nose offsets (runtime.liveness.planarity) per video.

For each video, every frame's largest face is compared with the video's most frontal frame
(smallest |naive yaw|); the table gives the offset's median, 90th percentile and maximum in
frontal eye distances, the naive yaw range, and the cost of one nose_offset call.

    python tools/planarity_floor.py /work/data/bona-fide/*.gif /work/data/attacks/*/*.avi
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.liveness.planarity import naive_yaw, nose_offset
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector, largest_face


def offsets(path: Path, detector: FaceDetector) -> tuple[np.ndarray, np.ndarray, int]:
    capture, marks, frames = cv2.VideoCapture(str(path)), [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames += 1
        face = largest_face(detector.detect(image))
        if face is not None:
            marks.append(face.landmarks)
    capture.release()
    if not marks:
        return np.empty(0), np.empty(0), frames
    yaws = np.array([naive_yaw(m) for m in marks])
    ref = marks[int(np.argmin(np.abs(yaws)))]
    sizes = [o.size for o in (nose_offset(ref, m) for m in marks) if o is not None]
    return np.array(sizes), yaws, frames


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
    print("| video | frames | faces | median | p90 | max | naive yaw range |\n"
          "|---|---|---|---|---|---|---|")
    for path in args.videos:
        sizes, yaws, frames = offsets(path, detector)
        if not len(sizes):
            print(f"| {path.parent.name}/{path.name} | {frames} | 0 | - | - | - | - |")
            continue
        print(f"| {path.parent.name}/{path.name} | {frames} | {len(yaws)} | "
              f"{np.median(sizes):.3f} | {np.percentile(sizes, 90):.3f} | {sizes.max():.3f} | "
              f"{yaws.min():+.2f} .. {yaws.max():+.2f} |")
    print(f"\nnose_offset: {cost_ms():.4f} ms of CPU per call (one frame)")


if __name__ == "__main__":
    main()
