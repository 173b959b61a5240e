"""Write a miniature LFW tree (images plus consistent protocol files) from a full LFW.

Used to build the committed test fixture tests/fixtures/lfw_mini:

    python tools/make_lfw_subset.py --lfw-root ../shared/data/lfw --out tests/fixtures/lfw_mini
"""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseCommand
from siamese.train.lfw import LFW, image_path


def _pairs_lines(people: dict[str, int], count: int, rng: random.Random) -> list[str]:
    """`count` matched then `count` mismatched pair lines among `people`."""
    multi = [name for name, n in people.items() if n >= 2]
    matched = [(name, i, j) for name in multi
               for i, j in itertools.combinations(range(1, people[name] + 1), 2)]
    mismatched = [(a, i, b, j) for a, b in itertools.combinations(sorted(people), 2)
                  for i in range(1, people[a] + 1) for j in range(1, people[b] + 1)]
    if len(matched) < count:
        raise click.ClickException(f"only {len(matched)} matched pairs available, need {count}")
    lines = ["\t".join(map(str, p)) for p in sorted(rng.sample(matched, count))]
    return lines + ["\t".join(map(str, p)) for p in sorted(rng.sample(mismatched, count))]


def _people_lines(people: dict[str, int]) -> list[str]:
    return [f"{name}\t{n}" for name, n in sorted(people.items())]


@click.command(cls=SiameseCommand)
@click.option("--lfw-root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--train-people", default=10, show_default=True)
@click.option("--test-people", default=6, show_default=True)
@click.option("--images-per-person", default=4, show_default=True)
@click.option("--pairs", default=8, show_default=True, help="Matched (and mismatched) per file.")
@click.option("--seed", default=0, show_default=True)
def main(lfw_root: Path, out: Path, train_people: int, test_people: int, images_per_person: int,
         pairs: int, seed: int) -> None:
    """Copy a few people of each View 1 side and write protocol files that name only them."""
    rng = random.Random(seed)
    lfw = LFW(lfw_root)

    def pick(source: dict[str, int], k: int) -> dict[str, int]:
        eligible = sorted(name for name, n in source.items() if n >= images_per_person)
        return {name: images_per_person for name in sorted(rng.sample(eligible, k))}

    train = pick(lfw.view1_train_people, train_people)
    test = pick(lfw.view1_test_people, test_people)
    image_dir = out / lfw.image_root.name
    for name, count in {**train, **test}.items():
        (image_dir / name).mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            shutil.copyfile(lfw.image_root / image_path(name, number),
                            image_dir / image_path(name, number))
    (out / "peopleDevTrain.txt").write_text("\n".join([str(len(train)), *_people_lines(train)])
                                            + "\n")
    (out / "peopleDevTest.txt").write_text("\n".join([str(len(test)), *_people_lines(test)]) + "\n")
    (out / "pairsDevTrain.txt").write_text("\n".join([str(pairs), *_pairs_lines(train, pairs, rng)])
                                           + "\n")
    (out / "pairsDevTest.txt").write_text("\n".join([str(pairs), *_pairs_lines(test, pairs, rng)])
                                          + "\n")
    folds = [train, test]  # View 2: two folds, disjoint people, as in the real protocol
    (out / "people.txt").write_text("\n".join(
        [str(len(folds))] + [line for fold in folds
                             for line in [str(len(fold)), *_people_lines(fold)]]) + "\n")
    (out / "pairs.txt").write_text("\n".join(
        [f"{len(folds)}\t{pairs}"] + [line for fold in folds
                                      for line in _pairs_lines(fold, pairs, rng)]) + "\n")
    click.echo(f"wrote {len(train) + len(test)} people to {out}")


if __name__ == "__main__":
    main()
