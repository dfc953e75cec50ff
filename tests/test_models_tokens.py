"""Tokenizer: exact patchify round trips, shared-clock rotary positions, sequence orders, derived token rates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from avdiff import config_lib
from avdiff.models import encoder, patching, positions, tokens
from configs import base, tiny


def config_for(encoder_kind='patch', **model):
  c = tiny.get_config()
  c.model.encoder = encoder_kind
  for k, v in model.items():
    c.model[k] = v
  config_lib.validate(c)
  return c


@pytest.mark.parametrize('encoder_kind', config_lib.ENCODERS)
def test_patchify_round_trip_is_exact(encoder_kind):
  c = config_for(encoder_kind)
  lay = config_lib.layout(c)
  kv, ka = jax.random.split(jax.random.key(0))
  v = jax.random.normal(kv, (2,) + lay.video_latent)
  a = jax.random.normal(ka, (2,) + lay.audio_latent)
  pv = patching.patchify_video(v, lay.video_patch)
  pa = patching.patchify_audio(a, lay.audio_patch)
  assert pv.shape == (2, lay.num_video_tokens, lay.video_patch_dim)
  assert pa.shape == (2, lay.num_audio_tokens, lay.audio_patch_dim)
  np.testing.assert_array_equal(patching.unpatchify_video(pv, lay.video_patch, lay.video_latent), v)
  np.testing.assert_array_equal(patching.unpatchify_audio(pa, lay.audio_patch, lay.audio_latent), a)


def test_patch_token_holds_one_contiguous_block():
  v = jnp.arange(4 * 4 * 4, dtype=jnp.float32).reshape(1, 4, 4, 4, 1)
  p = patching.patchify_video(v, (2, 2, 2))
  # Token 1 is t-block 0, h-block 0, w-block 1.
  np.testing.assert_array_equal(p[0, 1], v[0, 0:2, 0:2, 2:4, 0].reshape(-1))


@pytest.mark.parametrize('order', config_lib.ORDERS)
def test_sequence_order_round_trip(order):
  c = config_for(sequence_order=order)
  enc = encoder.SharedAVEncoder(config_lib.layout(c), 16, rngs=nnx.Rngs(0))
  v = jnp.arange(enc.layout.num_video_tokens)[None, :, None]
  a = 1000 + jnp.arange(enc.layout.num_audio_tokens)[None, :, None]
  seq = enc.to_sequence(v, a)
  v2, a2 = enc.split_sequence(seq)
  np.testing.assert_array_equal(v2, v)
  np.testing.assert_array_equal(a2, a)


def test_interleaved_order_groups_tokens_by_time():
  c = config_for(sequence_order='interleaved')
  lay = tokens.token_layout(config_lib.layout(c))
  times = np.concatenate([lay.video_time, lay.audio_time])[lay.perm]
  assert np.all(np.diff(times) >= -1e-9)  # Non-decreasing time along the sequence.
  assert lay.modality[0] == tokens.VIDEO and lay.modality[-1] == tokens.AUDIO


def rotation(config, head_dim=32):
  clip = config_lib.layout(config)
  lay = tokens.token_layout(clip)
  sep = clip.positions == 'rope_separate'
  return (clip, lay, positions.rope_angles(lay.video_pos, head_dim, 1e4, sep),
          positions.rope_angles(lay.audio_pos, head_dim, 1e4, sep))


@pytest.mark.parametrize('cfg', ['tiny', 'base', 'tiny_ratio2'])
def test_shared_clock_equal_temporal_rotation(cfg):
  c = tiny.get_config() if cfg != 'base' else base.get_config()
  if cfg == 'tiny_ratio2':
    c.model.audio_patch = (4, 8)  # Audio tokens of 0.1 s: two audio time steps per video token step.
  config_lib.validate(c)
  clip, lay, ang_v, ang_a = rotation(c)
  nt = positions.axis_split(32, False)[0]
  r = config_lib.audio_tokens_per_video_token_time(c)
  assert r == clip.audio_steps_per_video_step == (2 if cfg == 'tiny_ratio2' else 1)
  # Pair every token with the others that share its time: the temporal channels rotate identically.
  for i in range(0, clip.num_video_tokens, 7):
    same = np.isclose(lay.audio_time, lay.video_time[i])
    if r == 1:
      assert same.any()
      np.testing.assert_allclose(ang_a[same][:, :nt], np.broadcast_to(ang_v[i, :nt], (same.sum(), nt)), rtol=1e-6)
    else:  # A video token spans r audio steps; its clock position is their mean.
      span = np.abs(lay.audio_time - lay.video_time[i]) < clip.video_token_seconds / 2
      np.testing.assert_allclose(ang_a[span][:, :nt].mean(0), ang_v[i, :nt], rtol=1e-5)
  # Tokens at different times rotate differently; spatial channels never coincide across modalities.
  assert not np.allclose(ang_v[0, :nt], ang_v[-1, :nt])
  spatial_v = {tuple(p) for p in lay.video_pos[:, 1:]}
  assert not spatial_v & {tuple(p) for p in lay.audio_pos[:, 1:]}


def test_separate_positions_have_no_shared_clock():
  c = config_for(positions='rope_separate')
  _, lay, ang_v, ang_a = rotation(c)
  same = np.isclose(lay.audio_time, lay.video_time[0])
  assert not np.allclose(ang_a[same][0], ang_v[0])


def test_token_rates_are_derived_and_checked():
  c = tiny.get_config()
  lay = config_lib.layout(c)
  assert lay.num_video_tokens == 160 and lay.num_audio_tokens == 40
  c.model.audio_patch = (6, 8)  # 0.15 s audio tokens against 0.2 s video tokens: no common clock.
  with pytest.raises(config_lib.ConfigError):
    config_lib.layout(c)


def test_rotation_is_relative():
  """q.k after rotation depends only on the position difference (what makes equal times 'the same place')."""
  ang = positions.rope_angles(np.array([[0., 0, 0], [3., 1, 2], [5., 4, 4], [8., 5, 6]], np.float32), 8, 100.0)
  cos, sin = np.cos(ang), np.sin(ang)
  q = jax.random.normal(jax.random.key(0), (1, 1, 1, 8))
  k = jax.random.normal(jax.random.key(1), (1, 1, 1, 8))
  rq = lambda i: positions.apply_rope(q, cos[i:i + 1], sin[i:i + 1])
  rk = lambda i: positions.apply_rope(k, cos[i:i + 1], sin[i:i + 1])
  d1 = float(jnp.sum(rq(1) * rk(0)))
  d2 = float(jnp.sum(rq(3) * rk(2)))  # Same offset (3, 1, 2).
  np.testing.assert_allclose(d1, d2, rtol=1e-5)
