"""Presentation-attack videos from face photos: prints, bent prints, phone screens, replays.

Every instrument is a textured surface moved in 3-D and projected through a pinhole camera:

  print          a flat photo held in a hand: jitter, then tilted (yaw), nodded (pitch),
                 rolled and approached (distance), as an attacker answering a challenge would
  print_bent     the same photo bent around a vertical axis (a cylinder of radius 0.6-2 x the
                 print's width), drawn as 24 flat strips: not a plane
  screen         a phone showing the photo: bezel, RGB pixel grid, gamma, glare, then moved
                 like the print
  enrolled_photo the reference photo itself, printed
  replay         a bona fide clip played on the simulated phone screen (its own motion only)

`Motion` is the instrument's pose over time; `Attack.frame(pose)` renders one frame, so the
evaluator (tools/eval_liveness.py) can move an instrument in answer to a challenge. The CLI
writes scripted (non-responsive) videos:

    python tools/make_attacks.py --photos /work/shared/data/lfw/lfw-deepfunneled \\
        --out /work/data/attacks --per-species 20 --seed 0
"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SIZE = (320, 240)  # output frames (width, height)
FOCAL = 300.0  # pixels: a ~56 degree horizontal field of view at 320 px
SPECIES = ("print", "print_bent", "screen", "enrolled_photo", "replay")


@dataclass(frozen=True)
class Pose:
    """The instrument's pose: degrees about the vertical (yaw), horizontal (pitch) and view
    (roll) axes, its centre's offset (x, y) and distance z in metres."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    x: float = 0.0
    y: float = 0.0
    z: float = 0.45


