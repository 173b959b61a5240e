"""Convert Minivision's MiniFASNet anti-spoofing weights (.pth) into one self-describing ONNX.

Source: github.com/minivision-ai/Silent-Face-Anti-Spoofing (Apache-2.0),
resources/anti_spoof_models/. Each .pth is a state dict (keys may carry DataParallel's
"module." prefix). The network is rebuilt here from the weights themselves: the layer names are
the state dict's, every width is read from a weight's shape, and `load_state_dict(strict=True)`
proves that nothing is missing or left over. Their predictor's input is the face box scaled
around its centre (2.7 for V2, 4.0 for V1SE; the scale is in the file name), resized to 80x80,
BGR, raw 0-255 floats (their ToTensor does not divide by 255); its output is a 3-class softmax,
class 1 = real, and two models are fused by summing their softmaxes.

The ONNX takes `crops` (N, K, 3, 80, 80), one crop per model in the metadata's `crop_scales`
order, and returns `real` (N, K): each model's softmax probability of class 1. The runtime
(runtime/liveness/passive.py) averages the K values: their sum-of-softmaxes rule, halved.

    python tools/convert_minifasnet.py /tmp/mfas/2.7_80x80_MiniFASNetV2.pth \\
        /tmp/mfas/4_0_0_80x80_MiniFASNetV1SE.pth --commit b6d5f04... \\
        --images /tmp/mfas/image_F1.jpg /tmp/mfas/image_F2.jpg /tmp/mfas/image_T1.jpg \\
        --threshold 0.5 --out runtime/models/minifasnet_texture.onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

SIZE = 80
REAL_CLASS = 1
PARITY_LIMIT = 1e-4  # max |softmax difference| allowed between torch and onnxruntime
STAGES = (("conv_23", 2), ("conv_3", 1), ("conv_34", 2), ("conv_4", 1), ("conv_45", 2),
          ("conv_5", 1))  # (name, stride) between conv2_dw and conv_6_sep; stride 1 = residual


class ConvBN(nn.Module):
    """conv (no bias) -> bn -> optional prelu; depthwise when the weight has one input channel."""

    def __init__(self, state: dict, name: str, stride: int = 1, padding: int | None = None,
                 act: bool = True) -> None:
        super().__init__()
        out, per_group, k, _ = state[f"{name}.conv.weight"].shape
        groups = out if per_group == 1 and k > 1 else 1
        self.conv = nn.Conv2d(per_group * groups, out, k, stride,
                              k // 2 if padding is None else padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out)
        self.prelu = nn.PReLU(out) if act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Squeeze(nn.Module):
    """Squeeze-and-excitation gate: pool, 1x1 down, relu, 1x1 up, sigmoid, times the input."""

    def __init__(self, state: dict, name: str) -> None:
        super().__init__()
        down, channels = state[f"{name}.fc1.weight"].shape[:2]
        self.fc1 = nn.Conv2d(channels, down, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(down)
        self.fc2 = nn.Conv2d(down, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.bn1(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(self.bn2(self.fc2(gate)))


class Bottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project (linear); residual blocks may carry an SE."""

    def __init__(self, state: dict, name: str, stride: int) -> None:
        super().__init__()
        self.conv = ConvBN(state, f"{name}.conv")
        self.conv_dw = ConvBN(state, f"{name}.conv_dw", stride)
        self.project = ConvBN(state, f"{name}.project", act=False)
        self.residual = stride == 1
        has_se = f"{name}.se_module.fc1.weight" in state
        self.se_module = Squeeze(state, f"{name}.se_module") if has_se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        if self.se_module is not None:
            out = self.se_module(out)
        return x + out if self.residual else out


