"""Process settings that must precede the first import of onnxruntime and OpenCV.

Imported first by `siamese.runtime`: onnxruntime's telemetry stays off (no device id or event
database under the home folder, nothing uploaded), OpenCV logs only fatal errors (a missing
camera is one line of ours, not 20 of theirs) and refuses to decode huge images. Each is a
default: a value the operator set in the environment wins.
"""

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(40_000_000))
