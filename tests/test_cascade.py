"""The photos path's cascade (runtime.cascade): the edge screen decides the clear pairs, SFace
the uncertain ones, and it stands aside wherever its band does not hold."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from siamese.runtime import cascade
from siamese.runtime.cascade import Band, Screen
from siamese.runtime.session import liveness_step
from siamese.runtime.storage.references import Template, load_template, save_template
from siamese.runtime.verifier import Decision, Verifier, VerifyConfig
from siamese.runtime.vision.imageio import read_image

FACES = Path(__file__).parent / "fixtures" / "lfw_mini" / "lfw-deepfunneled"
SAME = (FACES / "George_Clooney" / "George_Clooney_0001.jpg",
        FACES / "George_Clooney" / "George_Clooney_0002.jpg")
OTHER = FACES / "Madonna" / "Madonna_0001.jpg"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Verifier:
    return Verifier.from_model(use="photos", cache_dir=tmp_path_factory.mktemp("refs"))


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Verifier:
    return Verifier.from_model(use="photos", cache_dir=tmp_path_factory.mktemp("refs"),
                               cascade=False)


def with_band(verifier: Verifier, low: float, high: float) -> Verifier:
    """The same verifier with its screen's band moved."""
    screen = replace(verifier.screen, band=Band(low, high))
    return Verifier(verifier.embedder, verifier.detector, verifier.config,
                    verifier.cache.root, verifier.key, screen)


def test_the_band_sorts_scores_into_same_other_and_uncertain():
    band = Band(0.3, 0.6)
    assert [band.verdict(s) for s in (0.6, 0.9, 0.2999, -1.0, 0.3, 0.5999)] == \
        [True, True, False, False, None, None]


def test_only_the_packaged_photos_model_at_its_own_threshold_runs_the_cascade(photos, tmp_path):
    assert isinstance(photos.screen, Screen) and photos.screen.name == "edge"
    assert photos.screen.band == cascade.PACKAGED["sface"].band
    assert Verifier.from_model("edge", cache_dir=tmp_path).screen is None
    assert Verifier.from_model("sface", cache_dir=tmp_path, cascade=False).screen is None
    fixed = Verifier.from_model("sface", cache_dir=tmp_path,
                                config=VerifyConfig(threshold=0.5))
    assert fixed.screen is None  # a band chosen at the shipped threshold does not hold here
    later = Verifier.from_model("sface", cache_dir=tmp_path)
    later.use_threshold(0.45)  # a site calibration
    assert later.screen is None


def test_a_pair_the_screen_finds_clear_is_decided_by_it(photos, alone):
    same = photos.compare(*SAME)
    assert same.screened and same.same_person and same.score >= photos.screen.band.high
    assert same.threshold == photos.screen.band.high
    other = photos.compare(SAME[0], OTHER)
    assert other.screened and not other.same_person and other.score < photos.screen.band.low
    assert other.threshold == photos.screen.band.low
    # SFace alone agrees on both
    assert alone.compare(*SAME).same_person and not alone.compare(SAME[0], OTHER).same_person


def test_inside_the_band_the_model_decides_exactly_as_alone(photos, alone):
    everything_uncertain = with_band(photos, -2.0, 2.0)
    for pair in (SAME, (SAME[0], OTHER)):
        cascaded, single = everything_uncertain.compare(*pair), alone.compare(*pair)
        assert not cascaded.screened
        assert cascaded.score == pytest.approx(single.score, abs=1e-6)
        assert (cascaded.same_person, cascaded.threshold) == (single.same_person,
                                                              single.threshold)


def test_verify_screens_with_an_enrolled_template_and_not_with_a_loaded_one(photos, alone,
                                                                          tmp_path):
    template = photos.enroll("george", [SAME[0]])
    assert template.screen is not None and template.screen.shape == (1, 128)
    assert template.screen_fingerprint == photos.screen.embedder.fingerprint
    frame = read_image(SAME[1])
    screened = photos.verify(frame, template)
    assert screened.screened and screened.score >= photos.screen.band.high
    assert screened.match == screened.quality.ok and "embed" in screened.latency_ms
    assert screened.to_dict()["screened"] is True
    # a saved template holds SFace's embeddings only: scored by SFace, as without the cascade
    save_template(template, tmp_path / "george.json", photos.key)
    loaded = load_template(tmp_path / "george.json", photos.embedder.fingerprint, photos.key,
                           photos.dim)
    assert loaded.screen is None
    decided, single = photos.verify(frame, loaded), alone.verify(frame, alone.enroll(
        "george", [SAME[0]]))
    assert not decided.screened and decided.score == pytest.approx(single.score, abs=1e-6)
    # a screen embedding from another screening model is never used
    foreign = replace(template, screen_fingerprint="0" * 64)
    assert not photos.verify(frame, foreign).screened


def test_a_template_screen_with_bad_values_is_refused():
    from siamese.runtime.errors import ReferenceError

    with pytest.raises(ReferenceError, match="non-finite"):
        Template("x", np.ones((1, 4), np.float32), "f", screen=np.full((1, 4), np.nan))


def test_a_screened_rejection_counts_as_another_person_for_liveness():
    class Check:
        def update(self, faces, scored, match, now, other, image):
            self.other = other
            return []

    from siamese.runtime.vision.quality import Quality

    check, quality = Check(), Quality(face_px=100.0, sharpness=100.0, yaw=0.0, roll_deg=0.0,
                                      flags=())
    rejected = Decision(0, True, score=0.9, match=False, quality=quality, screened=True)
    liveness_step(check, rejected, np.zeros((4, 4, 3), np.uint8), 0.0, identity_floor=0.1)
    assert check.other  # the screen's 0.9 is on its own scale: below its band it rejected
    accepted = Decision(0, True, score=0.05, match=True, quality=quality, screened=True)
    liveness_step(check, accepted, np.zeros((4, 4, 3), np.uint8), 0.0, identity_floor=0.1)
    assert not check.other
