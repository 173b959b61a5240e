"""Which model made an embedding: a digest of the ONNX file without its measured figures.

Templates, galleries, embedding tables and site calibrations record it and refuse another
model's. It covers the graph, the weights and every metadata entry that decides an answer
(preprocessing, thresholds, provenance), so a model edited in any of those is another model; it
leaves out `siamese.measured` (speed and LFW figures, rewritten by `siamese-bench --record`) and
`siamese.engine` (the engine those figures chose), which describe how a model runs without
changing what it decides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import METADATA_PREFIX

_METADATA_FIELD = 14  # ModelProto.metadata_props
_GRAPH_FIELD, _GRAPH_INPUT_FIELD = 7, 11  # ModelProto.graph, GraphProto.input
# measured figures and the engine they chose describe how a model runs, not what it decides
_DESCRIPTIVE_KEYS = {(METADATA_PREFIX + "measured").encode(), (METADATA_PREFIX + "engine").encode()}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes):
    """(field number, wire type, payload start, end) of each top-level protobuf field."""
    at = 0
    while at < len(data):
        tag, start = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, end = _varint(data, start)
        elif wire == 1:
            end = start + 8
        elif wire == 2:
            length, start = _varint(data, start)
            end = start + length
        elif wire == 5:
            end = start + 4
        else:
            raise ValueError(f"wire type {wire}")
        if end > len(data):
            raise ValueError("truncated field")
        yield number, wire, start, end
        at = end


def _string_field(message: bytes, wanted: int) -> bytes:
    for number, wire, start, end in _fields(message):
        if number == wanted and wire == 2:
            return message[start:end]
    return b""


def _metadata_key(entry: bytes) -> bytes:
    return _string_field(entry, 1)


def read_onnx_header(path: Path) -> tuple[dict[str, str], str]:
    """(metadata_props, the graph's first input name) of an ONNX file, without loading it in an
    engine (OpenCV's DNN engine reads neither)."""
    data = Path(path).read_bytes()
    try:
        metadata, graph = {}, b""
        for number, wire, start, end in _fields(data):
            if number == _METADATA_FIELD and wire == 2:
                entry = data[start:end]
                metadata[_metadata_key(entry).decode("utf-8", "replace")] = \
                    _string_field(entry, 2).decode("utf-8", "replace")
            elif number == _GRAPH_FIELD and wire == 2:
                graph = data[start:end]
        first_input = _string_field(_string_field(graph, _GRAPH_INPUT_FIELD), 1)
    except ValueError as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    return metadata, first_input.decode("utf-8", "replace")


def model_fingerprint(path: Path) -> str:
    """SHA-256 over the model's top-level fields, measured figures left out."""
    data = Path(path).read_bytes()
    try:
        kept = [(number, data[start:end]) for number, wire, start, end in _fields(data)
                if not (number == _METADATA_FIELD and wire == 2
                        and _metadata_key(data[start:end]) in _DESCRIPTIVE_KEYS)]
    except ValueError as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    # fields in number order (as any writer orders them); metadata entries, a map, by content
    kept.sort(key=lambda field: (field[0], field[1] if field[0] == _METADATA_FIELD else b""))
    digest = hashlib.sha256(b"siamese-model-fingerprint/1")
    for number, payload in kept:
        digest.update(number.to_bytes(4, "little") + len(payload).to_bytes(8, "little"))
        digest.update(payload)
    return digest.hexdigest()
