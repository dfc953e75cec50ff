"""Any-length generation (avdiff.long_clips): the window plan, windows fused where they overlap, the known prefix
of a continuing window, whole clips out of an (untrained) model, and files in. Whether the main-job model keeps
lip-sync, seams and identity over long clips is measured in benchmarks/long_clips.md and asserted at reduced scale in
tests/test_main_job_outcome.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile
from flax import nnx

import train_toy
from avdiff import diffusion
from avdiff import long_clips
from avdiff import models
from avdiff import sampling
from avdiff.data import av_io
from avdiff.data import synthetic
from avdiff.diffusion import windows
from avdiff.eval import long_clips as measures
from configs import base


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  return train_toy.config(str(tmp_path_factory.mktemp('tfds')))  # 0.8 s windows: 8 frames, 4 latent token rows.


@pytest.fixture(scope='module')
def model(config):
  """An untrained DiT with every parameter perturbed: adaLN-Zero's zero outputs would draw one grey clip for any
  seed."""
  dit = models.build_dit(config, nnx.Rngs(0))
  params = nnx.state(dit, nnx.Param)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(0), len(leaves))
  nnx.update(dit, jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape, p.dtype)
                                            for p, k in zip(leaves, keys)]))
  return sampling.Model(config, dit)


# ----------------------------------------------------------------------------- plan

@pytest.mark.parametrize('frames', [1, 5, 8, 9, 14, 30, 81])
def test_plan_windows_cover_the_clip_once(config, frames):
  p = long_clips.plan(config, frames, overlap_seconds=0.2)  # 2 of 8 frames.
  assert p.window == 8 and p.overlap == 2 and p.hop == 6
  own = [p.own(w) for w in range(p.num_windows)]
  assert own[0][0] == 0 and own[-1][1] == frames
  assert all(a[1] == b[0] for a, b in zip(own, own[1:]))  # Contiguous, no frame twice.
  assert p.padded >= frames and p.padded - p.hop < max(frames, p.window)  # No window more than needed.
  assert p.boundaries == [b for b, _ in own[1:]]


def test_plan_rounds_the_overlap_and_rejects_what_cannot_work(config):
  assert long_clips.plan(config, 40, 0.26).overlap == 3
  assert long_clips.plan(config, 40, 0.0).num_windows == 5  # Independent windows.
  for overlap in (0.8, 1.5, -0.1):
    with pytest.raises(ValueError, match='overlap'):
      long_clips.plan(config, 40, overlap)
  with pytest.raises(ValueError, match='at least one video frame'):
    long_clips.plan(config, 0)


# ----------------------------------------------------------------------------- fusing windows

def _windows_of(canvas, n, hop, t):
  return jnp.stack([canvas[:, i * hop:i * hop + t] for i in range(n)], 1).reshape((-1, t) + canvas.shape[2:])


def test_fuse_keeps_agreeing_windows_and_makes_disagreeing_ones_agree():
  n, hop, t = 4, 3, 5
  canvas = {'video': jax.random.normal(jax.random.key(0), (2, windows.canvas_frames(n, hop, t), 2)),
            'audio': jax.random.normal(jax.random.key(1), (2, 2 * windows.canvas_frames(n, hop, t), 3))}
  x = {'video': _windows_of(canvas['video'], n, hop, t), 'audio': _windows_of(canvas['audio'], n, 2 * hop, 2 * t)}
  fuse = windows.fuse_overlaps(n, hop)
  for time in (0.5, 1.0):  # Windows cut from one clip stay as they are.
    out = fuse(x, jnp.float32(time))
    for k in x:
      np.testing.assert_allclose(out[k], x[k], rtol=1e-6, atol=1e-6)
  noisy = {k: v + jax.random.normal(jax.random.key(2), v.shape) for k, v in x.items()}
  for time in (0.5, 1.0):
    out = fuse(noisy, jnp.float32(time))['video'].reshape(2, n, t, 2)
    for i in range(n - 1):  # The frames two windows share are equal after fusing.
      np.testing.assert_allclose(out[:, i, hop:], out[:, i + 1, :t - hop], rtol=1e-5, atol=1e-6)
  first = fuse(noisy, jnp.float32(1.0))['video'].reshape(2, n, t, 2)
  np.testing.assert_array_equal(first[:, 0], noisy['video'].reshape(2, n, t, 2)[:, 0])  # Initial noise: earliest.


def test_shared_appearance_gives_every_window_the_clip_mean_while_noisy():
  n, hop, t = 3, 4, 6
  x = {'video': jax.random.normal(jax.random.key(0), (2 * n, t, 2, 2, 3)),
       'audio': jax.random.normal(jax.random.key(1), (2 * n, 2 * t, 4, 1))}
  shared = windows._share_mean(x['video'], n).reshape(2, n, t, 2, 2, 3)  # pylint: disable=protected-access
  means = shared.mean(axis=2)
  np.testing.assert_allclose(means, np.broadcast_to(means[:, :1], means.shape), rtol=1e-5, atol=1e-6)
  motion = lambda v: v - v.mean(axis=2, keepdims=True)  # What moves is each window's own.
  np.testing.assert_allclose(motion(shared), motion(x['video'].reshape(2, n, t, 2, 2, 3)), rtol=1e-5, atol=1e-5)
  plain, sharing = windows.fuse_overlaps(n, hop), windows.fuse_overlaps(n, hop, share_above=0.5)
  for time, same in ((0.3, True), (0.7, False)):
    a, b = plain(x, jnp.float32(time)), sharing(x, jnp.float32(time))
    np.testing.assert_array_equal(a['audio'], b['audio'])  # Video only.
    assert np.array_equal(a['video'], b['video']) == same


def test_window_weights_sum_to_one_on_the_clip():
  n, hop, t = 5, 6, 10
  w = windows.window_weights(n, hop, t)
  total = np.zeros(windows.canvas_frames(n, hop, t))
  for i in range(n):
    total[i * hop:i * hop + t] += np.asarray(w[i])
  np.testing.assert_allclose(total, 1.0, rtol=1e-6)


@pytest.mark.parametrize('mode,given,generated', [('audio_to_video', 'audio', 'video'),
                                                   ('video_to_audio', 'video', 'audio')])
def test_a_continuing_window_keeps_its_prefix_and_the_given_modality_exact(mode, given, generated):
  shapes = {'video': (3, 4, 2, 2, 1), 'audio': (3, 8, 2, 1)}
  cond = {k: jax.random.normal(jax.random.key(i), s) for i, (k, s) in enumerate(shapes.items())}
  pred_fn = lambda x, t, label: {k: 0.5 * v + t[k].reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in x.items()}
  c = _diffusion_config()
  out = diffusion.sample(pred_fn, shapes, jnp.zeros((3,), jnp.int32), jax.random.key(0), c, mode=mode, cond=cond,
                         cond_frames=1)
  np.testing.assert_array_equal(out[given], cond[given])
  known = 1 if generated == 'video' else 2
  np.testing.assert_array_equal(out[generated][:, :known], cond[generated][:, :known])
  assert not np.allclose(out[generated][:, known:], cond[generated][:, known:])


def _diffusion_config():
  c = base.get_config().diffusion
  c.num_sampling_steps = 4
  return c


# ----------------------------------------------------------------------------- whole clips

@pytest.mark.parametrize('method', long_clips.METHODS)
def test_audio_to_video_returns_the_whole_length_with_the_given_audio(config, model, method):
  clips = [synthetic.make_clip('talking', 2_000_000 + i, config.data) for i in range(2)]
  wave = np.concatenate([clips[0]['audio']] * 3)[:int(2.1 * config.data.sample_rate)]  # 2.1 s: 21 frames.
  short = clips[1]['audio'][:int(0.35 * config.data.sample_rate)]  # Less than one window.
  out = long_clips.generate(model, [{'audio': wave, 'label': 1}, {'audio': short}], overlap_seconds=0.2,
                            method=method)
  assert out[0]['video'].shape == (21, 32, 32, 3) and out[0]['video'].dtype == np.uint8
  assert out[1]['video'].shape == (3, 32, 32, 3)
  np.testing.assert_array_equal(out[0]['audio'], wave)
  assert out[0]['label'] == 1 and out[1]['label'] == config.model.num_classes
  assert out[0]['plan'].num_windows == 4
  again = long_clips.generate(model, [{'audio': wave, 'label': 1}], overlap_seconds=0.2, method=method)
  np.testing.assert_array_equal(again[0]['video'], out[0]['video'])  # Seeded (the first clip of a batch alike).
  other = long_clips.generate(model, [{'audio': wave, 'label': 1}], overlap_seconds=0.2, method=method, seed=1)
  assert not np.array_equal(other[0]['video'], out[0]['video'])


def test_video_to_audio_returns_the_whole_length_with_the_given_frames(config, model):
  clip = synthetic.make_clip('talking', 2_000_000, config.data)
  video = np.concatenate([clip['video']] * 2)[:13]
  out = long_clips.generate(model, [{'video': video}], 'video_to_audio', overlap_seconds=0.2, method='continue')
  np.testing.assert_array_equal(out[0]['video'], video)
  assert out[0]['audio'].shape == (13 * 1600,) and np.isfinite(out[0]['audio']).all()


def test_seam_ratio_compares_boundaries_with_the_same_token_phase():
  video = np.zeros((21, 4, 4, 3), np.uint8)
  video[np.arange(21) // 2 % 2 == 1] = 30  # 2-frame tokens: the picture changes between tokens, not within.
  assert measures.seam_ratio(video, [6, 12], period=2) == pytest.approx(1.0)
  assert measures.seam_ratio(video, [6, 12], period=1) > 1.5  # Against every transition: a seam that is not there.
  video[12:] += 100  # A jump into frame 12.
  assert measures.seam_ratio(video, [6, 12], period=2) > 1.5


# ----------------------------------------------------------------------------- files

def test_files_of_any_rate_and_channels_are_read_at_the_model_clock(config, tmp_path):
  rate, seconds = 44100, 1.5
  t = np.arange(int(rate * seconds)) / rate
  stereo = np.stack([0.4 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)], 1).astype(np.float32)
  soundfile.write(tmp_path / 'speech.wav', stereo, rate)
  given = long_clips.read_given(config, str(tmp_path / 'speech.wav'), 'audio_to_video', label=2)
  assert given.clip['audio'].shape == (int(seconds * config.data.sample_rate),) and given.clip['label'] == 2
  assert given.original.shape == (len(t), 2) and given.rate == rate and not given.notes
  soundfile.write(tmp_path / 'quiet.wav', np.zeros(4000, np.float32), 16000)
  notes = long_clips.read_given(config, str(tmp_path / 'quiet.wav'), 'audio_to_video').notes
  assert any('silent' in n for n in notes) and any('shorter than one window' in n for n in notes)
  av_io.write_video(str(tmp_path / 'mute.mp4'), np.zeros((10, 32, 32, 3), np.uint8), None, 25, 16000)
  with pytest.raises(long_clips.InputError, match='no audio stream'):
    long_clips.read_given(config, str(tmp_path / 'mute.mp4'), 'audio_to_video')
  frames = long_clips.read_given(config, str(tmp_path / 'mute.mp4'), 'video_to_audio').clip['video']
  assert frames.shape == (4, 32, 32, 3)  # 0.4 s at 10 fps.
  (tmp_path / 'text.wav').write_text('not a sound')
  with pytest.raises(long_clips.InputError, match='cannot read audio'):
    long_clips.read_given(config, str(tmp_path / 'text.wav'), 'audio_to_video')
  soundfile.write(tmp_path / 'blip.wav', np.zeros(800, np.float32), 16000)  # 0.05 s: half a frame.
  with pytest.raises(long_clips.InputError, match='less than one video frame'):
    long_clips.read_given(config, str(tmp_path / 'blip.wav'), 'audio_to_video')


def test_long_clip_measures_tell_synced_from_unsynced_clips(config):
  """Ground truth 4 windows long scores as synced, with no seam and no drift; its audio paired with another clip's
  video (or frames with another clip's sound) does not."""
  clips = measures.held_out(config.data, 4, 4)
  p = long_clips.plan(config, len(clips[0]['video']), 0.2)
  own = [p.own(w) for w in range(p.num_windows)]
  m = measures.measure(clips, clips, config.data, p.boundaries, own, p.window, token_frames=2)
  assert m['r']['mean'] > 0.9 and abs(m['shuffled_r']['mean']) < 0.3, m
  assert m['colour_drift']['mean'] < 0.01 and 0.7 < m['seam_ratio']['mean'] < 1.3, m
  swapped = [dict(c, video=o['video']) for c, o in zip(clips, clips[1:] + clips[:1])]
  assert measures.measure(clips, swapped, config.data, p.boundaries, own, p.window)['r']['mean'] < 0.5
  v2a = measures.measure_video_to_audio(clips, clips, config.data, p.window)
  assert v2a['r']['mean'] > 0.9 and v2a['segment_r']['mean'] > 0.9 and abs(v2a['shuffled_r']['mean']) < 0.3, v2a
