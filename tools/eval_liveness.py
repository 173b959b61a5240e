"""APCER per attack species, BPCER, ACER and time to decision of the liveness check.

ISO/IEC 30107-3 terms: APCER (per species) = attack presentations accepted / attack
presentations of that species; BPCER = bona fide presentations refused / bona fide
presentations; ACER = (worst APCER + BPCER) / 2. "Accepted" means the liveness check passed;
identity is scored for bona fide sessions (against the clip's own first frontal frame, as the
check demands), while for attacks every detected face is taken to pass the quality gate and
match (the attacker shows the enrolled person, sharp), so an attack is refused only by liveness.

Sessions run on a simulated clock at --fps, frame by frame, against a fresh random challenge:

  bona fide   a scripted responsive source: the clip's frontal frames while nothing is asked,
              and, after a reaction delay, the clip's segment that performs the asked motion
              (segments cut automatically from each clip's nose offsets; a horizontally
              mirrored copy of a clip supplies the opposite turn)
  print, print_bent, screen, enrolled_photo
              a responsive attacker (tools/make_attacks.py): the instrument is rotated in 3-D
              towards the asked motion (yaw 25-55 deg for a turn, pitch 20-45 for a nod)
  replay      a prerecorded bona fide clip (frontal frames and its turns in a random order)
              on a simulated phone: it cannot respond
  seq_*       photo sequences (tools/photo_sequences.py): stills of the bona fide person at
              poses along each motion, swapped in place as prints, on a screen, injected as
              clean frames, cross-faded; answering each prompt, or a recorded slideshow

Every session runs the shipped check with the texture signal in "report" mode, so one run
gives three decisions per session: the shipped check (motion and texture), the motion test
alone (texture off) and the texture signal alone (its median over the first frames).

    python tools/eval_liveness.py --clips /work/data/sample-videos \\
        --photos /work/shared/data/lfw/lfw-deepfunneled --attacks 100 --bona-fide 100
    python tools/eval_liveness.py --videos DIR --mode passive   # folders of recorded videos
    python tools/eval_liveness.py --table LOG...                # the table of logged sessions

`--videos DIR` plays every video of DIR/<species>/ (bona fide ones in DIR/bona_fide/) once, as
recorded: it cannot respond to prompts, so in the active mode a bona fide video passes only if
it happens to hold the asked motions in order; `--mode passive` (no prompts) is the mode such
a set measures. Every detected face is taken to pass quality and identity there, for bona fide
videos too: only liveness decides.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.liveness.challenge import ChallengeConfig, motion
from siamese.runtime.liveness.check import (
    FRONTAL_YAW,
    TEXTURE_FRAMES,
    LivenessCheck,
    LivenessConfig,
)
from siamese.runtime.liveness.planarity import naive_yaw, nose_offset
from siamese.runtime.verifier import Verifier
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector, largest_face


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


attacks = _tool("make_attacks")
sequences = _tool("photo_sequences")

LEAD_S = 1.0  # seconds a session may take to find the frontal face before the first prompt
UPDATE_MS: list[float] = []  # the check's own time per frame (detection excluded)


@dataclass
class Outcome:
    species: str
    accepted: bool
    reason: str | None
    seconds: float | None  # from the first frame to the decision, on the simulated clock
    offsets: list[float]  # the nose offset that completed each step
    max_offset: float = 0.0  # the largest nose offset seen during the check
    motion: bool | None = None  # the motion test alone passed (texture off)
    texture: bool | None = None  # the texture signal alone passed (None: never scored)


class Analyser:
    """Faces, quality and (for bona fide) identity of one frame, as the session sees them."""

    def __init__(self, verifier: Verifier | None) -> None:
        self.verifier = verifier
        self.detector = FaceDetector(config=DetectorConfig(max_side=320))

    def __call__(self, image: np.ndarray, template=None) -> tuple[list, bool, bool, bool]:
        if template is not None:
            decision = self.verifier.verify(image, template)
            scored = decision.quality is not None and decision.quality.ok
            other = decision.score is not None \
                and decision.score < self.verifier.consistency.pair_limit
            return decision.faces, scored, decision.match, other
        faces = self.detector.detect(image)
        found = bool(faces)
        return faces, found, found, False  # attacks: quality and identity assumed to pass


def run_session(check: LivenessCheck, next_frame, analyse, fps: float) -> tuple[float, int]:
    """Feed `check` frames from `next_frame(asked)` until it decides or its time is up."""
    limit = LEAD_S + (len(check.actions) or 1) * check.config.challenge.step_s + 1.0
    frames = int(limit * fps)
    for number in range(frames):
        now = number / fps
        image = next_frame(check.asked)  # what the screen shows now
        if image is None:
            check.give_up("the video ended", now)
            return now, number
        faces, scored, match, other = analyse(image)
        started = time.perf_counter()
        check.update(faces, scored, match, now, other, image)
        UPDATE_MS.append(1000 * (time.perf_counter() - started))
        if check.done:
            return now, number + 1
    check.give_up("the session's time ran out", frames / fps)
    return frames / fps, frames


# --- bona fide: clips cut into segments -----------------------------------------------------
@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]
    idle: list[int]  # frontal frames
    segments: dict[str, list[int]]  # action -> frame indices performing it (out and back)


def cut_clip(name: str, frames: list[np.ndarray], detector: FaceDetector,
             config: ChallengeConfig) -> Clip | None:
    """Frontal frames and motion segments of one clip (from its own nose offsets)."""
    faces = [largest_face(detector.detect(f)) for f in frames]
    frontal = [i for i, f in enumerate(faces) if f is not None
               and abs(naive_yaw(f.landmarks)) <= FRONTAL_YAW]
    if not frontal:
        return None
    ref = faces[frontal[len(frontal) // 2]].landmarks
    labels = []
    for face in faces:
        offset = None if face is None else nose_offset(ref, face.landmarks)
        labels.append(None if offset is None else motion(offset, config))
    idle = [i for i in frontal if labels[i] is None]
    segments: dict[str, list[int]] = {}
    for action in ("turn_left", "turn_right", "nod"):
        hits = [i for i, label in enumerate(labels) if label == action]
        if not hits:
            continue
        peak = hits[len(hits) // 2]
        start = max((i for i in idle if i < peak), default=None)
        end = min((i for i in idle if i > peak), default=None)
        if start is not None:  # frontal -> peak -> back (as recorded)
            segments[action] = list(range(start, peak + 1)) + list(range(peak, end or peak, -1)
                                                                   if end is None else
                                                                   range(peak, end + 1))
        elif end is not None:  # the clip starts turned: play it backwards, then forwards
            segments[action] = list(range(end, peak - 1, -1)) + list(range(peak, end + 1))
    return Clip(name, frames, idle, segments) if idle else None


def with_mirror(clip: Clip, detector: FaceDetector) -> Clip:
    """The clip plus its horizontal mirror, shifted so that the face stays where it was: a
    mirrored live head turning right is a live head turning left. The mirror's segments
    supply the opposite turns (its frames are appended after the clip's)."""
    face = largest_face(detector.detect(clip.frames[clip.idle[0]]))
    width = clip.frames[0].shape[1]
    shift = 2 * float(face.center[0]) - width
    matrix = np.float32([[1, 0, shift], [0, 1, 0]])
    mirrored = [cv2.warpAffine(np.ascontiguousarray(f[:, ::-1]), matrix, (width, f.shape[0]),
                               borderMode=cv2.BORDER_REPLICATE) for f in clip.frames]
    swap = {"turn_left": "turn_right", "turn_right": "turn_left", "nod": "nod"}
    n = len(clip.frames)
    segments = dict(clip.segments)
    for action, indices in clip.segments.items():
        segments.setdefault(swap[action], [n + i for i in indices])
    return Clip(clip.name, clip.frames + mirrored, clip.idle, segments)


class ResponsiveClip:
    """A live person: a head at rest (the clip's run of frontal frames around its first one,
    played back and forth, as a camera sees a still head: consecutive frames, sensor noise)
    and, after a reaction delay, the asked motion's segment, entered at its first frame when
    the resting head passes it (no frame of the clip is skipped)."""

    def __init__(self, clip: Clip, rng: random.Random, fps: float) -> None:
        self.clip, self.rng, self.fps = clip, rng, fps
        self.originals = len(clip.frames) // 2  # with_mirror appended a mirrored copy
        idle = set(clip.idle)
        start = clip.idle[0]
        run = [start]
        while run[-1] + 1 in idle:
            run.append(run[-1] + 1)
        while run[0] - 1 in idle:
            run.insert(0, run[0] - 1)
        self.path = run + run[-2:0:-1] if len(run) > 1 else run
        self.queue: list[int] = []
        self.last_asked: str | None = None
        self.pending: str | None = None
        self.wait = 0
        self.cursor = 0

    def __call__(self, asked: str | None) -> np.ndarray:
        if asked != self.last_asked:
            self.last_asked = asked
            if asked in self.clip.segments:  # react after a delay
                self.pending, self.wait = asked, int(self.rng.uniform(0.3, 0.8) * self.fps)
        if self.queue:
            return self.clip.frames[self.queue.pop(0)]
        rest = self.path[self.cursor % len(self.path)]
        self.cursor += 1
        self.wait -= 1
        if self.pending is not None and self.wait <= 0:
            segment = self.clip.segments[self.pending]
            if segment[0] % self.originals == rest:
                self.queue, self.pending = list(segment[1:]), None
                return self.clip.frames[segment[0]]
        return self.clip.frames[rest]


class CachedFrames:
    """Analyses of a bona fide clip's frames, computed once (the source replays them)."""

    def __init__(self, analyser: Analyser, template) -> None:
        self.analyser, self.template, self.cache = analyser, template, {}

    def __call__(self, image: np.ndarray) -> tuple[list, bool, bool, bool]:
        key = id(image)
        if key not in self.cache:
            self.cache[key] = self.analyser(image, self.template)
        return self.cache[key]


# --- attacks -----------------------------------------------------------------------------------
class ResponsiveAttacker:
    """An instrument moved towards whatever is asked, after a reaction delay."""

    def __init__(self, attack, rng: np.random.Generator, fps: float) -> None:
        self.attack, self.rng, self.fps = attack, rng, fps
        self.hand = attacks.Motion(rng, attacks.holding_distance(attack, rng))
        self.last_asked: str | None = None
        self.wait = 0

    def __call__(self, asked: str | None) -> np.ndarray:
        if asked != self.last_asked:
            self.last_asked = asked
            self.wait = int(self.rng.uniform(0.3, 0.8) * self.fps)
        if self.wait:
            self.wait -= 1
            if not self.wait:
                self.hand.aim(asked)
        return self.attack.frame(self.hand.step(), self.rng)


def replay_player(attack, clip: Clip, rng: np.random.Generator) -> callable:
    """The replayed clip's frames: frontal, then its turns in a random order, on a screen."""
    order = list(clip.segments)
    rng.shuffle(order)
    indices = clip.idle[:8] + [i for action in order for i in clip.segments[action]
                               + clip.idle[:8]]
    attack.frames = [attack.frames[i % len(attack.frames)] for i in indices]
    hand = attacks.Motion(rng, attacks.holding_distance(attack, rng))
    return lambda asked: attack.frame(hand.step(), rng)


def outcome(species: str, check: LivenessCheck) -> Outcome:
    """The session's three decisions (the check ran with texture "report")."""
    seconds = None if check.decided is None else check.decided
    scores = check.texture_scores
    texture = None if not scores or check.texture is None \
        else statistics.median(scores) >= check.texture.threshold
    return Outcome(species, check.passed and texture is not False, check.reason, seconds,
                   check.step_offsets, round(check.max_offset, 4), check.passed, texture)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path,
                        help="bona fide videos (searched recursively: .mkv .gif .avi .mp4)")
    parser.add_argument("--photos", type=Path, help="face photos for attacks")
    parser.add_argument("--videos", type=Path,
                        help="instead of simulated sessions: DIR/<species>/<videos>, each "
                             "played once as recorded (DIR/bona_fide/ for live ones)")
    parser.add_argument("--mode", choices=("active", "passive"), default="active")
    parser.add_argument("--attacks", type=int, default=100, help="sessions per species")
    parser.add_argument("--bona-fide", type=int, default=100, help="bona fide sessions")
    parser.add_argument("--species", nargs="+",
                        default=list(attacks.SPECIES) + list(sequences.SPECIES))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--step-s", type=float, default=5.0)
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, help="append one JSON line per session here")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    args = parser.parse_args()
    if args.videos is None and (args.clips is None or args.photos is None):
        parser.error("give --clips and --photos (simulated sessions) or --videos")
    cv2.setNumThreads(args.threads)
    log = args.log.open("a") if args.log else None
    started = time.perf_counter()
    rng, picker = np.random.default_rng(args.seed), random.Random(args.seed)
    challenge = ChallengeConfig(steps=args.steps, step_s=args.step_s)
    analyser = Analyser(Verifier.from_model())
    if args.videos is not None:
        config = LivenessConfig(args.mode, challenge)
        results = video_sessions(args.videos, config, analyser, args.fps, picker, log)
        print_table(results, sorted({r.species for r in results} - {"bona_fide"}))
        print(f"wall time {time.perf_counter() - started:.0f} s")
        return
    clips = load_clips(args.clips, analyser.detector, challenge)
    movers = [c for c in clips if c.segments]
    actions = tuple(sorted({a for c in movers for a in c.segments}))
    print(f"bona fide clips: {len(clips)} ({len(movers)} with motion segments: "
          + ", ".join(f"{c.name} {sorted(c.segments)}" for c in movers) + ")")
    print(f"challenge actions drawn from: {', '.join(actions)} (steps {args.steps}, "
          f"{args.step_s:g} s each, {args.fps:g} fps)")
    challenge = ChallengeConfig(actions=actions, steps=args.steps, step_s=args.step_s)
    if args.mode == "passive":
        parser.error("simulated sessions run the active mode (the scripted source moves when "
                     "asked); measure passive with --videos")
    config = LivenessConfig("active", challenge, texture="report")
    results: list[Outcome] = []
    for number in range(args.bona_fide):
        clip = movers[number % len(movers)]
        template = frame_template(analyser, clip)
        check = LivenessCheck(config, random.Random(picker.random()))
        run_session(check, ResponsiveClip(clip, picker, args.fps),
                    CachedFrames(analyser, template), args.fps)
        results.append(outcome("bona_fide", check))
        record(log, results[-1])
    photos = attacks.face_photos(args.photos)
    for species in args.species:
        for _ in range(args.attacks):
            photo = cv2.imread(str(picker.choice(photos)))
            if species == "enrolled_photo":  # the bona fide person's enrolment frame, printed
                clip = picker.choice(movers)
                box = largest_face(analyser.detector.detect(clip.frames[clip.idle[0]])).box
                photo = attacks.around_face([clip.frames[clip.idle[0]]], box, 1.2)[0]
            check = LivenessCheck(config, random.Random(picker.random()))
            if species in sequences.SPECIES:
                clip = picker.choice(movers)
                first = clip.frames[clip.idle[0]]
                box = largest_face(analyser.detector.detect(first)).box
                source = sequences.PhotoSequence(
                    species, clip, sequences.renderer(species, attacks, rng, box, first), rng,
                    args.fps)
            elif species == "replay":
                clip = picker.choice(movers)
                box = largest_face(analyser.detector.detect(clip.frames[clip.idle[0]])).box
                attack = attacks.make_attack("replay", photo, rng,
                                             attacks.around_face(clip.frames, box))
                source = replay_player(attack, clip, rng)
            else:
                source = ResponsiveAttacker(attacks.make_attack(species, photo, rng), rng,
                                            args.fps)
            run_session(check, source, analyser, args.fps)
            results.append(outcome(species, check))
            record(log, results[-1])
            if len(results) % 25 == 0:
                print(f"... {len(results)} sessions, {time.perf_counter() - started:.0f} s",
                      flush=True)
    print_table(results, args.species)
    print(f"the check's cost per frame (detection excluded; the texture model runs on "
          f"{TEXTURE_FRAMES} frames a session): median {statistics.median(UPDATE_MS):.3f} ms, "
          f"p99 {np.percentile(UPDATE_MS, 99):.3f} ms over {len(UPDATE_MS):,} frames")
    print(f"wall time {time.perf_counter() - started:.0f} s")


