"""Shared fixtures: small committed datasets, and the full LFW when it is available."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LFW_MINI = FIXTURES / "lfw_mini"
ATT_FACES = FIXTURES / "att_faces"


def full_lfw_root() -> Path | None:
    """$SIAMESE_LFW_ROOT, else ../shared/data/lfw beside the checkout, when it exists."""
    candidates = [os.environ.get("SIAMESE_LFW_ROOT"),
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pairsDevTest.txt").is_file():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True, scope="session")
def torch_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """torch's compile caches (created by ONNX export) go to the session's temporary folder,
    not /tmp/torchinductor_<user>."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("torchinductor"))


@pytest.fixture(autouse=True, scope="session")
def installation_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Templates and cache entries are signed with a key of the test session, never the
    user's own (subprocesses inherit it through SIAMESE_KEY_FILE)."""
    path = tmp_path_factory.mktemp("key") / "template.key"
    os.environ["SIAMESE_KEY_FILE"] = str(path)
    os.environ.setdefault("SIAMESE_CACHE", str(tmp_path_factory.mktemp("siamese-cache")))
    return path


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    root = full_lfw_root()
    if root is None:
        pytest.skip("full LFW not found: set SIAMESE_LFW_ROOT to an extracted LFW tree")
    return root


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SIAMESE_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def mini_faces(tmp_path_factory: pytest.TempPathFactory):
    """The aligned-face cache of the LFW fixture, prepared once per test session."""
    from siamese.train import face_cache
    from siamese.train.lfw import LFW

    lfw = LFW(LFW_MINI)
    faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images,
                                  tmp_path_factory.mktemp("cache"), workers=1, progress=False)
    return faces
