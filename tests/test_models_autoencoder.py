"""Autoencoders: latent shapes from the layout, exact identity AE, joint latents carry both modalities, ae_loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from avdiff import config_lib
from avdiff.models import ae_loss, build_autoencoder
from configs import tiny


def config_for(kind, **ae):
  c = tiny.get_config()
  c.model.encoder = kind
  c.data.clip_seconds = 0.8  # 8 frames: fast, and still 2 latent frames per side of every stride.
  c.model.video_patch = (2, 4, 4)
  c.model.audio_patch = (8, 4)
  c.model.ae.width = 16
  for k, v in ae.items():
    c.model.ae[k] = v
  config_lib.validate(c)
  return c


def clip_batch(config, batch=2, seed=0):
  """Smooth random video in [-1, 1] and mel in [-1, 1] of the config's clip size."""
  d = config.data
  t, ta = config_lib.num_frames(d), config_lib.num_mel_frames(d)
  kv, ka = jax.random.split(jax.random.key(seed))
  video = jnp.tanh(jax.image.resize(jax.random.normal(kv, (batch, t, 4, 4, 3)), (batch, t, d.resolution,
                                                                                 d.resolution, 3), 'linear'))
  mel = jnp.tanh(jax.random.normal(ka, (batch, ta, d.n_mels)))
  return video, mel


@pytest.mark.parametrize('kind', config_lib.ENCODERS)
def test_latent_and_reconstruction_shapes(kind):
  c = config_for(kind)
  lay = config_lib.layout(c)
  ae = build_autoencoder(c, nnx.Rngs(0))
  video, mel = clip_batch(c)
  graphdef, state = nnx.split(ae)
  z = jax.jit(lambda s, v, m: nnx.merge(graphdef, s).encode(v, m))(state, video, mel)
  assert z['video'].shape == (2,) + lay.video_latent and z['audio'].shape == (2,) + lay.audio_latent
  v2, m2 = jax.jit(lambda s, z: nnx.merge(graphdef, s).decode(z))(state, z)
  assert v2.shape == video.shape and m2.shape == mel.shape
  if kind == 'patch':  # The identity AE is exact and has no parameters.
    np.testing.assert_array_equal(v2, video)
    np.testing.assert_array_equal(m2, mel)
    assert not jax.tree.leaves(nnx.state(ae, nnx.Param))


def _reconstruct(ae, video, mel):
  graphdef, state = nnx.split(ae)
  return _jit_reconstruct(graphdef, state, video, mel)


@jax.jit(static_argnums=0)
def _jit_reconstruct(graphdef, state, video, mel):
  ae = nnx.merge(graphdef, state)
  return ae.decode(ae.encode(video, mel))


@pytest.mark.parametrize('kind', ['separate_ae', 'joint_ae'])
def test_cross_modal_dependence(kind):
  """joint_ae: zeroing either stem input changes BOTH reconstructions; separate_ae: only its own."""
  c = config_for(kind)
  ae = build_autoencoder(c, nnx.Rngs(0))
  video, mel = clip_batch(c)
  v0, m0 = _reconstruct(ae, video, mel)
  v_na, m_na = _reconstruct(ae, video, jnp.zeros_like(mel))  # Audio stem input zeroed.
  v_nv, m_nv = _reconstruct(ae, jnp.zeros_like(video), mel)  # Video stem input zeroed.
  diff = lambda a, b: float(jnp.abs(a - b).max())
  assert diff(m0, m_na) > 1e-4 and diff(v0, v_nv) > 1e-4
  if kind == 'joint_ae':
    assert diff(v0, v_na) > 1e-4, 'audio input does not reach the reconstructed video'
    assert diff(m0, m_nv) > 1e-4, 'video input does not reach the reconstructed audio'
  else:
    assert diff(v0, v_na) == 0.0 and diff(m0, m_nv) == 0.0


