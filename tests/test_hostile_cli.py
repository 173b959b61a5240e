"""Issue 30, as a new user and an attacker meet it: folders that cannot be listed cleanly, an
empty gallery, photos that must never reach the disk, one model per gallery, commands of an
extra that is not installed, and a gallery that is one file.

Each case names the guarantee it shows (docs/RELIABILITY.md lists them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from siamese.runtime.errors import ConfigError, ReferenceError
from siamese.runtime.verifier import DEFAULT_MODEL, Verifier

from .conftest import ATT_FACES
from .test_hostile import ANDY, JOSCHKA, Run, cli, command

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no packaged default model")
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def _photos_with_loops(tmp_path: Path) -> Path:
    """Andy's first two photos beside a symlink loop and a link into it, both named .jpg."""
    folder = tmp_path / "andy"
    folder.mkdir()
    for photo in ANDY[:2]:
        shutil.copy(photo, folder / photo.name)
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "into_loop.jpg").symlink_to("loop.jpg")
    return folder


@pytest.fixture(scope="module")
def photos() -> Verifier:
    return Verifier.from_model(use="photos")


@pytest.fixture
def sface_gallery(tmp_path, photos) -> Path:
    from siamese.runtime.storage.gallery import Gallery

    path = tmp_path / "g" / "site.db"
    with Gallery.open(path, photos, create=True) as gallery:
        gallery.add(photos.enroll("andy", ANDY[:2]))
    return path


# --- symlink loops and unreadable entries: skipped and named, never exit 3 ----------------
def test_a_symlink_loop_in_a_reference_folder_is_skipped_and_named(tmp_path):
    folder = _photos_with_loops(tmp_path)
    enrolled = cli("enroll", "andy", str(folder), "--store", str(tmp_path / "a.json"),
                   cache=tmp_path / "c")
    assert enrolled.status == 0, enrolled.errors
    assert sorted(line.split(":")[0] for line in enrolled.errors) == [
        f"skipped {folder / 'into_loop.jpg'}", f"skipped {folder / 'loop.jpg'}"]
    verified = cli("verify", "--ref", str(folder), "--image", str(ANDY[2]), cache=tmp_path / "c")
    assert verified.status == 0, verified.errors
    assert any("loop.jpg" in line and "symbolic links" in line for line in verified.errors)


def test_a_symlink_loop_in_verifier_enroll_is_a_reference_error_naming_it(tmp_path, photos):
    folder = _photos_with_loops(tmp_path)
    with pytest.raises(ReferenceError, match="into_loop.jpg"):
        photos.enroll("andy", folder)
    from siamese.runtime.enrolment import enroll_skipping

    result = enroll_skipping(photos, "andy", folder)
    assert len(result.template.embeddings) == 2
    assert [Path(path).name for path, _ in result.skipped] == ["into_loop.jpg", "loop.jpg"]


def test_identify_skips_a_symlink_loop_in_a_folder_naming_it(tmp_path, sface_gallery):
    folder = _photos_with_loops(tmp_path)
    run = command("identify", "--gallery", str(sface_gallery), str(folder))
    assert run.status == 0, run.errors
    assert sorted(line.split(":")[0] for line in run.errors) == [
        f"skipped {folder / 'into_loop.jpg'}", f"skipped {folder / 'loop.jpg'}"]


@pytest.mark.skipif(ROOT_USER, reason="root reads files whatever their mode")
def test_an_unreadable_photo_and_folder_are_skipped_and_named(tmp_path, sface_gallery):
    folder = tmp_path / "andy"
    folder.mkdir()
    shutil.copy(ANDY[0], folder / "good.jpg")
    shutil.copy(ANDY[1], folder / "locked.jpg")
    (folder / "locked.jpg").chmod(0)
    (folder / "closed").mkdir()
    (folder / "closed").chmod(0)
    try:
        enrolled = cli("enroll", "andy", str(folder), "--store", str(tmp_path / "a.json"),
                       cache=tmp_path / "c")
        assert enrolled.status == 0 and "locked.jpg" in enrolled.errors[0], enrolled.errors
        run = command("identify", "--gallery", str(sface_gallery), str(folder))
        assert run.status == 0, run.errors
        assert {line.split(":")[0] for line in run.errors} == {
            f"skipped {folder / 'locked.jpg'}", f"skipped {folder / 'closed'}"}
    finally:
        (folder / "closed").chmod(0o700)


