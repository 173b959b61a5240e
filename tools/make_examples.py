"""Write examples/: photos of two LFW DevTest people (never trained on) and short 640x480 videos.

Layout: PERSON/ holds the two reference photos (a folder reference), PERSON_0003.jpg is the photo
the video PERSON.avi shows, OTHER_0001.jpg is shown by OTHER.avi.

    python tools/make_examples.py --lfw-root ../shared/data/lfw --person Condoleezza_Rice \\
        --other Carlos_Moya --out examples
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.train.lfw import LFW, image_path


def write_video(photo: Path, out: Path, seconds: float = 2.0, fps: int = 10) -> None:
    """The photo on a 640x480 grey background, drifting slowly, as an MJPEG AVI."""
    face = cv2.imread(str(photo))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for i in range(int(seconds * fps)):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        x = 150 + 3 * i
        canvas[115:365, x:x + 250] = face
        writer.write(canvas)
    writer.release()


@click.command(cls=SiameseCommand)
@click.option("--lfw-root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--person", required=True, help="DevTest person with at least 3 images.")
@click.option("--other", required=True, help="Another DevTest person.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("examples"))
def main(lfw_root: Path, person: str, other: str, out: Path) -> None:
    lfw = LFW(lfw_root)
    test_people = lfw.view1_test_people
    for name, needed in ((person, 3), (other, 1)):
        if test_people.get(name, 0) < needed:
            raise click.ClickException(f"{name} is not a DevTest person with {needed} images")
    (out / person).mkdir(parents=True, exist_ok=True)
    photos = []
    for folder, name, number in [(out / person, person, 1), (out / person, person, 2),
                                 (out, person, 3), (out, other, 1)]:
        target = folder / Path(image_path(name, number)).name
        shutil.copyfile(lfw.image_root / image_path(name, number), target)
        photos.append(target)
    write_video(photos[2], out / f"{person}.avi")
    write_video(photos[3], out / f"{other}.avi")
    click.echo(f"wrote {len(list(out.iterdir()))} files to {out}")


if __name__ == "__main__":
    main()
