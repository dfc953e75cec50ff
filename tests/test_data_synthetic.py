"""Procedural `talking` and `impacts` clips: contract shapes, determinism and exact synchrony ground truth."""


import hashlib

import librosa
import numpy as np
import pytest

from avdiff import config_lib
from avdiff.data import audio, synthetic
from configs import tiny

SEEDS = range(24)


@pytest.fixture(scope='module')
def data_cfg():
  return tiny.get_config().data


@pytest.mark.parametrize('name', synthetic.DATASETS)
def test_contract_shapes_and_ranges(data_cfg, name):
  clip = synthetic.make_clip(name, 3, data_cfg)
  frames, size = config_lib.num_frames(data_cfg), data_cfg.resolution
  assert clip['video'].shape == (frames, size, size, 3) and clip['video'].dtype == np.uint8
  assert clip['audio'].shape == (config_lib.num_samples(data_cfg),) and clip['audio'].dtype == np.float32
  assert np.abs(clip['audio']).max() <= 1.0 and np.abs(clip['audio']).max() > 0.1
  assert 0 <= clip['label'] < synthetic.num_classes(name, data_cfg)
  truth = clip['mouth_open'] if name == 'talking' else clip['impact']
  assert truth.shape == (frames,) and truth.dtype == np.float32
  assert truth.min() >= 0 and truth.max() <= 1


@pytest.mark.parametrize('name', synthetic.DATASETS)
def test_deterministic_per_seed(data_cfg, name):
  a, b, c = (synthetic.make_clip(name, s, data_cfg) for s in (5, 5, 6))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['audio'], c['audio'])


def test_speakers_differ_in_face_and_pitch(data_cfg):
  voices = [synthetic.speaker(i, data_cfg.num_speakers) for i in range(data_cfg.num_speakers)]
  assert len({round(v.f0) for v in voices}) == len(voices)
  colours = np.stack([v.face_colour for v in voices])
  assert np.min([np.abs(colours[i] - colours[j]).max() for i in range(len(voices)) for j in range(i)]) > 0.05
  assert len({(v.face_ry, v.face_rx) for v in voices}) > 1
  # The measured pitch of the audio follows the speaker.
  pitch = {}
  for seed in SEEDS:
    clip = synthetic.talking_clip(seed, data_cfg)
    f0 = librosa.yin(clip['audio'], fmin=60, fmax=500, sr=data_cfg.sample_rate, frame_length=1024, hop_length=512)
    rms = librosa.feature.rms(y=clip['audio'], frame_length=1024, hop_length=512)[0][:len(f0)]
    pitch.setdefault(clip['label'], []).append(np.median(f0[rms > 0.5 * rms.max()]))
  low, high = min(pitch), max(pitch)
  assert np.median(pitch[low]) < np.median(pitch[high])


def test_labels_cover_speakers_and_materials(data_cfg):
  speakers = {synthetic.talking_clip(s, data_cfg)['label'] for s in range(40)}
  materials = {synthetic.impacts_clip(s, data_cfg)['label'] for s in range(40)}
  assert len(speakers) >= data_cfg.num_speakers - 1
  assert materials == set(range(data_cfg.num_materials))


def test_mouth_follows_audio_envelope(data_cfg):
  per_frame = config_lib.num_samples(data_cfg) // config_lib.num_frames(data_cfg)
  for seed in SEEDS:
    clip = synthetic.talking_clip(seed, data_cfg)
    envelope = audio.frame_rms(clip['audio'], per_frame)
    assert np.corrcoef(envelope, clip['mouth_open'])[0, 1] > 0.9, seed
    assert clip['mouth_open'].max() == pytest.approx(1.0)


def test_mouth_is_drawn_inside_mouth_box(data_cfg):
  """The pixels that change with the mouth opening lie inside mouth_box, and their darkness follows it."""
  for seed in SEEDS[:6]:
    clip = synthetic.talking_clip(seed, data_cfg)
    y0, x0, y1, x1 = clip['mouth_box']
    assert 0 <= y0 < y1 <= data_cfg.resolution and 0 <= x0 < x1 <= data_cfg.resolution
    crop = clip['video'][:, y0:y1, x0:x1].astype(np.float32)
    darkness = -crop.mean(axis=(1, 2, 3))
    assert np.corrcoef(darkness, clip['mouth_open'])[0, 1] > 0.9, seed


def _onset_times(wave, sample_rate):
  return librosa.onset.onset_detect(y=wave, sr=sample_rate, hop_length=100, units='time')


def test_every_impact_has_an_onset_within_one_frame(data_cfg):
  fps = data_cfg.fps
  total = 0
  for seed in SEEDS:
    clip = synthetic.impacts_clip(seed, data_cfg)
    onsets = _onset_times(clip['audio'], data_cfg.sample_rate)
    for frame in np.flatnonzero(clip['impact']):
      total += 1
      # The sound starts at frame / fps; accept detections from one frame early to one frame late.
      assert np.any((onsets >= (frame - 1) / fps) & (onsets < (frame + 2) / fps)), (seed, frame, onsets)
  assert total >= len(SEEDS)  # Every clip has at least one impact on average.


