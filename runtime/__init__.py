"""siamese.runtime: face detection, alignment and verification with numpy, OpenCV and onnxruntime.

This package never imports torch; training and export import it, never the other way round.
"""

import siamese.runtime._environment  # noqa: F401  (first: settings read by onnxruntime, OpenCV)
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import (
    ConfigError,
    DatasetError,
    ImageError,
    IntegrityError,
    ModelError,
    ReferenceError,
    SiameseError,
    SourceError,
    StorageError,
)
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.storage.references import Template
from siamese.runtime.verifier import Comparison, Decision, Verifier, VerifyConfig
from siamese.runtime.vision.align import TEMPLATE_112, align_face, similarity_transform
from siamese.runtime.vision.detector import Face, FaceDetector
from siamese.runtime.vision.imageio import read_image
from siamese.runtime.vision.preprocess import Preprocess

__all__ = [
    "TEMPLATE_112",
    "Comparison",
    "ConfigError",
    "DatasetError",
    "Decision",
    "Embedder",
    "Face",
    "FaceDetector",
    "ImageError",
    "IntegrityError",
    "ModelError",
    "ModelInfo",
    "Preprocess",
    "ReferenceError",
    "SiameseError",
    "SourceError",
    "StorageError",
    "Template",
    "Verifier",
    "VerifyConfig",
    "align_face",
    "read_image",
    "similarity_transform",
]