@pytest.mark.parametrize('kind, stem', [('separate_ae', 'conv'), ('joint_ae', 'conv'), ('joint_ae', 'patch')])
def test_ae_loss_trains(kind, stem):
  c = config_for(kind, video_stem=stem)
  ae = build_autoencoder(c, nnx.Rngs(0))
  video, mel = clip_batch(c)
  batch = {'video': ((video + 1) * 127.5).round().astype(jnp.uint8), 'audio_mel': mel}
  graphdef, params = nnx.split(ae)
  opt = optax.adam(2e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(p, o, rng):
    (loss, metrics), g = jax.value_and_grad(lambda p: ae_loss(nnx.merge(graphdef, p), batch, rng), has_aux=True)(p)
    u, o = opt.update(g, o, p)
    return optax.apply_updates(p, u), o, metrics

  first = None
  for i in range(40):
    params, opt_state, m = step(params, opt_state, jax.random.key(i))
    first = first or {k: float(v) for k, v in m.items()}
  assert set(m) >= {'loss', 'loss_video', 'loss_audio', 'kl', 'psnr_video', 'mel_l1'}
  assert float(m['loss']) < 0.5 * first['loss']
  assert float(m['psnr_video']) > first['psnr_video'] + 3.0


@pytest.mark.parametrize('kernel,stride,shape', [((1, 3, 3), (1, 2, 2), (2, 5, 9, 9, 3)),
                                                 ((3, 1, 1), (2, 1, 1), (2, 5, 4, 4, 6)),
                                                 ((3, 1, 1), None, (2, 6, 4, 4, 6)),
                                                 ((1, 3), None, (2, 7, 5, 4)),
                                                 ((3, 3), (2, 1), (2, 9, 7, 1))])
def test_conv_folds_pointwise_axes_exactly(kernel, stride, shape):
  """Folding the axes a kernel does not mix into the batch computes the same convolution as the full N-d one."""
  from avdiff.models import conv
  layer = conv.Conv(shape[-1], 5, kernel, stride, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), shape)
  dims = {2: ('NHWC', 'HWIO', 'NHWC'), 3: ('NDHWC', 'DHWIO', 'NDHWC')}[len(kernel)]
  want = jax.lax.conv_general_dilated(x, layer.kernel[...], layer.stride, 'SAME', dimension_numbers=dims)
  np.testing.assert_allclose(layer(x), want + layer.bias[...], atol=1e-5)


def test_final_norm_commutes_with_nearest_upsampling():
  from avdiff.models import autoencoder, conv
  norm = conv.GroupNorm(16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (2, 3, 4, 4, 16)) * 3.0 + 1.0
  np.testing.assert_allclose(autoencoder._final_norm(norm, conv.upsample(x, (1, 2, 2))),
                             conv.upsample(autoencoder._final_norm(norm, x), (1, 2, 2)), atol=1e-5)


def test_patch_stem_keeps_the_latent_shapes_and_inverts_its_blocks():
  from avdiff.models import autoencoder
  x = jax.random.normal(jax.random.key(3), (2, 4, 8, 8, 3))
  np.testing.assert_array_equal(autoencoder.depth_to_space(autoencoder.space_to_depth(x, 4), 4), x)
  # A block's pixels land on one position: the top-left 4 x 4 block of frame 0 is position (0, 0).
  np.testing.assert_array_equal(autoencoder.space_to_depth(x, 4)[0, 0, 0, 0].reshape(4, 4, 3), x[0, 0, :4, :4])
  for kind in ('separate_ae', 'joint_ae'):
    conv_cfg, patch_cfg = config_for(kind), config_for(kind, video_stem='patch')
    video, mel = clip_batch(conv_cfg)
    want = build_autoencoder(conv_cfg, nnx.Rngs(0)).encode(video, mel)
    ae = build_autoencoder(patch_cfg, nnx.Rngs(0))
    assert isinstance(ae.video_enc, autoencoder.PatchVideoEncoder)
    got = ae.encode(video, mel)
    assert jax.tree.map(jnp.shape, got) == jax.tree.map(jnp.shape, want)
    v_hat, m_hat = ae.decode(got)
    assert v_hat.shape == video.shape and m_hat.shape == mel.shape
