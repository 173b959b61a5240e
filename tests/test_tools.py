import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from siamese.runtime.verifier import DEFAULT_MODEL

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
                          "--lfw-root", str(LFW_MINI), "--allow-unproven-far"],  # 16 pairs
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "LFW View 1: 100.00% at the held-out threshold" in run.stdout


def test_demographic_table_counts_pairs_per_group_and_halves(mini_faces, tmp_path):
    """tools/demographics.py on the LFW fixture with made-up group labels: one row per group
    with n(n-1)/2 pairs, and --half odd measures on the other half of --half even's images."""
    detected = sorted(r.path for r in mini_faces.records if r.detected)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,age,gender,race\n" + "".join(
        f"{path},20-29,{'Male' if i % 2 else 'Female'},Group{i % 3}\n"
        for i, path in enumerate(detected)))
    tool = str(TOOLS / "demographics.py")

    def table(half: str) -> dict[str, list[str]]:
        run = subprocess.run([sys.executable, tool, str(mini_faces.directory), str(labels),
                              "--model", str(DEFAULT_MODEL), "--half", half],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        rows = [line.strip("| ").split(" | ") for line in run.stdout.splitlines()[2:]]
        return {f"{row[0]} {row[1]}": row for row in rows}

    everything, odd = table("all"), table("odd")
    assert len(everything) == 6 + 2  # 3 x 2 groups, within-group and any-pair rows
    for row in everything.values():
        if row[0].startswith("Group"):
            n = int(row[2])
            assert int(row[3].replace(",", "")) == n * (n - 1) // 2
            assert 0.0 <= float(row[4].rstrip("%")) <= 100.0
    assert int(everything["all any pair"][2]) == len(detected)
    assert int(odd["all any pair"][2]) == len(detected) // 2


def test_augmented_views_are_a_cache_with_a_teacher_target_each(mini_faces, tmp_path):
    from siamese.train.datasets import split_people
    from siamese.train.face_cache import open_prepared

    people = LFW_MINI / "peopleDevTrain.txt"
    tool = str(TOOLS / "teacher_embeddings.py")
    teacher = Path(DEFAULT_MODEL).with_name("siamese_edge.onnx")
    args = [sys.executable, tool, str(mini_faces.directory), str(tmp_path / "views.npz"),
            "--people", str(people), "--teacher", str(teacher), "--views", "2",
            "--views-dir", str(tmp_path / "views")]
    run = subprocess.run(args, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    views = open_prepared(tmp_path / "views")
    names = {line.split()[0] for line in people.read_text().splitlines()[1:] if line.strip()}
    train, held_out = split_people(sorted(names), 0.1, 0)
    originals = [r for r in mini_faces.records if r.identity in train]
    assert len(views) == 2 * len(originals) and held_out
    assert not {r.identity for r in views.records} & held_out  # validation people stay unseen
    first = views.records[0]
    assert first.path == f"{originals[0].path}#view0"
    assert views.records[1].path == f"{originals[0].path}#view1"
    source = np.asarray(mini_faces.crops[originals[0].row]).astype(int)
    assert np.abs(np.asarray(views.crops[0]).astype(int) - source).mean() > 1  # augmented
    assert not np.array_equal(views.crops[0], views.crops[1])
    data = np.load(tmp_path / "views.npz")
    assert list(data["paths"]) == [r.path for r in views.records]
    assert data["embeddings"].shape == (len(views), 128)
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 2 and "exists" in again.stderr


def test_the_gpu_recipe_of_the_edge_model_runs_end_to_end_on_a_cpu(mini_faces, tmp_path):
    """tools/gpu_recipes.py's online-SFace and cached-SFace recipes, as a lent GPU would run them
    (carry folder in, bundle out), here on the CPU with the LFW fixture and a tiny budget."""
    import shutil
    import tarfile

    from siamese.train.checkpoint import Checkpoint

    people = LFW_MINI / "peopleDevTrain.txt"
    carry = tmp_path / "carry"
    (carry / "lfw_protocol").mkdir(parents=True)
    for text in LFW_MINI.glob("*.txt"):
        shutil.copy(text, carry / "lfw_protocol")
    sface = Path(DEFAULT_MODEL).with_name("sface.onnx")
    for tool, args in (("pack_face_cache.py", ["pack", str(mini_faces.directory),
                                               str(carry / "faces.npz"), "--people", str(people)]),
                       ("teacher_embeddings.py", [str(mini_faces.directory),
                                                  str(carry / "sface.npz"), "--people",
                                                  str(people), "--teacher", str(sface)]),
                       ("gpu_recipes.py", ["--carry", str(carry), "--out", str(tmp_path / "out"),
                                           "--work", str(tmp_path / "work"), "--device", "cpu",
                                           "--budget", "30", "--only", "sface-online-l",
                                           "--only", "sface-cached-l"])):
        run = subprocess.run([sys.executable, str(TOOLS / tool), *args], capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {name: row["model"] for name, row in summary.items()} == {
        "sface-online-l": True, "sface-cached-l": True}
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(b"".join(p.read_bytes()
                                for p in sorted((tmp_path / "out").glob("bundle.part.*"))))
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "runs", filter="data")
    online = Checkpoint.load(tmp_path / "runs" / "sface-online-l" / "model.pt")
    cached = Checkpoint.load(tmp_path / "runs" / "sface-cached-l" / "model.pt")
    assert online.config.arch == cached.config.arch == "edge-resnet-l"
    assert online.config.distill_online.endswith("sface.onnx") and online.config.distill is None
    assert cached.config.distill.endswith("sface.npz") and cached.preprocess.size == 112


def test_bench_peer_runs_on_the_fixtures_without_the_peer(monkeypatch):
    from click.testing import CliRunner

    monkeypatch.setitem(sys.modules, "verifyface", None)  # as where it is not installed
    result = CliRunner().invoke(_tool("bench_peer").main,
                                ["--images", str(LFW_MINI / "lfw-deepfunneled"), "--count", "3"])
    assert result.exit_code == 0, result.output
    assert "verifyface not installed" in result.output
    names = ("door end to end", "photos end to end", "photos, same person",
             "photos, SFace alone", "photos embedding", "detection")
    rows = [line for line in result.output.splitlines() if line.startswith(names)]
    assert [next(n for n in names if row.startswith(n)) for row in rows] == list(names)
    for row in rows:  # project ms, then no peer figures
        project_ms, peer_ms, ratio = row.split()[-3:]
        assert float(project_ms) > 0 and peer_ms == ratio == "-"
    assert re.search(r"edge screen decided \d+\.\d% of 'photos end to end', \d+\.\d% of "
                     r"'photos, same person'", result.output)
