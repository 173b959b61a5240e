import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from siamese.train import face_cache
from siamese.train.datasets import read_folder

from .conftest import ATT_FACES, LFW_MINI


@pytest.fixture
def faces_copy(tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(ATT_FACES, root)
    return root


def _prepare(root, cache_root):
    return face_cache.prepare("folder", root, read_folder(root), cache_root, workers=2,
                              progress=False)


def test_prepare_aligns_reuses_and_invalidates(faces_copy, cache_root):
    faces, summary = _prepare(faces_copy, cache_root)
    assert (summary.images, summary.identities, summary.skipped) == (30, 5, 0)
    assert summary.detection_rate == 1.0 and not summary.reused
    assert faces.crop("s1/1.pgm").shape == (112, 112, 3)
    _, again = _prepare(faces_copy, cache_root)
    assert again.reused
    target = faces_copy / "s2" / "3.pgm"
    shutil.copyfile(faces_copy / "s2" / "4.pgm", target)
    os.utime(target, ns=(1, 1))
    changed, summary = _prepare(faces_copy, cache_root)
    assert not summary.reused
    np.testing.assert_array_equal(changed.crop("s2/3.pgm"), changed.crop("s2/4.pgm"))


def test_corrupt_image_is_reported_and_skipped(faces_copy, cache_root):
    (faces_copy / "s3" / "2.pgm").write_bytes(b"P5 broken")
    faces, summary = _prepare(faces_copy, cache_root)
    assert summary.skipped == 1 and summary.skipped_files == ["s3/2.pgm"]
    assert len(faces) == 29 and "s3/2.pgm" not in faces


def test_image_without_a_face_gets_a_flagged_fallback(faces_copy, cache_root):
    blank = faces_copy / "s4" / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((112, 92), 127, np.uint8))
    faces, summary = _prepare(faces_copy, cache_root)
    assert summary.fallback == 1
    record = next(r for r in faces.records if r.path == "s4/blank.png")
    assert not record.detected


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "siamese.train.data_cli", *args],
                          capture_output=True, text=True, env=env)


def test_cli_prepares_lfw_and_prints_the_detection_rate(tmp_path):
    result = _cli("prepare", "--lfw-root", str(LFW_MINI), "--cache-dir", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "64 images, 16 identities, face found in 64/64 (100.00%)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--folder", "/no/such/folder"], "face folder not found"),
    (["--lfw-root", "/no/such/lfw"], "LFW root not found"),
    ([], "exactly one of"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = _cli("prepare", *args, "--cache-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
