"""The everyday commands on committed fixtures: galleries, identification, site calibration and
embeddings, each through its command line."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from siamese.runtime.model_zoo import default_model
from siamese.runtime.storage.gallery import Gallery, GalleryIndex
from siamese.runtime.verifier import DEFAULT_MODEL, Verifier

from .conftest import LFW_MINI

PEOPLE = LFW_MINI / "lfw-deepfunneled"
ENROLLED = ("Andy_Roddick", "Joschka_Fischer", "Gray_Davis")
ENTRIES = {"gallery": ("gallery", "gallery_main"), "identify": ("gallery", "identify_main"),
           "calibrate": ("batch", "calibrate_main"), "embed": ("batch", "embed_main"),
           "verify": ("verify", "verify_main")}

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no packaged default model")


def run(command: str, *args: str) -> subprocess.CompletedProcess:
    module, entry = ENTRIES[command]
    code = f"from siamese.runtime.commands.{module} import {entry}; {entry}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300)


def lines(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def threshold() -> str:
    return str(Verifier.from_model(default_model("photos")).embedder.info.accuracy_threshold)


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """Three people's first two photos as <person>/<images>."""
    root = tmp_path_factory.mktemp("people")
    for name in ENROLLED:
        (root / name).mkdir()
        for photo in sorted((PEOPLE / name).glob("*.jpg"))[:2]:
            shutil.copy(photo, root / name)
    return root