def test_identify_against_an_empty_gallery_is_one_line_exit_2(sface_gallery):
    command("gallery", "remove", str(sface_gallery), "andy")
    run = command("identify", "--gallery", str(sface_gallery), str(ANDY[0]))
    run.one_line(2, "nobody enrolled")


# --- item 3: uploaded photos never reach the disk -------------------------------------------
_WRITES: list[str] | None = None


def _record_writes(event: str, args: tuple) -> None:
    if _WRITES is None:
        return
    if event == "open" and len(args) == 3 and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1] or "", args[2] or 0
        if any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _WRITES.append(os.fsdecode(args[0]))
    elif event in ("tempfile.mkdtemp", "tempfile.mkstemp", "os.mkdir"):
        _WRITES.append(os.fsdecode(args[0]))


sys.addaudithook(_record_writes)  # inert unless a test sets _WRITES


def _upload(path: Path, name: str):
    from siamese.runtime.service.engine import Upload

    return Upload(path.read_bytes(), name)


def test_service_enrolment_writes_no_photo_anywhere(tmp_path):
    """A kill during enrolment cannot leave a face photo on disk: none is ever written (the
    only file written is the reference-embedding cache, which holds no image)."""
    global _WRITES
    from siamese.runtime.service.engine import Engine

    verifier = Verifier.from_model(cache_dir=tmp_path / "refs")
    engine = Engine(verifier, tmp_path / "people.db", workers=1, queue=1,
                    max_pixels=40_000_000, timeout_s=60)
    try:
        _WRITES = []
        enrolment = engine.enroll("andy", [_upload(ANDY[0], "image 1"),
                                           _upload(ANDY[2], "image 2")])
        writes, _WRITES = _WRITES, None
    finally:
        _WRITES = None
        engine.close()
    assert len(enrolment.template.embeddings) == 2
    assert writes, "the embedding cache should have been written (the hook saw nothing)"
    assert all(Path(w).resolve().is_relative_to((tmp_path / "refs").resolve())
               for w in writes), writes


def test_a_service_start_removes_photos_an_older_version_left(tmp_path, monkeypatch):
    import tempfile

    from siamese.runtime.service.engine import Engine

    temp = tmp_path / "tmp"
    (temp / "siamese-enrol-abc123").mkdir(parents=True)
    shutil.copy(ANDY[0], temp / "siamese-enrol-abc123" / "upload-1.img")
    (temp / "someone-else").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    Engine(Verifier.from_model(cache_dir=tmp_path / "refs"), tmp_path / "people.db", workers=1,
           queue=1, max_pixels=40_000_000, timeout_s=60).close()
    assert [p.name for p in temp.iterdir()] == ["someone-else"]


# --- item 10: API enrolment skips bad photos and says which ---------------------------------
def _blank_png() -> bytes:
    return cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))[1].tobytes()


def test_http_enrolment_skips_a_faceless_photo_and_names_it(tmp_path):
    httpx = pytest.importorskip("httpx")
    from .serve_support import start_server

    def bearer(key: str) -> dict:
        return {"Authorization": f"Bearer {key}"}

    running = start_server(tmp_path / "srv")
    try:
        url = f"{running.url}/v1/people/andy"
        files = [("images", ("a.jpg", ANDY[0].read_bytes(), "image/jpeg")),
                 ("images", ("blank.png", _blank_png(), "image/png")),
                 ("images", ("b.jpg", ANDY[2].read_bytes(), "image/jpeg"))]
        made = httpx.post(url, files=files, headers=bearer(running.admin), timeout=60)
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["images"] == 2 and body["used"] == ["image 1", "image 3"]
        assert [s["image"] for s in body["skipped"]] == ["image 2"]
        assert "no usable face" in body["skipped"][0]["reason"]
        bad = [("images", ("blank.png", _blank_png(), "image/png")),
               ("images", ("junk.jpg", b"not an image", "image/jpeg"))]
        refused = httpx.post(f"{running.url}/v1/people/nobody", files=bad,
                             headers=bearer(running.admin), timeout=60)
        assert refused.status_code == 422 and "0 of 2" in refused.json()["error"]
    finally:
        running.stop()


