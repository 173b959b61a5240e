"""What an embedding model says about itself, stored in its ONNX metadata_props.

The runtime reads everything it needs from here: how to preprocess, how to compare, where to
draw the line. A model without this metadata is refused; nothing is guessed from node names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace

from siamese.runtime.errors import ConfigError, ModelError
from siamese.runtime.vision.preprocess import Preprocess

METADATA_PREFIX = "siamese."
OPTIONAL_FIELDS = frozenset({"accuracy_threshold", "flip_average", "provenance", "measured",
                             "engine"})
ENGINE_NAMES = ("", "onnxruntime", "opencv")  # runtime.engines; "" = onnxruntime


MAX_EMBEDDING_DIM = 4096
MAX_MEASURED = 64
MAX_DISTANCE = 1e3  # euclidean scores are minus a distance, so thresholds lie in (-1e3, 0)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def threshold_range(metric: str) -> tuple[float, float]:
    """The open interval a decision threshold must lie in for `metric`.

    Cosine: (0, 1): at 0 or below nearly any two faces match, at 1 nobody does. Euclidean
    scores are minus a distance: (-1000, 0).
    """
    return (0.0, 1.0) if metric == "cosine" else (-MAX_DISTANCE, 0.0)


def check_threshold(value: object, metric: str, what: str,
                    error: type[Exception] = ConfigError) -> float:
    """`value` as a float when it is a finite number inside `threshold_range(metric)`."""
    low, high = threshold_range(metric)
    if not _is_number(value) or not low < float(value) < high:
        raise error(f"{what} must be a finite number in ({low:g}, {high:g}) for {metric} "
                    f"scores, not {value!r}")
    return float(value)


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
    provenance: str = ""  # where an imported model comes from, and its licence
    # figures measured on this very file by siamese-import / siamese-bench --record (speed, LFW,
    # parity): names to finite numbers or short strings; siamese-models prints them
    measured: dict | None = None
    # the CPU engine siamese-bench measured fastest for this file while it held the export gate
    # (runtime.engines); left out of the fingerprint like `measured`
    engine: str = ""

    def __post_init__(self) -> None:
        if self.metric not in ("cosine", "euclidean"):
            raise ModelError(f"unknown metric {self.metric!r} in model metadata")
        if not isinstance(self.preprocess, Preprocess):
            raise ModelError("model metadata preprocess is not a preprocess spec")
        if isinstance(self.embedding_dim, bool) or not isinstance(self.embedding_dim, int) \
                or not 1 <= self.embedding_dim <= MAX_EMBEDDING_DIM:
            raise ModelError(f"model metadata embedding_dim must be an integer from 1 to "
                             f"{MAX_EMBEDDING_DIM}, not {self.embedding_dim!r}")
        check_threshold(self.threshold, self.metric, "model metadata threshold", ModelError)
        if self.accuracy_threshold is not None:
            check_threshold(self.accuracy_threshold, self.metric,
                            "model metadata accuracy_threshold", ModelError)
        if not _is_number(self.threshold_far) or not 0 < self.threshold_far < 1:
            raise ModelError(f"model metadata threshold_far must lie in (0, 1), not "
                             f"{self.threshold_far!r}")
        if not isinstance(self.flip_average, bool):
            raise ModelError("model metadata flip_average must be true or false")
        if self.measured is not None and (
                not isinstance(self.measured, dict) or len(self.measured) > MAX_MEASURED
                or not all(isinstance(k, str) and (_is_number(v) or isinstance(v, str)
                                                   and len(v) <= 500)
                           for k, v in self.measured.items())):
            raise ModelError("model metadata measured must map names to finite numbers or "
                             "short strings")
        if self.engine not in ENGINE_NAMES:
            raise ModelError(f"model metadata engine must be one of "
                             f"{', '.join(map(repr, ENGINE_NAMES))}, not {self.engine!r}")
        for name in ("arch", "source_sha256", "version", "variant", "provenance"):
            if not isinstance(getattr(self, name), str):
                raise ModelError(f"model metadata {name} must be a string")

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
            except (json.JSONDecodeError, RecursionError):
                raise ModelError(f"{source}: malformed metadata {key}") from None
        try:
            return cls(**values)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> ModelInfo:
        """The inverse of `to_dict` (used by the TorchScript export's extra file)."""
        return cls.from_metadata({METADATA_PREFIX + key: json.dumps(value)
                                  for key, value in data.items()}, source)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["preprocess"] = self.preprocess.to_dict()
        return data

    def with_variant(self, variant: str) -> ModelInfo:
        return replace(self, variant=variant)