class Stage(nn.Module):
    def __init__(self, state: dict, name: str) -> None:
        super().__init__()
        count = len({key.split(".")[2] for key in state if key.startswith(f"{name}.model.")})
        self.model = nn.Sequential(*(Bottleneck(state, f"{name}.model.{i}", 1)
                                     for i in range(count)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """MiniFASNet V1/V2 (with or without SE) as the state dict describes it; returns softmax."""

    def __init__(self, state: dict) -> None:
        super().__init__()
        self.conv1 = ConvBN(state, "conv1", stride=2)
        self.conv2_dw = ConvBN(state, "conv2_dw")
        for name, stride in STAGES:
            setattr(self, name, Bottleneck(state, name, stride) if stride == 2
                    else Stage(state, name))
        self.conv_6_sep = ConvBN(state, "conv_6_sep")
        self.conv_6_dw = ConvBN(state, "conv_6_dw", padding=0, act=False)
        embedding, width = state["linear.weight"].shape
        self.linear = nn.Linear(width, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)
        self.prob = nn.Linear(embedding, state["prob.weight"].shape[0], bias=False)
        self.load_state_dict(state, strict=True)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2_dw(self.conv1(x))
        for name, _ in STAGES:
            x = getattr(self, name)(x)
        x = self.conv_6_dw(self.conv_6_sep(x)).flatten(1)
        return torch.softmax(self.prob(self.bn(self.linear(x))), dim=1)


class Fused(nn.Module):
    """K models, crop k to model k: (N, K, 3, 80, 80) -> (N, K) real-class probabilities."""

    def __init__(self, models: list[MiniFASNet]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.eval()  # the exporter restores the wrapper's mode onto every child afterwards

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(crops[:, k])[:, REAL_CLASS] for k, m in enumerate(self.models)],
                           dim=1)


def load_state(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key.removeprefix("module."): value for key, value in state.items()}


def parse_name(path: Path) -> tuple[float, str]:
    """(crop scale, model type) from Minivision's file name: 2.7_80x80_MiniFASNetV2.pth,
    4_0_0_80x80_MiniFASNetV1SE.pth (scale 4.0)."""
    match = re.fullmatch(r"([\d_.]+)_(\d+)x(\d+)_(MiniFASNet\w+)\.pth", path.name)
    if not match or (int(match[2]), int(match[3])) != (SIZE, SIZE):
        raise SystemExit(f"{path.name}: not a Minivision <scale>_80x80_<model>.pth file")
    return float(match[1].split("_")[0]), match[4]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_crops(images: list[Path], scales: list[float]) -> np.ndarray:
    """The runtime's crops of each image's largest YuNet face (one row per image)."""
    from siamese.runtime.liveness.passive import texture_crops
    from siamese.runtime.vision.detector import FaceDetector, largest_face
    from siamese.runtime.vision.imageio import read_image

    detector, rows = FaceDetector(), []
    for path in images:
        image = read_image(path)
        face = largest_face(detector.detect(image))
        if face is None:
            raise SystemExit(f"{path}: no face found")
        rows.append(texture_crops(image, face.box, scales, (SIZE, SIZE)))
    return np.stack(rows)


def export(model: Fused, out: Path, metadata: dict[str, str]) -> None:
    import onnx

    dummy = torch.zeros(1, len(model.models), 3, SIZE, SIZE)
    torch.onnx.export(model, (dummy,), str(out), input_names=["crops"], output_names=["real"],
                      dynamic_axes={"crops": {0: "batch"}, "real": {0: "batch"}},
                      opset_version=17, dynamo=False)
    graph = onnx.load(str(out))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))


def parity(model: Fused, out: Path, inputs: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"crops": inputs})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(inputs)).numpy()
    return float(np.abs(got - want).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", type=Path, nargs="+", help="Minivision .pth files")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, required=True,
                        help="real score under which the face is taken for a recapture")
    parser.add_argument("--commit", required=True, help="the source repository's commit")
    parser.add_argument("--images", type=Path, nargs="*", default=[],
                        help="face photos for the parity check (with random inputs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scales, names = zip(*(parse_name(p) for p in args.weights), strict=True)
    model = Fused([MiniFASNet(load_state(p)) for p in args.weights])
    metadata = {
        "siamese.texture.format": "siamese-texture-1",
        "siamese.texture.models": json.dumps(list(names)),
        "siamese.texture.crop_scales": json.dumps(list(scales)),
        "siamese.texture.input_size": json.dumps([SIZE, SIZE]),
        "siamese.texture.channels": "BGR, 0-255 floats, no normalisation",
        "siamese.texture.output": "real: (N, K) softmax probability of the real class",
        "siamese.texture.threshold": json.dumps(args.threshold),
        "siamese.texture.source": "github.com/minivision-ai/Silent-Face-Anti-Spoofing "
                                  "resources/anti_spoof_models (Apache-2.0)",
        "siamese.texture.source_commit": args.commit,
        "siamese.texture.source_sha256": json.dumps({p.name: sha256(p) for p in args.weights}),
        "siamese.texture.converter": "tools/convert_minifasnet.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    export(model, args.out, metadata)
    rng = np.random.default_rng(0)
    random_inputs = rng.uniform(0, 255, (8, len(names), 3, SIZE, SIZE)).astype(np.float32)
    worst = {"random": parity(model, args.out, random_inputs)}
    if args.images:
        crops = sample_crops(args.images, list(scales))
        worst["images"] = parity(model, args.out, crops)
        with torch.no_grad():
            real = model(torch.from_numpy(crops)).numpy()
        for path, row in zip(args.images, real, strict=True):
            per_model = ", ".join(f"{n} {v:.4f}" for n, v in zip(names, row, strict=True))
            print(f"{path.name}: real {row.mean():.4f} ({per_model})")
    print(f"{args.out}: {args.out.stat().st_size} bytes, sha256 {sha256(args.out)}")
    print("parity, max |softmax difference| torch vs onnxruntime: "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    if max(worst.values()) > PARITY_LIMIT:
        args.out.unlink()
        sys.exit(f"parity gate failed (limit {PARITY_LIMIT:g}): {args.out} removed")


if __name__ == "__main__":
    main()
