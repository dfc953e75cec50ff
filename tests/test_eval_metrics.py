"""Weight-free eval metrics on hand-built clips and feature sets with known answers."""

import numpy as np
import pytest
import scipy.linalg

import eval_toy as toy
from avdiff.eval import av_align
from avdiff.eval import distribution
from avdiff.eval import lipsync
from avdiff.eval import memorization
from avdiff.eval import offsets
from avdiff.eval import shift


def test_shift_audio_convention():
  a = np.arange(1, 11, dtype=np.float32)
  np.testing.assert_array_equal(shift.shift_audio(a, 1, fps=5, sample_rate=10), [0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
  np.testing.assert_array_equal(shift.shift_audio(a, -2, fps=5, sample_rate=10), [5, 6, 7, 8, 9, 10, 0, 0, 0, 0])
  p = shift.derangement(7, np.random.default_rng(0))
  assert sorted(p) == list(range(7)) and not np.any(p == np.arange(7))


@pytest.mark.parametrize('variant', ['v1', 'v2'])
def test_av_align_in_sync_vs_shifted(variant):
  synced, shifted = [], []
  for seed in range(4):
    c = toy.impacts_like(seed)
    r = av_align.av_align(c['video'], c['audio'], toy.FPS, toy.SR, variant)
    assert r.variant == variant and r.as_dict()['av_align_variant'] == variant
    synced.append(r.score)
    late = shift.shift_audio(c['audio'], 3, toy.FPS, toy.SR)
    shifted.append(av_align.av_align(c['video'], late, toy.FPS, toy.SR, variant).score)
  assert min(synced) >= 0.9, synced
  assert np.mean(shifted) <= np.mean(synced) - 0.4, (synced, shifted)


def test_av_align_deterministic_and_variants_differ_on_known_case():
  c = toy.impacts_like(0)
  a = av_align.av_align(c['video'], c['audio'], toy.FPS, toy.SR)
  b = av_align.av_align(c['video'].copy(), c['audio'].copy(), toy.FPS, toy.SR)
  assert a == b
  # Two onsets inside one video peak's window: v1 matches both, v2 (one-to-one) only one.
  audio_t, video_t = np.asarray([1.0, 1.05]), np.asarray([1.02])
  assert av_align.match_peaks(audio_t, video_t, fps=10, one_to_one=False) == 2
  assert av_align.match_peaks(audio_t, video_t, fps=10, one_to_one=True) == 1
  # The v2 floor drops weak local maxima.
  traj = np.asarray([0, 0.05, 0, 0.5, 0])
  assert len(av_align.video_peaks(traj, 10)) == 2 and len(av_align.video_peaks(traj, 10, floor=0.1)) == 1
  with pytest.raises(ValueError):
    av_align.av_align(c['video'], c['audio'], toy.FPS, toy.SR, 'v3')


def _mouth_envelope(video, audio, box, fps, sample_rate, min_confidence=offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE):
  signals = offsets.envelope_motion_signals(offsets.motion_energy(video, box), audio, fps, sample_rate)
  return offsets.estimate_offset(*signals, 6, min_confidence)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_mouth_envelope_recovers_shift(seed):
  c = toy.talking_like(seed)
  for k in range(-5, 6):
    audio = shift.shift_audio(c['audio'], k, toy.FPS, toy.SR)
    r = _mouth_envelope(c['video'], audio, c['mouth_box'], toy.FPS, toy.SR)
    assert r.offset_frames == k and r.lag_frames == k and r.determined and r.method == 'mouth_envelope'
    if k == 0:
      assert r.confidence > 0.8


def test_estimator_abstains_with_a_reason():
  c = toy.talking_like(0)
  still = np.repeat(c['video'][:1], len(c['video']), axis=0)
  r = _mouth_envelope(still, c['audio'], c['mouth_box'], toy.FPS, toy.SR)
  assert np.isnan(r.offset_frames) and np.isnan(r.confidence) and r.reason == 'a signal is constant'
  assert r.as_dict() == {'offset_frames': r.offset_frames, 'offset_confidence': r.confidence,
                         'offset_method': 'mouth_envelope', 'offset_reason': 'a signal is constant'}
  # A true shift beyond the search range: the best lag sits at the edge, and the estimate says so.
  late = shift.shift_audio(c['audio'], 6, toy.FPS, toy.SR)
  r = _mouth_envelope(c['video'], late, c['mouth_box'], toy.FPS, toy.SR, min_confidence=None)
  assert np.isnan(r.offset_frames) and r.lag_frames == 6 and 'edge' in r.reason
  # Another clip's audio: a best lag exists, but below the calibrated floor it is no answer.
  other = toy.talking_like(1)['audio']
  r = _mouth_envelope(c['video'], other, c['mouth_box'], toy.FPS, toy.SR)
  assert np.isnan(r.offset_frames) and r.confidence < offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE and 'below' in r.reason
  assert _mouth_envelope(c['video'], other, c['mouth_box'], toy.FPS, toy.SR, min_confidence=None).determined


def test_estimator_on_known_per_frame_signals():
  rng = np.random.default_rng(0)
  x = rng.normal(size=60)
  for k in (-4, 0, 3):
    y = np.roll(x, k)  # y[t + k] = x[t]: the audio lags by k.
    r = offsets.estimate_offset(x, y, 6, min_confidence=0.9, method='toy')
    assert r.offset_frames == k and r.method == 'toy' and r.confidence == pytest.approx(1.0)
  assert offsets.estimate_offset(x, np.full(60, 0.5), 6, None).reason == 'a signal is constant'


def test_lipsync_protocol_on_known_embeddings():
  rng = np.random.default_rng(0)
  base = rng.normal(size=(30, 8))
  for k in range(-4, 5):
    audio = np.roll(base, k, axis=0)  # audio window t + k holds the content of video window t.
    r = lipsync.score_embeddings(base, audio, max_offset=6)
    assert r.offset_frames == k and r.lse_c > 0
    d = lipsync.offset_distances(base, audio, 6).mean(0)
    assert r.lse_d == pytest.approx(d.min()) and r.lse_c == pytest.approx(np.median(d) - d.min())


def _frechet_direct(x, y):
  mx, my = x.mean(0), y.mean(0)
  sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = scipy.linalg.sqrtm(sx @ sy).real
  return np.sum((mx - my) ** 2) + np.trace(sx + sy - 2 * covmean)


def test_frechet_distance_against_scipy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 6))
  y = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 1.5
  assert distribution.frechet_distance(x, y) == pytest.approx(_frechet_direct(x, y), rel=1e-6)
  assert abs(distribution.frechet_distance(x, x)) < 1e-8
  # Known closed form: N(0, I) vs N(m, I) -> ||m||^2 (population); the estimate is close for many samples.
  z = rng.normal(size=(20000, 3))
  assert distribution.frechet_distance(z, z[::-1] + [1.0, 2.0, 0.0]) == pytest.approx(5.0, rel=1e-6)


