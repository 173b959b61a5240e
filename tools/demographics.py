"""False-match rates per demographic group on FairFace val, at each model's shipped threshold.

FairFace has no identity labels; its 5,000 val images are photos of (almost surely) different
people, so every pair of them is taken as an impostor pair: a false match is a pair scoring at
or above the model's decision threshold (its FAR-calibrated `threshold` metadata). Pairs are
formed within each race x gender group (the lookalikes a group-blind threshold handles worst),
and over all images. A false-match rate many times the FAR the threshold was calibrated for
means the threshold does not transfer to those faces.

    python tools/demographics.py FAIRFACE_CACHE fairface_label_val.csv \\
        --model runtime/models/siamese_edge.int8.onnx --model exports/sface/model.onnx

`--half odd` measures on every other image only: the half a model's threshold was not
calibrated on (tools/recalibrate.py --varied-half even).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import DatasetError
from siamese.train.datasets import alternate_half
from siamese.train.face_cache import open_prepared


def read_labels(path: Path) -> dict[str, tuple[str, str]]:
    """file -> (race, gender) from FairFace's label CSV (columns file, age, gender, race)."""
    try:
        with open(path, newline="") as handle:
            return {row["file"]: (row["race"], row["gender"]) for row in csv.DictReader(handle)}
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read FairFace labels {path}: {exc}") from None


def false_match_rate(embeddings: np.ndarray, threshold: float) -> tuple[float, int]:
    """(rate, pairs) over every pair of rows (cosine scores; rows are unit vectors)."""
    scores = embeddings @ embeddings.T
    upper = scores[np.triu_indices(len(embeddings), k=1)]
    return float((upper >= threshold).mean()), int(upper.size)


@click.command(cls=SiameseCommand)
@click.argument("cache", type=click.Path(exists=True, path_type=Path))
@click.argument("labels", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "models", multiple=True, required=True,
              type=click.Path(exists=True, path_type=Path))
@click.option("--half", type=click.Choice(["all", "even", "odd"]), default="all",
              show_default=True, help="Every other image of the sorted list, or all.")
def main(cache: Path, labels: Path, models: tuple[Path, ...], half: str) -> None:
    """Print a markdown table: per race x gender group and overall, each model's FMR."""
    groups = read_labels(labels)
    faces = open_prepared(cache)
    by_path = {r.path: r for r in faces.records if r.path in groups and r.detected}
    if not by_path:
        raise DatasetError(f"no image of {labels} is in the cache {cache}")
    records = [by_path[path] for path in alternate_half(list(by_path), half)]
    crops = np.stack([np.asarray(faces.crops[r.row]) for r in records])
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        members[groups[record.path]].append(i)
    columns = []
    for path in models:
        embedder = Embedder(path)
        vectors = embedder.embed(crops)
        info = embedder.info
        rows = {group: false_match_rate(vectors[index], info.threshold)
                for group, index in sorted(members.items())}
        within = sum(rate * pairs for rate, pairs in rows.values()) / sum(
            pairs for _, pairs in rows.values())
        overall = false_match_rate(vectors, info.threshold)[0]
        columns.append((f"{info.arch} {info.variant} (threshold {info.threshold:.3f}, "
                        f"FAR {info.threshold_far:g})", rows, within, overall))
    click.echo("| race | gender | images | impostor pairs | "
               + " | ".join(name for name, *_ in columns) + " |")
    click.echo("| --- | --- | --- | --- |" + " --- |" * len(columns))
    for group, index in sorted(members.items()):
        pairs = columns[0][1][group][1]
        cells = " | ".join(f"{100 * rows[group][0]:.3f}%" for _, rows, *_ in columns)
        click.echo(f"| {group[0]} | {group[1]} | {len(index)} | {pairs:,} | {cells} |")
    click.echo("| all groups | within group | | | "
               + " | ".join(f"{100 * w:.3f}%" for *_, w, _ in columns) + " |")
    click.echo(f"| all | any pair | {len(records)} | {len(records) * (len(records) - 1) // 2:,} | "
               + " | ".join(f"{100 * o:.3f}%" for *_, o in columns) + " |")


if __name__ == "__main__":
    main()
