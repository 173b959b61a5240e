"""Project against verifyface, path by path: warm per-image verification through each public API.

    python tools/bench_peer.py --lfw-root ../shared/data/lfw [--count 200] [--threads 2]
    python tools/bench_peer.py --images tests/fixtures/lfw_mini/lfw-deepfunneled --count 4

Rows: the door path (the edge model) and the photos path (sface, through its cascade:
runtime.cascade) end to end (`Verifier.verify` on a decoded image against the first image's
template, so mostly other people), the photos path on the same images against a template of
another photo of the same person (DevTest's same-person pairs), the photos path without its
cascade (SFace alone), the SFace embedding alone (an aligned crop), and detection alone (the
verifier's detector) -- each against verifyface 1.1.1's `Verifier.verify`, `FaceEngine._forward`
and `FaceDetector.detect` on the same images (its only path, SFace and YuNet block-quantised,
run by OpenCV's DNN engine). Every task runs once per image, all in one process, in a fresh
random order per image (a fixed rotation would always run each task after the same one), so
load on this shared machine falls on all alike. verifyface is a peer measured beside us, never
a dependency: when it is not installed, only the project's rows are timed and a line says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import click
import cv2
import numpy as np
from siamese.runtime.errors import ReferenceError
from siamese.runtime.verifier import Verifier
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import largest_face
from siamese.runtime.vision.imageio import read_image

WARM = 10  # images run before timing starts


ROWS = ("door end to end", "photos end to end", "photos, same person", "photos, SFace alone",
        "photos embedding", "detection")


class Workload(NamedTuple):
    """Decoded probe images; the first is the reference. `pairs`: (reference photo, probe
    image) of the same person, reused in turn when fewer than the probes."""

    paths: list[Path]
    images: list[np.ndarray]
    pairs: list[tuple[Path, np.ndarray]]


def _devtest_pairs(lfw_root: Path) -> list[tuple[Path, Path, bool]]:
    image = lfw_root / "lfw-deepfunneled"
    pairs = []
    for line in (lfw_root / "pairsDevTest.txt").read_text().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3:
            left, right = (parts[0], parts[1]), (parts[0], parts[2])
        else:
            left, right = (parts[0], parts[1]), (parts[2], parts[3])
        pairs.append(tuple(image / name / f"{name}_{int(number):04d}.jpg"
                           for name, number in (left, right)) + (len(parts) == 3,))
    return pairs


def devtest_images(lfw_root: Path, count: int) -> list[Path]:
    """The first COUNT distinct images named by pairsDevTest.txt, in file order."""
    paths: list[Path] = []
    for left, right, _ in _devtest_pairs(lfw_root):
        paths.extend(p for p in (left, right) if p not in paths)
    return paths[:count]


def devtest_workload(lfw_root: Path, count: int) -> Workload:
    paths = devtest_images(lfw_root, count)
    same = [(left, right) for left, right, same in _devtest_pairs(lfw_root) if same][:count]
    return Workload(paths, [read_image(p) for p in paths],
                    [(left, read_image(right)) for left, right in same])


def folder_workload(folder: Path, count: int) -> Workload:
    """Any <person>/<photos> folder: its photos, and each person's first photo against the
    others."""
    paths = sorted(folder.rglob("*.jpg"))[:count]
    pairs = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        pairs.extend((photos[0], read_image(other)) for other in photos[1:])
    if not pairs:
        raise click.UsageError(f"no person folder with two photos in {folder}")
    return Workload(paths, [read_image(p) for p in paths], pairs)


def project_tasks(work: Workload, cache: Path) -> tuple[dict, Callable[[], dict], Workload]:
    """name -> per-image callable for the project's verifiers, a function that counts the
    photos decisions its cascade's screen made (after the run), and the workload without the
    same-person pairs whose reference cannot be enrolled (two faces of similar size)."""
    key = os.urandom(32)  # templates signed for this run only
    door = Verifier.from_model("edge", cache_dir=cache / "door", key=key)
    photos = Verifier.from_model("sface", cache_dir=cache / "photos", key=key)
    alone = Verifier.from_model("sface", cache_dir=cache / "photos", key=key, cascade=False)
    reference = work.paths[0]
    door_template = door.enroll("reference", [reference])
    photos_template = photos.enroll("reference", [reference])
    alone_template = alone.enroll("reference", [reference])
    own = {}
    for path in sorted({p for p, _ in work.pairs}):
        try:
            own[path] = photos.enroll("person", [path])
        except ReferenceError:
            continue
    work = work._replace(pairs=[pair for pair in work.pairs if pair[0] in own])
    if not work.pairs:
        raise click.UsageError("no same-person reference could be enrolled")
    crops = [align_face(image, largest_face(photos.detector.detect(image)).landmarks)
             for image in work.images]
    screened = {"photos end to end": [], "photos, same person": []}

    def photos_verify(row: str, image: np.ndarray, template) -> None:
        screened[row].append(photos.verify(image, template).screened)

    tasks = {
        "door end to end": lambda i: door.verify(work.images[i], door_template),
        "photos end to end": lambda i: photos_verify("photos end to end", work.images[i],
                                                     photos_template),
        "photos, same person": lambda i: photos_verify(
            "photos, same person", same_probe(work, i), own[same_reference(work, i)]),
        "photos, SFace alone": lambda i: alone.verify(work.images[i], alone_template),
        "photos embedding": lambda i: photos.embedder.embed(crops[i]),
        "detection": lambda i: photos.detector.detect(work.images[i])}
    return (tasks, lambda: {row: float(np.mean(flags)) for row, flags in screened.items()},
            work)


def same_reference(work: Workload, i: int) -> Path:
    return work.pairs[i % len(work.pairs)][0]


def same_probe(work: Workload, i: int) -> np.ndarray:
    return work.pairs[i % len(work.pairs)][1]


def peer_tasks(work: Workload, vault: Path) -> dict | None:
    """The same tasks through verifyface's public API, or None when it is not installed."""
    try:
        import verifyface  # a peer measured beside us; not a dependency
        from verifyface import preprocess
    except ImportError:
        return None
    verifier = verifyface.Verifier(vault=vault / "one", allow_download=False)
    verifier.enroll("reference", [str(work.paths[0])])
    # the same-person probes: each reference alone in a vault, as "reference" is (verifyface
    # compares every probe with every other enrolled person too, so a shared vault of 190 people
    # would time that search); the per-vault verifiers share the first one's loaded models
    people = {}
    for path in sorted({p for p, _ in work.pairs}):
        people[path] = verifyface.Verifier(vault=vault / f"person{len(people)}",
                                           allow_download=False)
        people[path]._engine = verifier.engine  # one copy of the models, not 190
        people[path].enroll("person", [str(path)])
    engine = verifier.engine
    aligned = [align_peer(engine, image, preprocess) for image in work.images]

    def verify(i: int) -> object:
        return verifier.verify("reference", work.images[i], check_replay=False)

    return {"door end to end": verify, "photos end to end": verify,
            "photos, same person": lambda i: people[same_reference(work, i)].verify(
                "person", same_probe(work, i), check_replay=False),
            "photos, SFace alone": verify,
            "photos embedding": lambda i: engine._forward(aligned[i]),
            "detection": lambda i: engine.detector.detect(work.images[i])}


