import subprocess
import sys

import siamese.runtime


def test_runtime_import_loads_no_torch():
    code = ("import sys, siamese.runtime, siamese.runtime.detector, siamese.runtime.align, "
            "siamese.runtime.preprocess; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_yunet_and_its_licence_ship_with_the_runtime():
    from siamese.runtime.detector import MODELS_DIR, YUNET_PATH

    assert YUNET_PATH.stat().st_size > 200_000
    assert (MODELS_DIR / "LICENSE-yunet").read_text().strip()
    assert siamese.runtime.FaceDetector().model_path == YUNET_PATH