def rotation(pose: Pose) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (pose.yaw, pose.pitch, pose.roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def project(points: np.ndarray, pose: Pose) -> np.ndarray:
    """(N, 3) surface points in metres (instrument frame) -> (N, 2) image pixels."""
    camera = points @ rotation(pose).T + np.array([pose.x, pose.y, pose.z])
    return np.stack([FOCAL * camera[:, 0] / camera[:, 2] + SIZE[0] / 2,
                     FOCAL * camera[:, 1] / camera[:, 2] + SIZE[1] / 2], axis=1)


def background(rng: np.random.Generator) -> np.ndarray:
    """A plain wall: a random grey-brown gradient with sensor noise."""
    base = rng.uniform(90, 200, 3)
    ramp = np.linspace(-25, 25, SIZE[0])[None, :, None] * rng.uniform(-1, 1)
    image = np.broadcast_to(base, (SIZE[1], SIZE[0], 3)) + ramp
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def screen_texture(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`photo` as a phone displays it: gamma, RGB pixel grid, glare, black bezel."""
    h, w = photo.shape[:2]
    gamma = rng.uniform(0.7, 1.4)
    image = 255.0 * (photo.astype(np.float32) / 255.0) ** gamma
    image = cv2.resize(image, (w * 3, h * 3), interpolation=cv2.INTER_NEAREST)
    grid = np.full((3, 3, 3), 0.55, np.float32)
    for channel in range(3):  # BGR sub-pixel stripes, dark rows between pixels
        grid[:2, 2 - channel, channel] = 1.0
    image *= np.tile(grid, (h, w, 1))
    yy, xx = np.mgrid[0:h * 3, 0:w * 3]
    cx, cy = rng.uniform(0, w * 3), rng.uniform(0, h * 3)
    glare = rng.uniform(40, 120) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)
                                          / (2 * (rng.uniform(0.1, 0.3) * w * 3) ** 2))
    image = np.clip(image * rng.uniform(0.8, 1.1) + glare[..., None], 0, 255)
    border = int(0.06 * w * 3)
    return cv2.copyMakeBorder(image.astype(np.uint8), border, border * 2, border, border * 2,
                              cv2.BORDER_CONSTANT, value=(12, 12, 12))


class Attack:
    """One instrument (a texture on a surface of `width_m` metres, flat or bent) to render."""

    def __init__(self, texture: np.ndarray, width_m: float, bend_radius: float | None,
                 rng: np.random.Generator, frames: list[np.ndarray] | None = None) -> None:
        self.texture, self.width_m, self.bend_radius = texture, width_m, bend_radius
        self.frames = frames  # replay: a sequence of textures, one per frame
        self.wall = background(rng)
        self.shown = 0

    def frame(self, pose: Pose, rng: np.random.Generator) -> np.ndarray:
        texture = self.texture
        if self.frames:
            texture = self.frames[self.shown % len(self.frames)]
            self.shown += 1
        canvas = self.wall.copy()
        h, w = texture.shape[:2]
        strips = 24 if self.bend_radius else 1
        scale = self.width_m / w
        for i in range(strips):
            u0, u1 = w * i / strips, w * (i + 1) / strips
            src = np.float32([[u0, 0], [u1, 0], [u1, h], [u0, h]])
            surface = np.array([self._point(u, v, w, h, scale) for u, v in src])
            dst = project(surface, pose).astype(np.float32)
            matrix = cv2.getPerspectiveTransform(src, dst)
            part = texture if strips == 1 else np.ascontiguousarray(texture[:, int(u0):
                                                                               math.ceil(u1)])
            if strips > 1:
                matrix = matrix @ np.array([[1, 0, int(u0)], [0, 1, 0], [0, 0, 1]], float)
            warped = cv2.warpPerspective(part, matrix, SIZE, flags=cv2.INTER_LINEAR)
            mask = cv2.warpPerspective(np.full(part.shape[:2], 255, np.uint8), matrix, SIZE)
            canvas[mask > 127] = warped[mask > 127]
        canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.3, 0.9))
        noise = rng.normal(0, 2.5, canvas.shape)
        return np.clip(canvas + noise, 0, 255).astype(np.uint8)

    def _point(self, u: float, v: float, w: int, h: int, scale: float) -> np.ndarray:
        x, y = (u - w / 2) * scale, (v - h / 2) * scale
        if not self.bend_radius:
            return np.array([x, y, 0.0])
        angle = x / self.bend_radius  # arc length along the cylinder
        return np.array([self.bend_radius * math.sin(angle), y,
                         self.bend_radius * (1 - math.cos(angle))])


def face_crop(image: np.ndarray, keep: float = 0.6) -> np.ndarray:
    """The central `keep` of a face-centred photo (LFW, AT&T): what an attacker prints."""
    h, w = image.shape[:2]
    dy, dx = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    return image[dy:h - dy, dx:w - dx]


def make_attack(species: str, photo: np.ndarray, rng: np.random.Generator,
                clip: list[np.ndarray] | None = None) -> Attack:
    """The instrument of `species` showing `photo` (or, for a replay, the frames of `clip`).
    Hold it at `holding_distance(attack, rng)`."""
    photo = face_crop(photo)
    width = rng.uniform(0.1, 0.2)
    if species in ("print", "enrolled_photo"):
        return Attack(photo, width, None, rng)
    if species == "print_bent":
        return Attack(photo, width, rng.uniform(0.6, 2.0) * width, rng)
    if species == "screen":
        return Attack(screen_texture(photo, rng), rng.uniform(0.07, 0.09), None, rng)
    if species == "replay":
        if not clip:
            raise ValueError("a replay needs a bona fide clip")
        side = 160 / max(clip[0].shape[:2])  # crop with around_face first
        frames = [screen_texture(cv2.resize(f, None, fx=side, fy=side), rng) for f in clip]
        return Attack(frames[0], rng.uniform(0.12, 0.16), None, rng, frames)
    raise ValueError(f"unknown species {species!r}")


def holding_distance(attack: Attack, rng: np.random.Generator) -> float:
    """Metres at which the instrument fills 150-230 px of the frame's width, as an attacker
    holds it to fill the camera's view."""
    return FOCAL * attack.width_m / rng.uniform(150, 230)


class Motion:
    """An attacker's hand: jitter around a held pose, easing towards a target pose."""

    def __init__(self, rng: np.random.Generator, z: float) -> None:
        self.rng = rng
        self.rest = Pose(roll=rng.uniform(-5, 5), z=z)
        self.pose, self.target = self.rest, self.rest

    def aim(self, action: str | None) -> None:
        """Point the instrument to perform `action` (turn_left/turn_right/nod/roll/approach;
        None: back to rest). The attacker's left is the image's right (an unmirrored camera)."""
        r, rest = self.rng, self.rest
        angle = r.uniform(25, 55)
        targets = {"turn_left": Pose(yaw=-angle, roll=rest.roll, z=rest.z),
                   "turn_right": Pose(yaw=angle, roll=rest.roll, z=rest.z),
                   "nod": Pose(pitch=r.choice([-1, 1]) * r.uniform(20, 45), roll=rest.roll,
                               z=rest.z),
                   "roll": Pose(roll=r.choice([-1, 1]) * r.uniform(15, 35), z=rest.z),
                   "approach": Pose(roll=rest.roll, z=rest.z * 0.6)}
        self.target = targets.get(action, rest) if action else rest

    def step(self) -> Pose:
        a, b, j = self.pose, self.target, self.rng.normal(0, 1, 6)
        ease = 0.25
        self.pose = Pose(*(getattr(a, k) + ease * (getattr(b, k) - getattr(a, k))
                           for k in ("yaw", "pitch", "roll", "x", "y", "z")))
        return Pose(self.pose.yaw + j[0], self.pose.pitch + j[1], self.pose.roll + 0.5 * j[2],
                    self.pose.x + 0.003 * j[3], self.pose.y + 0.003 * j[4], self.pose.z)


SCRIPT = ("turn_left", None, "turn_right", None, "nod", None, "roll", None, "approach", None)


def scripted_video(attack: Attack, rng: np.random.Generator, fps: float = 15.0,
                   seconds_per_move: float = 1.0) -> list[np.ndarray]:
    """A prerecorded attack: the instrument held, tilted, rolled, nodded and approached."""
    hand, frames = Motion(rng, holding_distance(attack, rng)), []
    for action in SCRIPT:
        hand.aim(action)
        frames += [attack.frame(hand.step(), rng) for _ in range(int(fps * seconds_per_move))]
    return frames


def write_video(frames: list[np.ndarray], path: Path, fps: float = 15.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()


def read_clip(path: Path, limit: int = 200) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while len(frames) < limit:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def around_face(frames: list[np.ndarray], box: np.ndarray, margin: float = 0.6
                ) -> list[np.ndarray]:
    """The clip cropped to a square around `box` (x, y, w, h) plus `margin` of its size, as
    an attacker frames a replayed face to fill the phone."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    H, W = frames[0].shape[:2]
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(W, cx + side / 2)), int(min(H, cy + side / 2))
    return [np.ascontiguousarray(f[y0:y1, x0:x1]) for f in frames]


def face_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".png", ".pgm"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, required=True, help="folder of face photos")
    parser.add_argument("--clips", type=Path, help="folder of bona fide clips (for replays)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-species", type=int, default=20)
    parser.add_argument("--species", nargs="+", default=list(SPECIES), choices=SPECIES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    photos = face_photos(args.photos)
    clips = sorted(p for p in args.clips.iterdir()) if args.clips else []
    if not photos:
        raise SystemExit(f"no photos under {args.photos}")
    picker = random.Random(args.seed)
    from siamese.runtime.vision.detector import FaceDetector

    detector = FaceDetector()
    for species in args.species:
        if species == "replay" and not clips:
            print("replay skipped: no --clips")
            continue
        folder = args.out / species
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(args.per_species):
            photo = cv2.imread(str(picker.choice(photos)))
            clip = read_clip(picker.choice(clips)) if species == "replay" else None
            if clip:
                faces = detector.detect(clip[0])
                clip = around_face(clip, faces[0].box) if faces else clip
            attack = make_attack(species, photo, rng, clip)
            frames = scripted_video(attack, rng)
            write_video(frames, folder / f"{species}_{number:03d}.avi")
        print(f"{species}: {args.per_species} videos -> {folder}")


if __name__ == "__main__":
    main()