def _mmd2_direct(x, y):
  k = lambda a, b: (a @ b / len(a) + 1.0) ** 3
  n, m = len(x), len(y)
  kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
  kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
  return kxx + kyy - 2 * kxy


def test_kid_matches_direct_and_is_unbiased():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(12, 4)), rng.normal(size=(9, 4)) + 0.5
  assert distribution.mmd2_unbiased(x, y) == pytest.approx(_mmd2_direct(x, y), rel=1e-9)
  # Same distribution: the unbiased estimate averages to 0 (the biased V-statistic would stay clearly positive).
  vals, biased = [], []
  for _ in range(300):
    a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    vals.append(distribution.mmd2_unbiased(a, b))
    kk = distribution.polynomial_kernel
    biased.append(kk(a, a).mean() + kk(b, b).mean() - 2 * kk(a, b).mean())
  sem = np.std(vals) / np.sqrt(len(vals))
  assert abs(np.mean(vals)) < 3 * sem
  assert np.mean(biased) > 10 * sem
  mean, std = distribution.kid(rng.normal(size=(60, 4)), rng.normal(size=(50, 4)) + 1.0, subset_size=20,
                               num_subsets=20)
  assert mean > 0.1 and std > 0


def test_memorization_flags_copies():
  rng = np.random.default_rng(0)
  train = rng.normal(size=(50, 16))
  held_out = rng.normal(size=(20, 16))
  copies = train[:20] + rng.normal(scale=0.01, size=(20, 16))
  res = memorization.memorization(copies, held_out, train)
  assert res['nn_index_generated'] == list(range(20))
  assert res['nn_dist_ratio'] < 0.05
  fresh = memorization.memorization(rng.normal(size=(20, 16)), held_out, train)
  assert 0.7 < fresh['nn_dist_ratio'] < 1.3


# ----------------------------------------------------------------------------- on the built-in synthetic data

def _data_cfg():
  from configs import tiny
  return tiny.get_config().data


def test_mouth_envelope_recovers_shift_on_talking_clips():
  from avdiff.data import synthetic
  d = _data_cfg()
  for seed in range(2_000_000, 2_000_006):
    c = synthetic.talking_clip(seed, d)
    for k in range(-5, 6):
      audio = shift.shift_audio(c['audio'], k, d.fps, d.sample_rate)
      r = _mouth_envelope(c['video'], audio, c['mouth_box'], d.fps, d.sample_rate, min_confidence=None)
      assert r.offset_frames == k, (seed, k, r)


def test_av_align_on_impacts_clips_in_sync_vs_shifted():
  from avdiff.data import synthetic
  d = _data_cfg()
  synced, shifted = [], []
  for seed in range(2_000_000, 2_000_012):
    c = synthetic.impacts_clip(seed, d)
    synced.append(av_align.av_align(c['video'], c['audio'], d.fps, d.sample_rate).score)
    late = shift.shift_audio(c['audio'], 3, d.fps, d.sample_rate)
    shifted.append(av_align.av_align(c['video'], late, d.fps, d.sample_rate).score)
  assert np.nanmean(synced) >= 0.8 and np.nanmean(shifted) <= np.nanmean(synced) - 0.3, (synced, shifted)
