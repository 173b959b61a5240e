"""Export settings and parity gates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Gate:
    """Parity limits of one variant against the PyTorch model (None: not checked)."""

    min_cosine: float | None = None
    mean_cosine: float | None = None
    decision_agreement: float | None = None
    max_accuracy_drop: float | None = None


DEFAULT_GATES: dict[str, Gate] = {
    "fp32": Gate(min_cosine=0.9999),
    "torchscript": Gate(min_cosine=0.9999),
    "fp16": Gate(min_cosine=0.999),
    "int8": Gate(mean_cosine=0.99, decision_agreement=0.99, max_accuracy_drop=0.01),
}


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    out_dir: Path
    fp16: bool = False
    int8: bool = False
    torchscript: bool = False
    opset: int = 18
    calib_dir: Path | None = None
    lfw_root: Path | None = None
    cache_dir: Path | None = None
    calib_faces: int = 300
    parity_faces: int = 500
    gates: dict[str, Gate] = field(default_factory=lambda: dict(DEFAULT_GATES))
    seed: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
