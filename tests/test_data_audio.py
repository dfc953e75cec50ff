"""Log-mel features on the video clock and their Griffin-Lim inversion."""

import librosa
import numpy as np
import pytest

from avdiff import config_lib
from avdiff.data import audio
from configs import tiny


@pytest.fixture
def data_cfg():
  return tiny.get_config().data


def test_shape_matches_video_clock(data_cfg):
  samples = config_lib.num_samples(data_cfg)
  mel = audio.log_mel(np.zeros(samples, np.float32), data_cfg)
  assert mel.shape == (config_lib.num_frames(data_cfg) * data_cfg.mel_frames_per_video_frame, data_cfg.n_mels)
  assert mel.dtype == np.float32
  np.testing.assert_allclose(mel, -1.0)  # Silence sits at the floor.


def test_batched_equals_single(data_cfg):
  rng = np.random.default_rng(0)
  waves = 0.1 * rng.standard_normal((3, config_lib.num_samples(data_cfg))).astype(np.float32)
  batched = audio.log_mel(waves, data_cfg)
  assert batched.shape[0] == 3
  np.testing.assert_allclose(batched[1], audio.log_mel(waves[1], data_cfg), atol=1e-5)


@pytest.mark.parametrize('freq', [300.0, 1000.0, 3000.0])
def test_pure_tone_lands_in_its_mel_bin(data_cfg, freq):
  samples = config_lib.num_samples(data_cfg)
  t = np.arange(samples) / data_cfg.sample_rate
  mel = audio.log_mel(0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32), data_cfg)
  # Band b of librosa's filterbank peaks at centre frequency b + 1 of the n_mels + 2 mel-spaced edges.
  centres = librosa.mel_frequencies(data_cfg.n_mels + 2, fmin=data_cfg.fmin, fmax=data_cfg.fmax)[1:-1]
  expected = int(np.argmin(np.abs(centres - freq)))
  bins = mel[2:-2].argmax(-1)
  np.testing.assert_array_equal(bins, expected)
  # A -6 dB sine reads -6 dB in its band: normalized (-6 + 40) / 40 with the -80 dB floor.
  assert mel[2:-2].max() == pytest.approx((-6.02 - data_cfg.mel_db_floor / 2) / (-data_cfg.mel_db_floor / 2), abs=0.05)


def test_click_lands_in_its_mel_frame(data_cfg):
  """A click at the start of video frame f shows up in that frame's mel frames, not earlier."""
  samples = config_lib.num_samples(data_cfg)
  hop = config_lib.mel_hop(data_cfg)
  k = data_cfg.mel_frames_per_video_frame
  frame = 7
  wave = np.zeros(samples, np.float32)
  start = frame * k * hop
  wave[start:start + 40] = 0.8
  energy = audio.mel_power(wave, data_cfg).sum(-1)
  assert int(np.argmax(energy)) // k == frame


def _syllable(data_cfg):
  samples = config_lib.num_samples(data_cfg)
  sr = data_cfg.sample_rate
  t = np.arange(samples) / sr
  env = np.zeros(samples, np.float32)
  for onset, dur in ((0.2, 0.3), (0.7, 0.2), (1.2, 0.4)):
    inside = (t >= onset) & (t < onset + dur)
    env[inside] = np.sin(np.pi * (t[inside] - onset) / dur)
  f0 = 140.0
  voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12))
  return (0.5 * env * voiced / np.abs(voiced).max()).astype(np.float32), env


def test_griffin_lim_round_trip_keeps_envelope(data_cfg):
  wave, env = _syllable(data_cfg)
  mel = audio.log_mel(wave, data_cfg)
  recon = audio.mel_to_waveform(mel, data_cfg, n_iter=32)
  assert recon.shape == wave.shape and recon.dtype == np.float32
  hop = config_lib.mel_hop(data_cfg)
  original_env = audio.frame_rms(wave, hop)
  recon_env = audio.frame_rms(recon, hop)
  assert np.corrcoef(original_env, recon_env)[0, 1] > 0.9
  # And the spectrogram itself comes back close.
  assert np.mean(np.abs(audio.log_mel(recon, data_cfg) - mel)) < 0.15


def test_mel_to_waveform_is_deterministic(data_cfg):
  wave, _ = _syllable(data_cfg)
  mel = audio.log_mel(wave, data_cfg)
  np.testing.assert_array_equal(audio.mel_to_waveform(mel, data_cfg, n_iter=4),
                                audio.mel_to_waveform(mel, data_cfg, n_iter=4))
