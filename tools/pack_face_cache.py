"""Pack a prepared aligned-face cache into one compact file (JPEG crops), or unpack it.

For moving a cache to another machine (a training server, a GPU box) without the source images:

    python tools/pack_face_cache.py pack ~/.cache/siamese/faces/lfw-... lfw_faces.npz
    python tools/pack_face_cache.py unpack lfw_faces.npz /tmp/faces
    siamese-train --lfw-root lfw_protocol_only --faces /tmp/faces ...

JPEG at quality 95 is lossy: evaluate final models on the original cache.
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.commands.support import SiameseGroup
from siamese.runtime.storage.fileio import check_output_path, write_text_atomic
from siamese.train.face_cache import open_prepared
from siamese.train.lfw import read_people_file


@click.group(cls=SiameseGroup)
def main() -> None:
    """Pack or unpack an aligned-face cache."""


@main.command()
@click.argument("cache", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--quality", default=95, show_default=True)
@click.option("--people", type=click.Path(exists=True, path_type=Path),
              help="Only these people (an LFW people file, e.g. peopleDevTrain.txt).")
def pack(cache: Path, out: Path, quality: int, people: Path | None) -> None:
    import json

    faces = open_prepared(cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    if people is not None:
        names = set(read_people_file(people))
        manifest["records"] = [row for row in manifest["records"] if row[1] in names]
    records = [r for r in faces.records if people is None or r.identity in names]
    encoded = [cv2.imencode(".jpg", np.asarray(faces.crops[r.row]),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])[1] for r in records]
    lengths = np.array([len(e) for e in encoded])
    np.savez(check_output_path(out), data=np.concatenate(encoded), lengths=lengths,
             manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8))
    click.echo(f"{len(encoded)} crops, {lengths.sum() / 1e6:.1f} MB -> {out}")


@main.command()
@click.argument("packed", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
def unpack(packed: Path, out: Path) -> None:
    import json

    archive = np.load(packed)
    manifest = json.loads(archive["manifest"].tobytes())
    offsets = np.r_[0, np.cumsum(archive["lengths"])]
    rows = max(row[5] for row in manifest["records"]) + 1
    out.mkdir(parents=True, exist_ok=True)
    crops = np.lib.format.open_memmap(out / "crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(rows, 112, 112, 3))
    data = archive["data"]
    for i, record in enumerate(manifest["records"]):
        crops[record[5]] = cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
    crops.flush()
    write_text_atomic(out / "manifest.json", json.dumps(manifest))
    click.echo(f"{len(manifest['records'])} crops -> {out}")


if __name__ == "__main__":
    main()
