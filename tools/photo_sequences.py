"""Photo-sequence attacks: stills of the enrolled person at poses along a head turn, swapped.

The strongest photo attacker has photos of the enrolled person in every pose a challenge can
ask for. Here they are stills of a live clip itself (tools/eval_liveness.py's bona fide clips):
the frontal frame and 2-4 frames along each motion's segment, from frontal to its peak. Each
photo is held 0.13-0.5 s (a hand swapping prints, a thumb flipping a phone's photos), then the
same photos go back to frontal (the return a challenge asks for). Species:

  seq_injected   the stills themselves, injected into the stream as clean frames
  seq_print      the stills printed, held in a hand and swapped in place
  seq_screen     the stills on a phone screen, flipped in place
  seq_crossfade  the stills injected with a cross-fade of 2-6 frames between them
  seq_recorded   a slideshow recorded beforehand (injected): frontal, then every motion's
                 photos in a random order, over and over; it cannot answer a prompt

All but seq_recorded answer each prompt with the matching photos after a reaction delay.
"""

from __future__ import annotations

import numpy as np

SPECIES = ("seq_injected", "seq_print", "seq_screen", "seq_crossfade", "seq_recorded")


class PhotoSequence:
    """A source of frames (`__call__(asked)`) for one photo-sequence attack session.

    `clip` is an eval_liveness Clip (frames, idle frames, motion segments); `render(still)`
    turns a still into a camera frame (identity for injection, a print or a screen for the
    others: see `renderer`).
    """

    def __init__(self, species: str, clip, render, rng: np.random.Generator, fps: float
                 ) -> None:
        self.clip, self.render, self.rng, self.fps = clip, render, rng, fps
        self.responsive = species != "seq_recorded"
        self.fade = int(rng.integers(2, 7)) if species == "seq_crossfade" else 0
        self.frontal = clip.frames[clip.idle[len(clip.idle) // 2]]
        self.photos = {action: self._photos(segment) for action, segment in
                       clip.segments.items()}
        self.queue: list[np.ndarray] = []
        self.last_asked: str | None = None
        self.shown = self.frontal
        if not self.responsive:
            self.queue = self._slideshow()

    def _photos(self, segment: list[int]) -> list[np.ndarray]:
        """2-4 stills from the segment's start (frontal) to its peak (the frame a segment
        holds twice: out to it, then back from it), evenly spaced."""
        peak = next((i for i, (a, b) in enumerate(zip(segment, segment[1:], strict=False))
                     if a == b), len(segment) - 1)
        out = segment[:peak + 1]
        count = int(self.rng.integers(2, 5))
        picks = np.unique(np.linspace(0, len(out) - 1, count).round().astype(int))
        return [self.clip.frames[out[i]] for i in picks]

    def _show(self, photos: list[np.ndarray]) -> list[np.ndarray]:
        """The photos out to the peak and back, each held 0.13-0.5 s, cross-faded if asked."""
        path = [self.frontal, *photos[1:], *photos[-2::-1]]
        frames: list[np.ndarray] = []
        for before, after in zip(path, path[1:], strict=False):
            for step in range(1, self.fade + 1):
                weight = step / (self.fade + 1)
                frames.append(np.clip((1 - weight) * before.astype(np.float32)
                                      + weight * after, 0, 255).astype(np.uint8))
            frames += [after] * int(self.rng.integers(max(2, round(0.13 * self.fps)),
                                                      round(0.5 * self.fps) + 1))
        return frames

    def _slideshow(self) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        for _ in range(6):
            actions = list(self.photos)
            self.rng.shuffle(actions)
            for action in actions:
                frames += [self.frontal] * int(self.rng.integers(round(0.5 * self.fps),
                                                                 round(1.5 * self.fps)))
                frames += self._show(self.photos[action])
        return frames

    def __call__(self, asked: str | None) -> np.ndarray:
        if self.responsive and asked != self.last_asked:
            self.last_asked = asked
            if asked in self.photos:
                delay = int(self.rng.uniform(0.3, 0.8) * self.fps)
                self.queue += [self.shown] * delay + self._show(self.photos[asked])
        if self.queue:
            self.shown = self.queue.pop(0)
        elif not self.responsive:
            self.shown = self.frontal
        return self.render(self.shown)


def renderer(species: str, attacks, rng: np.random.Generator, box: np.ndarray,
             first: np.ndarray):
    """The camera frame of a still for `species` (attacks: tools/make_attacks.py): injected
    as it is, or printed / on a screen (cropped around the face `box` as make_attacks frames a
    photo), in a hand that jitters but holds its pose: the photo is swapped in place. `first`
    is the still the instrument is made with."""
    if species not in ("seq_print", "seq_screen"):
        return lambda still: still
    kind = "print" if species == "seq_print" else "screen"

    def crop(still: np.ndarray) -> np.ndarray:
        return attacks.around_face([still], box, 1.2)[0]

    instrument = attacks.make_attack(kind, crop(first), rng)
    hand = attacks.Motion(rng, attacks.holding_distance(instrument, rng))
    textures: dict[int, np.ndarray] = {}

    def render(still: np.ndarray) -> np.ndarray:
        if id(still) not in textures:
            photo = attacks.face_crop(crop(still))
            textures[id(still)] = photo if kind == "print" else attacks.screen_texture(photo,
                                                                                       rng)
        instrument.texture = textures[id(still)]
        return instrument.frame(hand.step(), rng)

    return render