def test_verifier_enroll_takes_one_folder_as_a_string_or_path(tmp_path, photos):
    folder = tmp_path / "andy"
    folder.mkdir()
    for photo in ANDY[:2]:
        shutil.copy(photo, folder / photo.name)
    assert len(photos.enroll("andy", str(folder)).embeddings) == 2
    assert len(photos.enroll("andy", folder).embeddings) == 2
    with pytest.raises(ConfigError, match="list of paths"):
        photos.enroll("andy", 42)


# --- item 6: per-use defaults, one model per gallery ----------------------------------------
def test_the_readme_python_line_answers_as_siamese_compare(photos, tmp_path):
    first, second = EXAMPLES / "Abdullah_Gul" / "Abdullah_Gul_0001.jpg", \
        EXAMPLES / "Abdullah_Gul_0003.jpg"
    code = "from siamese.runtime.commands.verify import compare_main; compare_main()"
    result = subprocess.run([sys.executable, "-c", code, str(first), str(second),
                             "--cache-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=120)
    printed = json.loads(result.stdout)
    compared = Verifier.from_model(use="photos", cache_dir=tmp_path).compare(first, second)
    assert round(compared.score, 4) == printed["score"]
    assert compared.same_person == printed["same_person"] and compared.threshold == \
        pytest.approx(printed["threshold"], abs=1e-4)


def test_gallery_commands_use_the_model_the_gallery_records(tmp_path):
    from siamese.runtime.storage.gallery import Gallery

    door = Verifier.from_model()  # the service's default: edge
    path = tmp_path / "people.db"
    with Gallery.open(path, door, create=True) as gallery:
        gallery.add(door.enroll("andy", ANDY[:2]))
    listed = command("gallery", "list", str(path))
    assert listed.status == 0 and '"andy"' in listed.stdout, listed.errors
    found = command("identify", "--gallery", str(path), str(ANDY[2]))
    assert found.status == 0 and '"identity": "andy"' in found.stdout, found.errors
    command("gallery", "list", str(path), "--model", "sface").one_line(
        2, "was made with edge", "leave out --model")


def test_the_service_opens_a_gallery_with_its_recorded_model(tmp_path, sface_gallery, photos):
    pytest.importorskip("fastapi")
    from siamese.runtime.service.config import ServiceConfig
    from siamese.runtime.service.keys import add_key
    from siamese.runtime.service.state import Service

    keys = tmp_path / "keys.json"
    add_key(keys, "ops", "admin")
    service = Service.start(ServiceConfig(keys=keys, gallery=sface_gallery,
                                          audit=tmp_path / "audit.jsonl"))
    try:
        assert service.engine.base.embedder.fingerprint == photos.embedder.fingerprint
        assert [p["name"] for p in service.engine.people()] == ["andy"]
    finally:
        service.close()


# --- item 7: export commands without the train extra ----------------------------------------
_BLOCK = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
from siamese.export.cli import %s as entry
entry()
"""


@pytest.mark.parametrize("entry", ["main", "import_main"])
@pytest.mark.parametrize("args", [["--help"], ["model.onnx", "--out", "x"]])
def test_export_commands_without_torch_say_to_install_the_train_extra(entry, args, tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", _BLOCK % entry, *args], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    run = Run(result, time.monotonic() - started)
    run.one_line(2, "needs torch", '[train]"')
    assert not run.stdout and not list(tmp_path.iterdir())


# --- item 8: siamese-bench with no arguments ------------------------------------------------
def test_bench_without_arguments_times_the_packaged_embedding_models():
    from siamese.runtime.model_zoo import installed

    code = "from siamese.export.bench import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "--repeats", "1", "--threads", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines()
            if line.split()[0].endswith(".onnx")]
    assert list(dict.fromkeys(rows)) == [m.file for m in installed()]  # a row per engine
    assert "minifasnet" not in result.stdout


# --- item 9: siamese-eval on an ONNX model, and --resume alone ------------------------------
def test_eval_of_a_packaged_model_writes_under_runs_and_calls_no_one_held_out(tmp_path,
                                                                             monkeypatch):
    pytest.importorskip("torch")
    from click.testing import CliRunner
    from siamese.runtime.vision.detector import MODELS_DIR
    from siamese.train.cli import eval_main

    before = sorted(p.name for p in MODELS_DIR.rglob("*"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(eval_main, ["edge", "--folder", str(ATT_FACES), "--cache-dir",
                                            str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "eval-edge" / "report.json").is_file()
    assert "held-out" not in result.stdout and "training people unknown" in result.stdout
    assert sorted(p.name for p in MODELS_DIR.rglob("*")) == before


def test_resume_alone_continues_on_the_folder_the_run_remembers(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from click.testing import CliRunner
    from siamese.train import face_cache
    from siamese.train.checkpoint import TrainingSource
    from siamese.train.cli import train_main
    from siamese.train.config import PRESETS
    from siamese.train.datasets import read_folder
    from siamese.train.trainer import Trainer

    faces, _ = face_cache.prepare("folder", ATT_FACES, read_folder(ATT_FACES),
                                  tmp_path / "cache", workers=1, progress=False)
    config = PRESETS["first"].updated(arch="edge-resnet-s", epochs=2, warmup_epochs=0)
    trainer = Trainer(config, faces, faces.select(), tmp_path / "run",
                      TrainingSource("folder", str(ATT_FACES)), progress=False)
    monkeypatch.setattr(trainer, "run_epoch", lambda epoch: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    result = CliRunner().invoke(train_main, ["--resume", str(tmp_path / "run"), "--epochs", "1",
                                             "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "training edge-resnet-s" in result.stdout


# --- item 11: a gallery is one SQLite file --------------------------------------------------
def test_a_gallery_is_one_file_and_a_copy_taken_while_open_is_whole(tmp_path, photos):
    from siamese.runtime.storage.gallery import Gallery

    folder = tmp_path / "site"
    path = folder / "people.db"
    with Gallery.open(path, photos, create=True) as gallery:  # a running server's connection
        gallery.add(photos.enroll("andy", ANDY[:2]))
        gallery.add(photos.enroll("joschka", JOSCHKA[:2]))
        shutil.copy(path, tmp_path / "copy.db")  # the .db alone, while it is open
        assert sorted(p.name for p in folder.iterdir()) == ["people.db"]
    assert sorted(p.name for p in folder.iterdir()) == ["people.db"]
    with Gallery.open(tmp_path / "copy.db", photos, read_only=True) as copy:
        assert copy.names() == ["andy", "joschka"]
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


_KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size=1")  # pages spill to the file: the journal is hot
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE meta SET value = value || 'x' WHERE key = 'format'")
for i in range(500):
    db.execute("INSERT INTO people VALUES (?, ?)", (f"z{i}", "x" * 4000))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_writer_killed_mid_change_leaves_the_last_committed_gallery(tmp_path, sface_gallery):
    subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(sface_gallery)], timeout=60)
    assert Path(f"{sface_gallery}-journal").exists()  # what the kill left
    listed = command("gallery", "list", str(sface_gallery))
    assert listed.status == 0 and json.loads(listed.stdout) == {"name": "andy", "images": 2}
    assert sorted(p.name for p in sface_gallery.parent.iterdir()) == ["site.db"]