def test_audio_is_quiet_before_the_first_impact(data_cfg):
  per_frame = config_lib.num_samples(data_cfg) // config_lib.num_frames(data_cfg)
  for seed in SEEDS[:8]:
    clip = synthetic.impacts_clip(seed, data_cfg)
    first = int(np.flatnonzero(clip['impact'])[0])
    rms = audio.frame_rms(clip['audio'], per_frame)
    assert rms[:first].max(initial=0.0) < 0.05 * rms[first]


def test_impacts_follow_the_scale(data_cfg):
  """Physics is in frame units: the same seed gives impacts at the same times at a higher resolution."""
  big = tiny.get_config().data
  big.resolution = 64
  for seed in SEEDS[:4]:
    np.testing.assert_array_equal(synthetic.impacts_clip(seed, data_cfg)['impact'],
                                  synthetic.impacts_clip(seed, big)['impact'])


def test_impacts_motion_rises_to_each_contact_and_stops(data_cfg):
  """Contacts are >= 5 frames apart, away from the clip ends; motion grows into each contact and the next frame is
  still, so a contact frame is where the visual motion peaks."""
  frames = config_lib.num_frames(data_cfg)
  for seed in SEEDS:
    clip = synthetic.impacts_clip(seed, data_cfg)
    hits = np.flatnonzero(clip['impact'])
    assert hits[0] >= 3 and hits[-1] <= frames - 2 and np.all(np.diff(hits) >= 5), (seed, hits)
    video = clip['video'].astype(np.int32)
    change = np.abs(np.diff(video, axis=0)).sum(axis=(1, 2, 3))  # change[f - 1]: motion into frame f.
    for f in hits:
      np.testing.assert_array_equal(video[f + 1], video[f])
      assert change[f - 1] > change[f - 2] > 0, (seed, f, change)


def _assert_clip_unchanged(clip, label, digest, moments, exact_keys):
  """clip['label'] is `label`, the sha1 of the exact_keys' bytes is `digest`, and each float array in `moments`
  has the given (sum, sum of squares, sine-weighted sum). The float arrays are compared by moments, to 1e-6
  relative, because their last bits depend on the CPU: numpy's X86_V3 and X86_V2 kernels draw audio ~2e-7 apart.
  Any change to what is drawn moves the moments by orders of magnitude more."""
  sha = hashlib.sha1()
  for key in exact_keys:
    sha.update(np.ascontiguousarray(clip[key]).tobytes())
  assert (clip['label'], sha.hexdigest()) == (label, digest)
  for key, values in moments.items():
    x = np.asarray(clip[key], np.float64).ravel()
    found = (x.sum(), (x * x).sum(), (x * np.sin(np.arange(x.size))).sum())
    np.testing.assert_allclose(found, values, rtol=1e-6, atol=1e-5, err_msg=key)


def test_speaker_mode_clips_are_unchanged(data_cfg):
  """attributes='speaker' (the default) draws exactly the clips it drew before independent attributes existed: the
  main job's measured results were made on them. sha1 of video and mouth_box; audio and mouth_open by moments."""
  expected = {
      0: (4, '3a4fee18fb4cd050003c787ba480e123b1ba6de2',
          {'audio': (1.14914, 707.326535, 4.799974), 'mouth_open': (7.847969, 5.172173, 0.32418)}),
      1: (4, '8698d373426cd7f971061612c55f87f6e9b30a9d',
          {'audio': (0.751958, 332.388391, 0.504681), 'mouth_open': (5.0893, 2.844794, -0.433663)}),
      1_000_007: (0, 'a68e0cba20233f15da19b5c4a3a6635dc6070062',
                  {'audio': (-0.489417, 390.312749, -3.559003), 'mouth_open': (6.124702, 4.148558, 0.835724)})}
  assert synthetic.attribute_mode(data_cfg) == 'speaker'
  for seed, (label, digest, moments) in expected.items():
    clip = synthetic.talking_clip(seed, data_cfg)
    _assert_clip_unchanged(clip, label, digest, moments, exact_keys=('video', 'mouth_box'))
    assert set(clip) == {'video', 'audio', 'label', 'mouth_open', 'mouth_box'}
  np.testing.assert_array_equal(synthetic.talking_mouth_region(3, data_cfg), [16, 8, 28, 24])


def test_default_impacts_clips_are_unchanged(data_cfg):
  """attributes='speaker' (the default) impacts clips are the ones drawn before independent attributes existed.
  sha1 of video and impact (0/1 values); audio by moments."""
  expected = {0: (3, 'd913d02f5b220b951b3fd42743c23ff5dd54f0c8', {'audio': (0.932073, 26.382375, 3.407222)}),
              1: (2, '71f4509fca378970c859511e96afa758ad17b209', {'audio': (-0.077934, 488.022472, -3.020863)}),
              1_000_007: (1, 'c8c673b32e517c7ea3258654e8f232efbaf6236d', {'audio': (0.560064, 597.654898, 0.029044)})}
  for seed, (label, digest, moments) in expected.items():
    clip = synthetic.impacts_clip(seed, data_cfg)
    _assert_clip_unchanged(clip, label, digest, moments, exact_keys=('video', 'impact'))
    assert set(clip) == {'video', 'audio', 'label', 'impact'}