def video_sessions(root: Path, config: LivenessConfig, analyser: Analyser, fps: float,
                   picker: random.Random, log) -> list[Outcome]:
    """One session per recorded video of ROOT/<species>/, played as recorded."""
    results = []
    for path in sorted(p for p in root.glob("*/*")
                       if p.suffix.lower() in (".mkv", ".gif", ".avi", ".mp4")):
        frames = iter(attacks.read_clip(path))
        check = LivenessCheck(config, random.Random(picker.random()))
        run_session(check, lambda asked, frames=frames: next(frames, None), analyser, fps)
        results.append(outcome(path.parent.name, check))
        record(log, results[-1])
    if not results:
        raise SystemExit(f"no videos under {root}/<species>/")
    return results


def frame_template(analyser: Analyser, clip: Clip):
    """A template from the clip's first frontal frame (the person enrols from that frame)."""
    from siamese.runtime.storage.references import Template

    verifier = analyser.verifier
    image = clip.frames[clip.idle[0]]
    face = verifier.dominant_face(image, clip.name)
    embedding = verifier.embedder.embed(align_face(image, face.landmarks))
    return Template("bona_fide", embedding.astype(np.float32), verifier.embedder.fingerprint,
                    ("frame",))


def load_clips(root: Path, detector: FaceDetector, config: ChallengeConfig) -> list[Clip]:
    clips = []
    for path in sorted(p for p in root.rglob("*")
                       if p.suffix.lower() in (".mkv", ".gif", ".avi", ".mp4")):
        clip = cut_clip(path.stem, attacks.read_clip(path), detector, config)
        if clip is not None:
            clips.append(with_mirror(clip, detector) if clip.segments else clip)
    return clips


