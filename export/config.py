"""Export settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from siamese.export.formats import FORMATS
from siamese.export.parity import Gate
from siamese.runtime.errors import ConfigError


@dataclass(frozen=True)
class ExportConfig:
    checkpoint: Path
    out_dir: Path
    formats: tuple[str, ...] = ("fp32",)  # fp32 first: the other ONNX variants derive from it
    opset: int = 18
    calib_dir: Path | None = None
    lfw_root: Path | None = None
    cache_dir: Path | None = None
    calib_faces: int = 300
    parity_faces: int = 500
    gates: dict[str, Gate] = field(default_factory=dict)  # overrides of each format's gate
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.formats if name not in FORMATS]
        if unknown:
            raise ConfigError(f"unknown export format {unknown[0]!r} (one of "
                              f"{', '.join(FORMATS)})")
        if self.formats[:1] != ("fp32",) or len(set(self.formats)) != len(self.formats):
            raise ConfigError("export formats start with fp32 and name each format once")

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
