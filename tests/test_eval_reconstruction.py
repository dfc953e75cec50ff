"""What the outcome readers see through an autoencoder: a lossless one keeps every reading of the clips; one that
freezes the mouth or swaps the sound loses exactly the reading it breaks."""

import numpy as np
import pytest

from avdiff.data import audio as audio_lib
from avdiff.data import synthetic
from avdiff.eval import outcomes
from avdiff.eval import reconstruction
from avdiff.models import autoencoder
from configs import tiny


@pytest.fixture(scope='module')
def setup():
  d = tiny.get_config().data
  clips = [dict(c, audio_mel=audio_lib.log_mel(c['audio'], d)) for c in
           (synthetic.talking_clip(s, d) for s in range(300, 316))]
  classifier = outcomes.SpeakerClassifier.fit([synthetic.talking_clip(s, d) for s in range(1000, 1064)])
  return d, clips, classifier


def test_lossless_reconstruction_keeps_every_reading(setup):
  d, clips, classifier = setup
  video_hat, mel_hat = reconstruction.reconstruct(autoencoder.IdentityAE(), clips, batch_size=6)
  assert video_hat.dtype == np.uint8 and video_hat.shape == (len(clips),) + clips[0]['video'].shape
  np.testing.assert_allclose(video_hat.astype(int), np.stack([c['video'] for c in clips]).astype(int), atol=1)
  np.testing.assert_allclose(mel_hat, np.stack([c['audio_mel'] for c in clips]), atol=1e-6)
  read = reconstruction.readers(clips, video_hat, mel_hat, d, classifier)
  assert read['mouth_reader_r'] == pytest.approx(read['mouth_reader_r_truth'], abs=1e-3)
  assert read['mouth_reader_r_truth'] >= 0.95 and read['speaker_accuracy'] == read['speaker_accuracy_truth'] == 1.0
  assert read['envelope_r'] > 0.99, read


def test_a_frozen_mouth_and_swapped_sound_are_read_as_lost(setup):
  d, clips, classifier = setup
  frozen = np.stack([np.repeat(c['video'][:1], len(c['video']), 0) for c in clips])  # The first frame held.
  swapped = np.stack([clips[(i + 1) % len(clips)]['audio_mel'] for i in range(len(clips))])
  read = reconstruction.readers(clips, frozen, swapped, d, classifier)
  assert not read['mouth_reader_r'] >= 0.5, read  # NaN (a constant reading) or low.
  assert read['speaker_accuracy'] == 1.0  # The face colour survives a frozen frame.
  assert read['envelope_r'] < 0.5, read
