"""What an embedding model says about itself, stored in its ONNX metadata_props.

The runtime reads everything it needs from here: how to preprocess, how to compare, where to
draw the line. A model without this metadata is refused; nothing is guessed from node names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from siamese.runtime.errors import ModelError
from siamese.runtime.preprocess import Preprocess

METADATA_PREFIX = "siamese."
OPTIONAL_FIELDS = frozenset({"accuracy_threshold", "flip_average"})


@dataclass(frozen=True)
class ModelInfo:
    """Self-description of an exported embedding model.

    `threshold` is in score units (cosine similarity, or minus the Euclidean distance) and was
    calibrated on held-out people to a false accept rate of `threshold_far`.
    """

    preprocess: Preprocess
    embedding_dim: int
    metric: str  # cosine | euclidean
    threshold: float
    threshold_far: float
    arch: str
    source_sha256: str
    version: str
    variant: str  # fp32 | fp16 | int8
    accuracy_threshold: float | None = None  # best balanced-accuracy threshold, held-out people
    flip_average: bool = False  # the graph averages a face's embedding with its mirror image's

    def __post_init__(self) -> None:
        if self.metric not in ("cosine", "euclidean"):
            raise ModelError(f"unknown metric {self.metric!r} in model metadata")

    def to_metadata(self) -> dict[str, str]:
        """Flat string key-values for ONNX metadata_props."""
        out = {}
        for field in fields(self):
            value = getattr(self, field.name)
            out[METADATA_PREFIX + field.name] = (value.to_json() if isinstance(value, Preprocess)
                                                 else json.dumps(value))
        return out

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> ModelInfo:
        """Parse metadata_props; a missing or malformed key is a ModelError naming it."""
        values = {}
        for field in fields(cls):
            key = METADATA_PREFIX + field.name
            if key not in metadata:
                if field.name in OPTIONAL_FIELDS:
                    continue
                raise ModelError(f"{source} lacks siamese-edge metadata ({key}): export it "
                                 f"with siamese-export")
            try:
                values[field.name] = (Preprocess.from_json(metadata[key])
                                      if field.name == "preprocess" else json.loads(metadata[key]))
            except json.JSONDecodeError:
                raise ModelError(f"{source}: malformed metadata {key}") from None
        return cls(**values)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["preprocess"] = self.preprocess.to_dict()
        return data

    def with_variant(self, variant: str) -> ModelInfo:
        return replace(self, variant=variant)
