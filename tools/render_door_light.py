"""Re-render a <person>/<images> face folder as a door camera in bad light, and split its people
into an adaptation half and a test half (for siamese-adapt benchmarks, docs/OWN_FACES.md).

Each image: one harsh side light (a steep left-right gain ramp, side chosen at random), low
light with sensor noise, IR-like grey, horizontal motion blur, heavy JPEG compression.

    python tools/render_door_light.py ../shared/data/att_faces /work/data/door/att
    -> /work/data/door/att/{adapt,test}/<person>/<image>.jpg
    python tools/render_door_light.py ../shared/data/lfw/lfw-deepfunneled /work/data/door/lfw \
        --people ../shared/data/lfw/peopleDevTest.txt --min-images 6 --max-images 20
"""

from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np
from siamese.train.datasets import read_folder, split_people


def render(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One door-camera view of a BGR or grey image, as grey BGR uint8."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    x = grey.astype(np.float32) / 255.0
    width = x.shape[1]
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32) ** rng.uniform(1.5, 3.0)
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    x = x * (0.08 + 1.6 * ramp)[None, :]  # one harsh side light, the other side dark
    x = x * rng.uniform(0.35, 0.6)  # low light
    x = x + rng.normal(0.0, rng.uniform(0.02, 0.05), x.shape).astype(np.float32)  # sensor noise
    length = int(rng.integers(3, 8))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    x = cv2.filter2D(x, -1, kernel)  # motion blur
    out = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(12, 25))])
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE), cv2.COLOR_GRAY2BGR)


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--test-fraction", type=float, default=0.5, show_default=True)
@click.option("--max-people", type=int, default=None, help="Only the first N people (sorted).")
@click.option("--min-images", type=int, default=2, show_default=True)
@click.option("--max-images", type=int, default=None, help="At most N images of a person.")
@click.option("--people", "people_file", type=click.Path(exists=True, path_type=Path),
              help="Only these people (an LFW people file: name and count per line).")
@click.option("--seed", type=int, default=0, show_default=True)
def main(source, out, test_fraction, max_people, min_images, max_images, people_file, seed):
    images = read_folder(source)
    if people_file is not None:
        listed = {line.split()[0] for line in people_file.read_text().splitlines()
                  if len(line.split()) == 2}
        images = [image for image in images if image.identity in listed]
    counts: dict[str, int] = {}
    kept = []
    for image in images:
        counts[image.identity] = counts.get(image.identity, 0) + 1
        if max_images is None or counts[image.identity] <= max_images:
            kept.append(image)
    images = kept
    people = sorted(name for name, n in counts.items() if n >= min_images)[:max_people]
    adapt, test = split_people(people, test_fraction, seed)
    rng = np.random.default_rng(seed)
    written = 0
    for image in images:
        if image.identity not in adapt and image.identity not in test:
            continue
        pixels = cv2.imread(str(Path(source) / image.path), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            continue
        half = "adapt" if image.identity in adapt else "test"
        target = out / half / image.identity / (Path(image.path).stem + ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), render(pixels, rng))
        written += 1
    click.echo(f"{written} images: {len(adapt)} adaptation people, {len(test)} test people "
               f"-> {out}")


if __name__ == "__main__":
    main()
