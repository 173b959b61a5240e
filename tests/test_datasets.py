import shutil

import pytest
from siamese.runtime import DatasetError
from siamese.train.datasets import read_folder
from siamese.train.lfw import LFW

from .conftest import ATT_FACES, LFW_MINI


def test_lfw_fixture_reads_every_view():
    lfw = LFW(LFW_MINI)
    assert lfw.image_root.name == "lfw-deepfunneled"
    assert len(lfw.identities) == 16 and len(lfw.images) == 64
    assert len(lfw.view1_train_people) == 10 and len(lfw.view1_test_people) == 6
    assert not set(lfw.view1_train_people) & set(lfw.view1_test_people)
    assert len(lfw.view1_train_pairs) == 16 and len(lfw.view1_test_pairs) == 16
    assert [p.same for p in lfw.view1_test_pairs] == [True] * 8 + [False] * 8
    assert len(lfw.view2_folds) == 2 and all(len(fold) == 16 for fold in lfw.view2_folds)
    assert len(lfw.view2_people_folds) == 2
    lfw.check()


def test_full_lfw_protocol_counts(lfw_root):
    lfw = LFW(lfw_root)
    assert len(lfw.images) == 13233 and len(lfw.identities) == 5749
    assert len(lfw.view1_train_people) == 4038 and len(lfw.view1_test_people) == 1711
    assert len(lfw.view1_train_pairs) == 2200 and len(lfw.view1_test_pairs) == 1000
    assert [len(fold) for fold in lfw.view2_folds] == [600] * 10
    lfw.check()


@pytest.fixture
def lfw_copy(tmp_path):
    root = tmp_path / "lfw"
    shutil.copytree(LFW_MINI, root)
    return root


def test_missing_protocol_file_is_named(lfw_copy):
    (lfw_copy / "pairsDevTest.txt").unlink()
    with pytest.raises(DatasetError, match="pairsDevTest.txt"):
        _ = LFW(lfw_copy).view1_test_pairs


def test_malformed_pair_line_is_named(lfw_copy):
    path = lfw_copy / "pairsDevTrain.txt"
    lines = path.read_text().splitlines()
    lines[3] = "Somebody\tone\ttwo"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="pairsDevTrain.txt: line 4"):
        _ = LFW(lfw_copy).view1_train_pairs


def test_missing_image_named_in_a_pairs_file_is_named(lfw_copy):
    victim = next((lfw_copy / "lfw-deepfunneled").glob("*/*_0002.jpg"))
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        LFW(lfw_copy).check()


def test_missing_lfw_root_and_image_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        LFW(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="lfw-deepfunneled"):
        LFW(tmp_path)


def test_folder_reader_groups_by_person(tmp_path):
    images = read_folder(ATT_FACES)
    assert len(images) == 30 and len({image.identity for image in images}) == 5
    assert images[0].path == "s1/1.pgm"
    with pytest.raises(DatasetError, match="no images"):
        read_folder(tmp_path)