def record(log, result: Outcome) -> None:
    if log is not None:
        log.write(json.dumps(result.__dict__) + "\n")
        log.flush()


def table_main() -> None:
    """`eval_liveness.py --table LOG...`: the table of the sessions logged by earlier runs."""
    results = [Outcome(**json.loads(line)) for path in sys.argv[2:]
               for line in Path(path).read_text().splitlines() if line.strip()]
    print_table(results, [s for s in (*attacks.SPECIES, *sequences.SPECIES)
                          if any(r.species == s for r in results)])


def print_table(results: list[Outcome], species_list: list[str]) -> None:
    print("\n| species | presentations | APCER / BPCER (shipped) | motion alone | texture alone "
          "| median s to decision | nose offset p90 / max | refusal reasons (top) |\n"
          "|---|---|---|---|---|---|---|---|")
    worst, bpcer = 0.0, None
    for species in ["bona_fide", *species_list]:
        rows = [r for r in results if r.species == species]
        if not rows:
            continue
        bona_fide = species == "bona_fide"
        rate = _rate([r.accepted for r in rows], bona_fide)
        if not bona_fide:
            worst = max(worst, rate)
        times = [r.seconds for r in rows if r.seconds is not None
                 and (r.accepted if bona_fide else True)]
        reasons: dict[str, int] = {}
        for r in rows:
            if r.reason:
                key = r.reason.split(":")[0].split(" within")[0].split(" by ")[0]
                reasons[key] = reasons.get(key, 0) + 1
        peak = max(r.max_offset for r in rows)
        p90 = float(np.percentile([r.max_offset for r in rows], 90))
        top = "; ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda x: -x[1])[:2])
        label = "BPCER" if bona_fide else "APCER"
        median = f"{statistics.median(times):.2f}" if times else "-"
        motion = _rate([r.motion for r in rows if r.motion is not None], bona_fide)
        scored = [r.texture for r in rows if r.texture is not None]
        texture = f"{100 * _rate(scored, bona_fide):.1f}% of {len(scored)}" if scored else "-"
        print(f"| {species} | {len(rows)} | {label} {100 * rate:.1f}% | {100 * motion:.1f}% "
              f"| {texture} | {median} | {p90:.3f} / {peak:.3f} | {top} |")
        if bona_fide:
            bpcer = rate
    if bpcer is not None:
        print(f"\nACER (worst APCER {100 * worst:.1f}%, BPCER {100 * bpcer:.1f}%): "
              f"{100 * (worst + bpcer) / 2:.1f}%")


def _rate(accepted: list[bool], bona_fide: bool) -> float:
    """BPCER (refused) for bona fide rows, APCER (accepted) for attacks; 0 for no rows."""
    if not accepted:
        return 0.0
    hits = sum(not a for a in accepted) if bona_fide else sum(accepted)
    return hits / len(accepted)


if __name__ == "__main__":
    table_main() if sys.argv[1:2] == ["--table"] else main()