def align_peer(engine, image: np.ndarray, preprocess) -> np.ndarray:
    faces = engine.detector.detect(image)
    return preprocess.align_face(image, preprocess.select_face(faces, mode="largest"))


def interleaved(tasks: dict[str, Callable[[int], object]], count: int,
                seed: int = 0) -> dict[str, np.ndarray]:
    """ms of every task on every image, the tasks run in a fresh random order per image."""
    names = list(tasks)
    times = {name: np.zeros(count) for name in names}
    rng = np.random.default_rng(seed)
    for i in range(-WARM, count):
        index = i % count
        for k in rng.permutation(len(names)):
            name = names[k]
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
    work = devtest_workload(lfw_root, count) if lfw_root else folder_workload(images, count)
    if len(work.paths) < 2:
        raise click.UsageError("need at least 2 images")
    cv2.setNumThreads(threads)
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
        ours, screened, work = project_tasks(work, Path(scratch))
        tasks = {f"project {name}": task for name, task in ours.items()}
        peer = peer_tasks(work, Path(scratch) / "vault")
        if peer is None:
            click.echo("verifyface not installed: the project's rows only (pip install it "
                       "beside the project to compare)")
        tasks.update({f"verifyface {name}": task for name, task in (peer or {}).items()})
        times = interleaved(tasks, len(work.paths))
    click.echo(f"{len(work.paths)} images ({len(work.pairs)} same-person pairs), warm ({WARM} "
               f"untimed first), one process, a random order per image, OpenCV "
               f"{cv2.__version__} with {threads} threads")
    click.echo(f"{'path':<22} {'project ms':>11} {'verifyface ms':>14} {'ratio':>8}   "
               f"{'mean: project':>13} {'verifyface':>14} {'ratio':>8}")
    for row in ROWS:
        ours, theirs = times[f"project {row}"], times.get(f"verifyface {row}")
        cells = []
        for statistic in (np.median, np.mean):
            mine = float(statistic(ours))
            peer = (f"{statistic(theirs):14.2f} {statistic(theirs) / mine:7.2f}x"
                    if theirs is not None else f"{'-':>14} {'-':>8}")
            cells.append(f"{mine:11.2f} {peer}")
        click.echo(f"{row:<22} {cells[0]}   {cells[1]:>37}")
    click.echo("medians, then means; ratio: verifyface's time over the project's (above 1: the "
               "project is faster)")
    shares = screened()
    click.echo("the cascade's edge screen decided " + ", ".join(
        f"{100 * share:.1f}% of '{row}'" for row, share in shares.items())
        + "; SFace the rest")


if __name__ == "__main__":
    main()