@pytest.fixture(scope="module")
def gallery(people, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gallery") / "site.db"
    result = run("gallery", "import", str(path), str(people), "--cache-dir",
                 str(path.parent / "c"))
    assert result.returncode == 0, result.stderr
    assert [e["name"] for e in lines(result) if e.get("status") == "enrolled"] == sorted(ENROLLED)
    return path


def test_gallery_lists_people_and_is_private(gallery):
    listed = run("gallery", "list", str(gallery))
    assert [e["name"] for e in lines(listed)] == sorted(ENROLLED)
    assert oct(gallery.stat().st_mode & 0o777) == "0o600"


def test_identify_names_enrolled_people_and_rejects_strangers(gallery):
    probe = sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[3]
    stranger = sorted((PEOPLE / "Madonna").glob("*.jpg"))[0]
    result = run("identify", "--gallery", str(gallery), "--threshold", threshold(), "--top-k",
                 "2", str(probe), str(stranger))
    assert result.returncode == 0, result.stderr
    by_source = {}
    for row in lines(result):
        by_source.setdefault(Path(row["source"]).name, []).append(row)
    andy = by_source[probe.name][0]
    assert andy["identity"] == "Andy_Roddick" and len(andy["candidates"]) == 2
    assert andy["candidates"][0]["score"] >= andy["candidates"][1]["score"]
    assert all(row["identity"] == "unknown" for row in by_source[stranger.name])


def test_identify_searches_folders_recursively_and_writes_csv(gallery, tmp_path):
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for photo in sorted((PEOPLE / "Gray_Davis").glob("*.jpg"))[2:]:
        shutil.copy(photo, nested)
    result = run("identify", "--gallery", str(gallery), "--csv", "--threshold", threshold(),
                 str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {Path(r["source"]).name for r in rows} == {"Gray_Davis_0003.jpg", "Gray_Davis_0004.jpg"}
    assert any(r["identity"] == "Gray_Davis" for r in rows), result.stdout


def test_identify_reports_every_face_in_an_image(gallery, tmp_path):
    andy = cv2.imread(str(sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[2]))
    joschka = cv2.imread(str(sorted((PEOPLE / "Joschka_Fischer").glob("*.jpg"))[2]))
    both = tmp_path / "both.jpg"
    cv2.imwrite(str(both), np.concatenate([andy, joschka], axis=1))
    result = run("identify", "--gallery", str(gallery), "--threshold", threshold(), str(both))
    assert {row["identity"] for row in lines(result)} >= {"Andy_Roddick", "Joschka_Fischer"}


def test_identify_on_a_video_decides_per_frame(gallery, tmp_path):
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (250, 250))
    for _ in range(3):
        writer.write(cv2.imread(str(sorted((PEOPLE / "Joschka_Fischer").glob("*.jpg"))[2])))
    writer.release()
    result = run("identify", "--gallery", str(gallery), "--threshold", threshold(), "--camera",
                 str(video))
    largest = [row for row in lines(result) if row["face"] == 0]  # this photo has a bystander
    assert [row["frame"] for row in largest] == [0, 1, 2]
    assert all(row["identity"] == "Joschka_Fischer" for row in largest)


def test_lookalikes_are_warned_about(tmp_path):
    """The same person enrolled under two names is the closest possible lookalike."""
    path = tmp_path / "g.db"
    photo = str(sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[0])
    assert run("gallery", "add", str(path), "andy", photo).returncode == 0
    second = run("gallery", "add", str(path), "andrew", photo)
    warning = [e for e in lines(second) if e.get("warning") == "lookalike"]
    assert warning and sorted(warning[0]["names"]) == ["andrew", "andy"]


def test_gallery_rows_are_signed(tmp_path):
    path = tmp_path / "g.db"
    photo = str(sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[0])
    assert run("gallery", "add", str(path), "andy", photo).returncode == 0
    with sqlite3.connect(path) as db:
        text = db.execute("SELECT template FROM people").fetchone()[0]
        data = json.loads(text)
        data["name"] = "mallory"
        db.execute("UPDATE people SET template = ?", (json.dumps(data),))
    result = run("identify", "--gallery", str(path), photo)
    # the signed manifest of the people set catches the edited row first
    assert result.returncode == 2 and "differs from its signed manifest" in result.stderr


def test_remove_and_duplicate_names(tmp_path):
    path = tmp_path / "g.db"
    photo = str(sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[0])
    assert run("gallery", "add", str(path), "andy", photo).returncode == 0
    again = run("gallery", "add", str(path), "andy", photo)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert run("gallery", "remove", str(path), "andy").returncode == 0
    assert run("gallery", "remove", str(path), "andy").returncode == 1


def test_concurrent_writers_keep_every_person(tmp_path):
    path = tmp_path / "g.db"
    verifier = Verifier.from_model(default_model("photos"), cache_dir=tmp_path / "c")
    Gallery.open(path, verifier, create=True).close()
    processes = [subprocess.Popen([sys.executable, "-c", "from siamese.runtime.commands.gallery "
                                   "import gallery_main; gallery_main()", "add", str(path), name,
                                   str(sorted((PEOPLE / name).glob("*.jpg"))[0])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for name in ENROLLED]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0]
    with Gallery.open(path, verifier) as gallery:
        assert gallery.names() == sorted(ENROLLED)


def test_search_returns_the_true_top_k():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(500, 16)).astype(np.float32)
    index = GalleryIndex([f"p{i}" for i in range(500)], means, "cosine")
    queries = rng.normal(size=(4, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    brute = queries @ (means / np.linalg.norm(means, axis=1, keepdims=True)).T
    for matches, row in zip(index.search(queries, k=5), brute, strict=True):
        assert [m.name for m in matches] == [f"p{i}" for i in np.argsort(-row)[:5]]


def test_site_calibration_is_used_by_verify_and_signed(tmp_path):
    site = tmp_path / "site.json"
    result = run("calibrate", "--folder", str(PEOPLE), "--far", "0.01", "--out", str(site),
                 "--allow-below-model", "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    summary = lines(result)[0]
    assert summary["impostor_pairs"] > 1000 and summary["genuine_pairs"] > 50
    assert summary["measured_far"] <= summary["far_upper_95"] <= 0.01 and "warning" in summary
    andy = sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))
    verified = run("verify", "--ref", str(andy[0]), "--image", str(andy[2]), "--site", str(site))
    assert lines(verified)[-1]["threshold"] == round(summary["threshold"], 4)
    data = json.loads(site.read_text())
    data["threshold"] = 0.01
    site.write_text(json.dumps(data))
    tampered = run("verify", "--ref", str(andy[0]), "--image", str(andy[2]), "--site", str(site))
    assert tampered.returncode == 2 and "integrity check" in tampered.stderr


def test_calibration_refuses_when_pairs_are_few(tmp_path):
    result = run("calibrate", "--folder", str(PEOPLE), "--far", "1e-5", "--out",
                 str(tmp_path / "s.json"))
    assert result.returncode == 2 and "impostor pairs" in result.stderr
    assert "people" in result.stderr and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_embed_writes_every_face_of_a_folder(suffix, tmp_path):
    out = tmp_path / f"e{suffix}"
    result = run("embed", str(PEOPLE / "Andy_Roddick"), "--out", str(out), "--batch-size", "3")
    assert result.returncode == 0, result.stderr
    verifier = Verifier.from_model(default_model("photos"), cache_dir=tmp_path)
    first = sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))[0]
    if suffix == ".npz":
        data = np.load(out)
        assert data["embeddings"].shape == (4, 128) and len(data["paths"]) == 4
        vector = data["embeddings"][list(data["paths"]).index(first.name)]
    else:
        rows = list(csv.reader(out.open()))
        assert len(rows) == 5 and len(rows[1]) == 6 + 128 + 1 and rows[0][-1] == "quality_flags"
        vector = np.array([float(v) for v in next(r for r in rows if r[0] == first.name)[6:-1]])
    np.testing.assert_allclose(vector, verifier.reference_embedding(first)[0], atol=1e-5)
