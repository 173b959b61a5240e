"""Labeled Faces in the Wild read from an extracted tree and its official protocol files.

torchvision's LFW classes need the original archives; this reader needs only the extracted
images (`lfw/`, `lfw_funneled/` or `lfw-deepfunneled/`) and the protocol text files beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from siamese.runtime.errors import DatasetError
from siamese.train.datasets import FaceImage

IMAGE_DIRS = ("lfw-deepfunneled", "lfw_funneled", "lfw")


@dataclass(frozen=True)
class Pair:
    """Two LFW images (paths relative to the image root) and whether they show the same person."""

    left: str
    right: str
    same: bool


def image_path(name: str, number: int) -> str:
    """LFW's file name for the `number`-th (1-based) image of `name`, relative to the image root."""
    return f"{name}/{name}_{number:04d}.jpg"


def read_people_file(path: Path) -> dict[str, int]:
    """An LFW people file (a count, then 'name images' lines), e.g. peopleDevTrain.txt."""
    lines = _protocol_lines(path)
    count = _count(lines, 0, path)
    if len(lines) != count + 1:
        raise DatasetError(f"{path}: header says {count} people, found {len(lines) - 1}")
    return _people(lines[1:], path, 2)


def _protocol_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"LFW protocol file missing: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _count(lines: list[str], index: int, path: Path) -> int:
    try:
        return int(lines[index].split()[0])
    except (IndexError, ValueError):
        raise DatasetError(f"{path}: expected a count on line {index + 1}") from None


def _people(lines: list[str], path: Path, first_line: int) -> dict[str, int]:
    people = {}
    for offset, line in enumerate(lines):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DatasetError(f"{path}: line {first_line + offset} is not 'name count'")
        people[fields[0]] = int(fields[1])
    return people


class LFW:
    """An extracted LFW tree. Protocol files are read on first use and validated.

    >>> lfw = LFW("data/lfw")
    >>> len(lfw.view1_test_pairs), len(lfw.view2_folds)
    (1000, 10)
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"LFW root not found: {self.root}")
        found = [self.root / d for d in IMAGE_DIRS if (self.root / d).is_dir()]
        if not found:
            raise DatasetError(
                f"no LFW image folder in {self.root} (expected one of {', '.join(IMAGE_DIRS)})")
        self.image_root = found[0]

    @cached_property
    def images(self) -> list[FaceImage]:
        """Every image in the tree, sorted by person then file name."""
        images = [
            FaceImage(path=f"{person.name}/{file.name}", identity=person.name)
            for person in sorted(p for p in self.image_root.iterdir() if p.is_dir())
            for file in sorted(person.glob("*.jpg"))
        ]
        if not images:
            raise DatasetError(f"no .jpg images under {self.image_root}")
        return images

    @cached_property
    def identities(self) -> dict[str, int]:
        """Number of images per person."""
        counts: dict[str, int] = {}
        for image in self.images:
            counts[image.identity] = counts.get(image.identity, 0) + 1
        return counts

    @cached_property
    def view1_train_people(self) -> dict[str, int]:
        return read_people_file(self.root / "peopleDevTrain.txt")

    @cached_property
    def view1_test_people(self) -> dict[str, int]:
        return read_people_file(self.root / "peopleDevTest.txt")

    @cached_property
    def view1_train_pairs(self) -> list[Pair]:
        return self._read_pairs("pairsDevTrain.txt")[0]

    @cached_property
    def view1_test_pairs(self) -> list[Pair]:
        return self._read_pairs("pairsDevTest.txt")[0]

    @cached_property
    def view2_folds(self) -> list[list[Pair]]:
        """The ten folds of pairs.txt (300 matched then 300 mismatched pairs each)."""
        return self._read_pairs("pairs.txt")

    @cached_property
    def view2_people_folds(self) -> list[dict[str, int]]:
        """The ten people sets of people.txt."""
        path = self.root / "people.txt"
        lines = _protocol_lines(path)
        folds, pos = [], 1
        for _ in range(_count(lines, 0, path)):
            count = _count(lines, pos, path)
            folds.append(_people(lines[pos + 1:pos + 1 + count], path, pos + 2))
            pos += 1 + count
        return folds

    def check(self) -> None:
        """Read every protocol file and check that every image they name exists."""
        pairs = self.view1_train_pairs + self.view1_test_pairs
        pairs += [pair for fold in self.view2_folds for pair in fold]
        people = [self.view1_train_people, self.view1_test_people, *self.view2_people_folds]
        for group in people:
            for name, count in group.items():
                self._require_image(image_path(name, count), "people file")
        for pair in pairs:
            self._require_image(pair.left, "pairs file")
            self._require_image(pair.right, "pairs file")

    def _require_image(self, rel: str, source: str) -> None:
        if not (self.image_root / rel).is_file():
            raise DatasetError(f"image named in a {source} is missing: {self.image_root / rel}")

    def _read_pairs(self, name: str) -> list[list[Pair]]:
        """Pairs files: a header 'folds per_fold' (or just 'per_fold' for one fold), then per fold
        `per_fold` matched lines 'name i j' and `per_fold` mismatched lines 'name i name j'."""
        lines = _protocol_lines(self.root / name)
        header = lines[0].split()
        try:
            folds, per_fold = (1, int(header[0])) if len(header) == 1 else map(int, header[:2])
        except ValueError:
            raise DatasetError(f"{self.root / name}: malformed header {lines[0]!r}") from None
        if len(lines) != 1 + folds * 2 * per_fold:
            raise DatasetError(f"{self.root / name}: expected {folds * 2 * per_fold} pairs, found "
                               f"{len(lines) - 1}")
        result = []
        for fold in range(folds):
            start = 1 + fold * 2 * per_fold
            pairs = []
            for number, line in enumerate(lines[start:start + 2 * per_fold], start=start + 1):
                pairs.append(self._pair(line, same=number < start + 1 + per_fold, name=name,
                                        number=number))
            result.append(pairs)
        return result

    def _pair(self, line: str, same: bool, name: str, number: int) -> Pair:
        fields = line.split()
        try:
            if same and len(fields) == 3:
                return Pair(image_path(fields[0], int(fields[1])),
                            image_path(fields[0], int(fields[2])), True)
            if not same and len(fields) == 4:
                return Pair(image_path(fields[0], int(fields[1])),
                            image_path(fields[2], int(fields[3])), False)
        except ValueError:
            pass
        kind = "'name i j'" if same else "'name1 i name2 j'"
        raise DatasetError(f"{self.root / name}: line {number} is not a {kind} pair")
