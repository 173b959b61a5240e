"""Packaged models by name: resolution, the refusal naming both models, siamese-models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from siamese.runtime import model_zoo
from siamese.runtime.errors import ModelError, ReferenceError
from siamese.runtime.fingerprint import model_fingerprint
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.storage.references import Template, load_template, save_template

FIXTURES = Path(__file__).parent / "fixtures"
needs_both = pytest.mark.skipif(
    not all(model_zoo.PACKAGED[n].path.is_file() for n in ("edge", "sface")),
    reason="the packaged edge and sface models are not both installed")


def test_names_resolve_to_packaged_files_and_paths_stay(tmp_path):
    assert model_zoo.resolve("edge") == model_zoo.PACKAGED["edge"].path
    assert model_zoo.resolve(None) == model_zoo.PACKAGED[model_zoo.DEFAULTS["door"]].path
    assert model_zoo.resolve(tmp_path / "mine.onnx") == tmp_path / "mine.onnx"
    with pytest.raises(ModelError, match="unknown model 'nosuch'"):
        model_zoo.resolve("nosuch")
    with pytest.raises(ModelError, match="unknown use"):
        model_zoo.default_model("kitchen")


def test_measured_metadata_is_validated():
    info = ModelInfo.from_metadata({**_edge_info().to_metadata(),
                                    "siamese.measured": '{"ms_per_face": 0.3}'})
    assert info.measured == {"ms_per_face": 0.3}
    for bad in ('{"x": [1]}', '{"x": NaN}', "[1]"):
        with pytest.raises(ModelError, match="measured"):
            ModelInfo.from_metadata({**_edge_info().to_metadata(), "siamese.measured": bad})


def _edge_info() -> ModelInfo:
    from siamese.runtime.embedder import Embedder

    return Embedder(model_zoo.PACKAGED["edge"].path).info


def test_unknown_model_name_is_one_line_exit_2(tmp_path):
    image = str(next((FIXTURES / "lfw_mini").rglob("*.jpg")))
    result = subprocess.run(
        [sys.executable, "-c", "from siamese.runtime.commands.verify import compare_main; "
         "compare_main()", image, image, "--model", "nosuch", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown model 'nosuch'" in lines[0]


@needs_both
def test_a_template_of_sface_is_refused_by_edge_naming_both(tmp_path):
    path = tmp_path / "t.json"
    key = load_or_create_key(tmp_path / "key")
    sface = model_fingerprint(model_zoo.PACKAGED["sface"].path)
    save_template(Template("x", np.full((1, 128), 128 ** -0.5, np.float32), sface), path, key)
    edge = model_fingerprint(model_zoo.PACKAGED["edge"].path)
    with pytest.raises(ReferenceError) as caught:
        load_template(path, edge, key, 128)
    message = str(caught.value)
    assert f"sface ({sface[:12]})" in message and f"edge ({edge[:12]})" in message
    assert "\n" not in message


@needs_both
def test_siamese_models_lists_measured_figures_from_metadata():
    from siamese.runtime.commands.models import format_models, model_rows

    rows = {row["name"]: row for row in model_rows()}
    for name in ("edge", "sface"):
        row = rows[name]
        assert row["ms_per_face"] > 0 and row["threads"] >= 1
        assert row["size_mb"] == pytest.approx(model_zoo.PACKAGED[name].path.stat().st_size / 1e6)
        for key in ("lfw_view1", "tar_at_far_1e-3"):  # recorded only by a run with --lfw-root
            assert row[key] is None or 0.5 < row[key] <= 1
    assert rows["edge"]["lfw_view1"] is not None
    table = format_models(list(rows.values()))
    assert "sface" in table and "edge" in table


@pytest.mark.lfw
@pytest.mark.slow
def test_photo_default_decides_lfw_view1_devtest_pairs(lfw_root, tmp_path):
    """siamese-compare's default, at its shipped threshold, on the 1,000 DevTest pairs; a pair
    refused (no usable face, quality gate) counts as wrong (tools/eval_compare.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from eval_compare import compare_pairs
    from siamese.runtime.verifier import Verifier
    from siamese.train.lfw import LFW

    lfw = LFW(lfw_root)
    verifier = Verifier.from_model(model_zoo.resolve(None, use="photos"), cache_dir=tmp_path,
                                   key=load_or_create_key(tmp_path / "key"))
    scores, _ = compare_pairs(verifier, lfw.image_root, lfw.view1_test_pairs)
    same = np.array([p.same for p in lfw.view1_test_pairs])
    right = ((scores >= verifier.threshold) == same) & ~np.isnan(scores)
    assert right.mean() >= 0.975
