import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .conftest import LFW_MINI

TOOLS = Path(__file__).parent.parent / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_morphs_pair_different_people_with_weights_in_range():
    teacher = _tool("teacher_embeddings")
    labels = np.array(["a", "a", "b", "c", "c", "c"])
    pairs, weights = teacher.draw_morphs(labels, 500, seed=3)
    assert pairs.shape == (500, 2) and len(weights) == 500
    assert (labels[pairs[:, 0]] != labels[pairs[:, 1]]).all()
    assert ((weights >= 0.3) & (weights <= 0.7)).all()
    a, b = np.full((2, 2, 3), 200, np.uint8), np.full((2, 2, 3), 100, np.uint8)
    assert (teacher.morph(a, b, 0.25) == 125).all()


def test_pack_of_some_people_unpacks_to_their_crops(mini_faces, tmp_path):
    people = (LFW_MINI / "peopleDevTrain.txt")
    names = {line.split()[0] for line in people.read_text().splitlines()[1:] if line.strip()}
    tool = str(TOOLS / "pack_face_cache.py")
    packed, out = tmp_path / "faces.npz", tmp_path / "faces"
    for args in (["pack", str(mini_faces.directory), str(packed), "--people", str(people)],
                 ["unpack", str(packed), str(out)]):
        run = subprocess.run([sys.executable, tool, *args], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    records = json.loads((out / "manifest.json").read_text())["records"]
    assert records and {row[1] for row in records} == names
    crops = np.load(out / "crops.npy")
    for row in records[:5]:
        original = np.asarray(mini_faces.crops[row[5]]).astype(int)
        assert np.abs(crops[row[5]].astype(int) - original).mean() < 4  # JPEG quality 95


def test_teacher_evaluation_runs_the_students_protocol(mini_faces, tmp_path):
    from siamese.train.lfw import LFW

    lfw = LFW(LFW_MINI)
    rng = np.random.default_rng(0)
    for name, people in (("train", lfw.view1_train_people), ("test", lfw.view1_test_people)):
        paths = np.array([r.path for r in mini_faces.select(set(people))])
        # one direction per person plus noise: a teacher that knows who is who
        centres = {p: rng.normal(size=128) for p in people}
        vectors = np.stack([centres[p.split("/")[0]] + 0.3 * rng.normal(size=128) for p in paths])
        np.savez(tmp_path / f"{name}.npz", paths=paths, embeddings=vectors.astype(np.float32))
    run = subprocess.run([sys.executable, str(TOOLS / "eval_teacher.py"),
                          str(tmp_path / "train.npz"), str(tmp_path / "test.npz"),
                          "--lfw-root", str(LFW_MINI)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "LFW View 1: 100.00% at the held-out threshold" in run.stdout
