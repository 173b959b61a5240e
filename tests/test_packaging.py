import ast
import subprocess
import sys
from pathlib import Path

import siamese.runtime

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
# what each layer of the runtime may import from the others (the direction is one way)
LOWER = {
    "storage": set(),
    "vision": {"storage"},
    "liveness": {"storage", "vision"},
    "core": {"storage", "vision", "liveness"},
    "service": {"storage", "vision", "liveness", "core"},
    "commands": {"storage", "vision", "liveness", "core", "service"},
}
BASE = {"siamese.runtime", "siamese.runtime.errors", "siamese.runtime.redact",
        "siamese.runtime._environment"}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[2] if len(parts) > 3 and parts[2] in LOWER else "core"


def test_runtime_import_loads_no_torch():
    code = ("import sys, siamese.runtime, siamese.runtime.vision.detector, "
            "siamese.runtime.vision.align, siamese.runtime.vision.preprocess; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_layers_import_one_way():
    crossings = []
    for path in RUNTIME.rglob("*.py"):
        relative = path.relative_to(RUNTIME).with_suffix("")
        if relative.parts[-1] == "__init__" and len(relative.parts) == 1:
            continue  # the package's public surface re-exports every layer
        module = ".".join(("siamese", "runtime", *relative.parts))
        layer = _layer(module)
        tree = ast.parse(path.read_text())
        hints = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                 and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in hints:  # imports for type hints only run no code
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = node.module
            elif isinstance(node, ast.Import):
                imported = node.names[0].name
            else:
                continue
            if not imported.startswith("siamese."):
                continue
            assert imported.startswith("siamese.runtime"), f"{module} imports {imported}"
            other = _layer(imported)
            if imported in BASE or other == layer:
                continue
            if other not in LOWER[layer]:
                crossings.append(f"{module} ({layer}) imports {imported} ({other})")
    assert not crossings, crossings


def test_yunet_and_its_licence_ship_with_the_runtime():
    from siamese.runtime.vision.detector import MODELS_DIR, YUNET_PATH

    assert YUNET_PATH.stat().st_size > 200_000
    assert (MODELS_DIR / "LICENSE-yunet").read_text().strip()
    assert siamese.runtime.FaceDetector().model_path == YUNET_PATH


def test_the_texture_model_ships_with_its_licence_and_provenance():
    from siamese.runtime.liveness.passive import TEXTURE_PATH, TextureModel

    assert TEXTURE_PATH.stat().st_size > 1_000_000
    assert "Apache License" in (TEXTURE_PATH.parent / "LICENSE-minifasnet").read_text()
    assert (TEXTURE_PATH.parent / "PROVENANCE-minifasnet.md").read_text().strip()
    assert TextureModel().info.models == ("MiniFASNetV2", "MiniFASNetV1SE")
