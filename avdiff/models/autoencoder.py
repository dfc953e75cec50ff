"""Stage-1 latent autoencoders for video + log-mel: identity ('patch'), one per modality ('separate_ae'), or one
joint model whose shared layers mix video and audio of the same time span ('joint_ae').

    ae.encode(video [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels]) -> {'video': [B, T_l, H_l, W_l, C_v],
                                                                         'audio': [B, T_al, F_l, C_a]} (posterior mean)
    ae.decode(latents) -> (video [B, T, H, W, 3], mel [B, T_a, n_mels])
    ae_loss(ae, batch, rng) -> (loss, metrics): per-modality MSE + kl_weight * KL(q(z|x) || N(0, I)).

Latent shapes equal `config_lib.layout(config).video_latent / audio_latent`; the temporal downsampling of both
modalities is the same factor, so latent video frames and latent audio frames stay on one clock.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from avdiff import config_lib
from avdiff.data import frames
from avdiff.models import attention as attn_lib
from avdiff.models import conv, layers


def _log2(n: int, field: str) -> int:
  k = int(round(math.log2(n))) if n > 0 else -1
  if k < 0 or 2 ** k != n:
    raise config_lib.ConfigError(f'model.ae.{field}={n} must be a power of two')
  return k


def space_to_depth(x: jax.Array, f: int) -> jax.Array:
  """[B, T, H, W, C] -> [B, T, H / f, W / f, f * f * C]: each f x f block of pixels becomes one position."""
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h // f, f, w // f, f, c).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h // f, w // f, f * f * c)


def depth_to_space(x: jax.Array, f: int) -> jax.Array:
  """Inverse of `space_to_depth`: [B, T, H, W, f * f * C] -> [B, T, H * f, W * f, C]."""
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, f, f, c // (f * f)).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h * f, w * f, c // (f * f))


class PatchVideoEncoder(nnx.Module):
  """video_stem='patch': [B, T, H, W, 3] -> [B, T / td, H / sd, W / sd, C]: each sd x sd pixel block projected to
  C = width * sd / 2 channels (the conv stem's last width), one per-frame ResBlock at the latent resolution, then
  stride-2 temporal convs. No layer runs at the full or an intermediate resolution, where the conv stem spends most
  of its step on CPU."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    nt = _log2(ae.video_temporal_down, 'video_temporal_down')
    self.factor = ae.video_spatial_down
    c = self.out_channels = ae.width * 2 ** max(_log2(ae.video_spatial_down, 'video_spatial_down') - 1, 0)
    self.proj = layers.Dense(3 * self.factor ** 2, c, (None, 'embed'), rngs=rngs, **kw)
    self.res = conv.ResBlock(c, (1, 3, 3), rngs=rngs, **kw)
    self.temporal = nnx.List([conv.Conv(c, c, (3, 1, 1), (2, 1, 1), rngs=rngs, **kw) for _ in range(nt)])

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.res(self.proj(space_to_depth(x, self.factor)))
    for t in self.temporal:
      x = t(jax.nn.silu(x))
    return x


class PatchVideoDecoder(nnx.Module):
  """video_stem='patch': [B, T_l, H_l, W_l, C] -> [B, T, H, W, 3], the mirror of PatchVideoEncoder (each latent
  position predicts its sd x sd pixel block)."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    nt = _log2(ae.video_temporal_down, 'video_temporal_down')
    self.factor = ae.video_spatial_down
    c = self.in_channels = ae.width * 2 ** max(_log2(ae.video_spatial_down, 'video_spatial_down') - 1, 0)
    self.temporal = nnx.List([conv.Conv(c, c, (3, 1, 1), rngs=rngs, **kw) for _ in range(nt)])
    self.res = conv.ResBlock(c, (1, 3, 3), rngs=rngs, **kw)
    self.out_norm = conv.GroupNorm(c, rngs=rngs)
    self.proj = layers.Dense(c, 3 * self.factor ** 2, ('embed', None), rngs=rngs, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    for t in self.temporal:
      x = t(conv.upsample(jax.nn.silu(x), (2, 1, 1)))
    return depth_to_space(self.proj(_final_norm(self.out_norm, self.res(x))), self.factor)


def video_encoder(ae, *, rngs: nnx.Rngs, **kw) -> nnx.Module:
  """The video encoder of model.ae.video_stem: 'conv' (stride-2 conv stages) | 'patch' (pixel blocks)."""
  return (PatchVideoEncoder if ae.video_stem == 'patch' else VideoEncoder)(ae, rngs=rngs, **kw)


def video_decoder(ae, *, rngs: nnx.Rngs, **kw) -> nnx.Module:
  return (PatchVideoDecoder if ae.video_stem == 'patch' else VideoDecoder)(ae, rngs=rngs, **kw)


class VideoEncoder(nnx.Module):
  """video_stem='conv': [B, T, H, W, 3] -> features [B, T / td, H / sd, W / sd, C]: per-frame stride-2 conv +
  ResBlock stages, then stride-2 temporal convs (factorized space / time)."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    ns, nt = _log2(ae.video_spatial_down, 'video_spatial_down'), _log2(ae.video_temporal_down, 'video_temporal_down')
    self.chans = tuple(ae.width * 2 ** i for i in range(max(ns, 1)))
    strides = [2] * ns or [1]
    self.down = nnx.List([conv.Conv(c_in, c, (1, 3, 3), (1, s, s), rngs=rngs, **kw)
                          for c_in, c, s in zip((3,) + self.chans, self.chans, strides)])
    self.res = nnx.List([conv.ResBlock(c, (1, 3, 3), rngs=rngs, **kw) for c in self.chans])
    self.temporal = nnx.List([conv.Conv(self.chans[-1], self.chans[-1], (3, 1, 1), (2, 1, 1), rngs=rngs, **kw)
                              for _ in range(nt)])
    self.out_channels = self.chans[-1]

  def __call__(self, x: jax.Array) -> jax.Array:
    for d, r in zip(self.down, self.res):
      x = r(d(x))
    for t in self.temporal:
      x = t(jax.nn.silu(x))
    return x


class VideoDecoder(nnx.Module):
  """Features [B, T_l, H_l, W_l, C] -> video [B, T, H, W, 3]: mirror of VideoEncoder with nearest upsampling."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    ns, nt = _log2(ae.video_spatial_down, 'video_spatial_down'), _log2(ae.video_temporal_down, 'video_temporal_down')
    self.chans = tuple(ae.width * 2 ** i for i in range(max(ns, 1)))
    self.up_s = 2 if ns else 1
    c = self.chans[-1]
    self.temporal = nnx.List([conv.Conv(c, c, (3, 1, 1), rngs=rngs, **kw) for _ in range(nt)])
    self.res = nnx.List([conv.ResBlock(ch, (1, 3, 3), rngs=rngs, **kw) for ch in self.chans])
    outs = (3,) + self.chans[:-1]
    self.up = nnx.List([conv.Conv(ch, o, (1, 3, 3), rngs=rngs, **kw) for ch, o in zip(self.chans, outs)])
    self.out_norm = conv.GroupNorm(self.chans[0], rngs=rngs)
    self.in_channels = c

  def __call__(self, x: jax.Array) -> jax.Array:
    for t in self.temporal:
      x = t(conv.upsample(jax.nn.silu(x), (2, 1, 1)))
    for i in reversed(range(len(self.chans))):
      x = self.res[i](x)
      if i == 0:  # Before the upsampling, which it commutes with (_final_norm).
        x = _final_norm(self.out_norm, x)
      x = self.up[i](conv.upsample(x, (1, self.up_s, self.up_s)))
    return x


def _final_norm(norm: conv.GroupNorm, x: jax.Array) -> jax.Array:
  """silu(norm(x)) of the last stage. Nearest upsampling repeats every value the same number of times, so the group
  statistics and hence silu(norm(upsample(x))) = upsample(silu(norm(x))): computed at the low resolution, it costs a
  quarter of the values at the output's."""
  return jax.nn.silu(norm(x))


def _audio_strides(ae) -> list:
  nt, nf = _log2(ae.audio_time_down, 'audio_time_down'), _log2(ae.audio_freq_down, 'audio_freq_down')
  return tuple((2 if i < nt else 1, 2 if i < nf else 1) for i in range(max(nt, nf, 1)))


class AudioEncoder(nnx.Module):
  """Mel [B, T_a, F, 1] -> features [B, T_a / ad, F / fd, C]: 2D stride-2 conv + ResBlock stages."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    strides = _audio_strides(ae)
    self.chans = tuple(ae.width * 2 ** i for i in range(len(strides)))
    self.down = nnx.List([conv.Conv(c_in, c, (3, 3), s, rngs=rngs, **kw)
                          for c_in, c, s in zip((1,) + self.chans, self.chans, strides)])
    self.res = nnx.List([conv.ResBlock(c, (3, 3), rngs=rngs, **kw) for c in self.chans])
    self.out_channels = self.chans[-1]

  def __call__(self, x: jax.Array) -> jax.Array:
    for d, r in zip(self.down, self.res):
      x = r(d(x))
    return x


class AudioDecoder(nnx.Module):
  """Features [B, T_al, F_l, C] -> mel [B, T_a, F, 1]: mirror of AudioEncoder with nearest upsampling."""

  def __init__(self, ae, *, rngs: nnx.Rngs, **kw):
    self.strides = _audio_strides(ae)
    self.chans = tuple(ae.width * 2 ** i for i in range(len(self.strides)))
    self.res = nnx.List([conv.ResBlock(c, (3, 3), rngs=rngs, **kw) for c in self.chans])
    outs = (1,) + self.chans[:-1]
    self.up = nnx.List([conv.Conv(c, o, (3, 3), rngs=rngs, **kw) for c, o in zip(self.chans, outs)])
    self.out_norm = conv.GroupNorm(self.chans[0], rngs=rngs)
    self.in_channels = self.chans[-1]

  def __call__(self, x: jax.Array) -> jax.Array:
    for i in reversed(range(len(self.chans))):
      x = self.res[i](x)
      if i == 0:
        x = _final_norm(self.out_norm, x)
      x = self.up[i](conv.upsample(x, self.strides[i]))
    return x


class WindowMixer(nnx.Module):
  """Pre-LN transformer over the tokens of one latent time step of BOTH modalities (shared weights).

  video [B, T_l, H_l, W_l, C], audio [B, T_al, F_l, C] -> same shapes. Each window holds the H_l * W_l video tokens
  of a latent frame and the (T_al / T_l) * F_l audio tokens of the same time span (ratio derived from the shapes).
  """

  def __init__(self, width: int, tokens_per_window: int, depth: int = 2, heads: int = 4, *, rngs: nnx.Rngs, **kw):
    self.heads = heads
    self.pos = layers.param(rngs, nnx.initializers.normal(0.02), (tokens_per_window, width), ('length', 'embed'),
                            kw.get('param_dtype', jnp.float32))
    hd = width // heads
    self.qkv = nnx.List([layers.Dense(width, (3, heads, hd), ('embed', None, 'heads', 'kv'), rngs=rngs, **kw)
                         for _ in range(depth)])
    self.out = nnx.List([layers.Dense((heads, hd), width, ('heads', 'kv', 'embed'), rngs=rngs, **kw)
                         for _ in range(depth)])
    self.mlp = nnx.List([layers.Mlp(width, 2 * width, rngs=rngs, **kw) for _ in range(depth)])

  def __call__(self, v: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
    b, tl, hl, wl, c = v.shape
    tal, fl = a.shape[1], a.shape[2]
    k = tal // tl
    x = jnp.concatenate([v.reshape(b * tl, hl * wl, c), a.reshape(b * tl, k * fl, c)], axis=1)
    x = x + self.pos[...].astype(x.dtype)
    for qkv, out, mlp in zip(self.qkv, self.out, self.mlp):
      q = qkv(layers.layer_norm(x))
      x = x + out(attn_lib.attention(q[:, :, 0], q[:, :, 1], q[:, :, 2], 'xla'))
      x = x + mlp(layers.layer_norm(x))
    nv = hl * wl
    return x[:, :nv].reshape(v.shape), x[:, nv:].reshape(b, tal, fl, c)


def _gaussian(stats: jax.Array) -> tuple[jax.Array, jax.Array]:
  mean, logvar = jnp.split(stats.astype(jnp.float32), 2, axis=-1)
  return mean, jnp.clip(logvar, -30.0, 20.0)


class IdentityAE(nnx.Module):
  """encoder='patch': the latent is the data itself (video [-1, 1], mel[..., None]); no parameters."""

  kind = 'patch'

  def posterior(self, video, mel) -> dict:
    return {'video': (video, None), 'audio': (mel[..., None], None)}

  def encode(self, video: jax.Array, mel: jax.Array) -> dict:
    return {'video': video, 'audio': mel[..., None]}

  def decode(self, latents: dict) -> tuple[jax.Array, jax.Array]:
    return latents['video'], latents['audio'][..., 0]


class SeparateAE(nnx.Module):
  """One convolutional VAE per modality (video: factorized space/time convs; audio: 2D convs over the mel)."""

  kind = 'separate_ae'

  def __init__(self, config, *, rngs: nnx.Rngs):
    ae = config.model.ae
    kw = dict(dtype=jnp.float32, param_dtype=layers.dtype_of(config.model.param_dtype))
    self.video_enc = video_encoder(ae, rngs=rngs, **kw)
    self.audio_enc = AudioEncoder(ae, rngs=rngs, **kw)
    self.video_dec = video_decoder(ae, rngs=rngs, **kw)
    self.audio_dec = AudioDecoder(ae, rngs=rngs, **kw)
    cv, ca = self.video_enc.out_channels, self.audio_enc.out_channels
    self.video_head = layers.Dense(cv, 2 * ae.video_channels, ('embed', None), rngs=rngs, **kw)
    self.audio_head = layers.Dense(ca, 2 * ae.audio_channels, ('embed', None), rngs=rngs, **kw)
    self.video_in = layers.Dense(ae.video_channels, self.video_dec.in_channels, (None, 'embed'), rngs=rngs, **kw)
    self.audio_in = layers.Dense(ae.audio_channels, self.audio_dec.in_channels, (None, 'embed'), rngs=rngs, **kw)

  def posterior(self, video: jax.Array, mel: jax.Array) -> dict:
    """{'video': (mean, logvar) [B, T_l, H_l, W_l, C_v], 'audio': (mean, logvar) [B, T_al, F_l, C_a]}."""
    hv = self.video_enc(video)
    ha = self.audio_enc(mel[..., None])
    return {'video': _gaussian(self.video_head(jax.nn.silu(hv))),
            'audio': _gaussian(self.audio_head(jax.nn.silu(ha)))}

  def encode(self, video: jax.Array, mel: jax.Array) -> dict:
    return {k: mean for k, (mean, _) in self.posterior(video, mel).items()}

  def decode(self, latents: dict) -> tuple[jax.Array, jax.Array]:
    video = self.video_dec(self.video_in(latents['video']))
    mel = self.audio_dec(self.audio_in(latents['audio']))
    return video.astype(jnp.float32), mel[..., 0].astype(jnp.float32)


class JointAE(nnx.Module):
  """One VAE over both modalities: modality stems, then shared window-mixing layers over video and audio tokens of
  the same latent time step (in the encoder and again in the decoder), then modality heads / decoders. Each
  latent therefore carries information about both streams in lockstep."""

  kind = 'joint_ae'

  def __init__(self, config, *, rngs: nnx.Rngs):
    ae = config.model.ae
    lay = config_lib.layout(_with_encoder(config, 'joint_ae'))
    tl, hl, wl, _ = lay.video_latent
    tal, fl, _ = lay.audio_latent
    if tal % tl:
      raise config_lib.ConfigError(f'model.ae: {tal} latent audio frames do not split into {tl} video latent frames')
    tokens_per_window = hl * wl + (tal // tl) * fl
    kw = dict(dtype=jnp.float32, param_dtype=layers.dtype_of(config.model.param_dtype))
    width = 2 * ae.width
    self.video_enc = video_encoder(ae, rngs=rngs, **kw)
    self.audio_enc = AudioEncoder(ae, rngs=rngs, **kw)
    self.video_dec = video_decoder(ae, rngs=rngs, **kw)
    self.audio_dec = AudioDecoder(ae, rngs=rngs, **kw)
    d = lambda i, o, n: layers.Dense(i, o, n, rngs=rngs, **kw)
    self.video_proj = d(self.video_enc.out_channels, width, (None, 'embed'))
    self.audio_proj = d(self.audio_enc.out_channels, width, (None, 'embed'))
    self.enc_mixer = WindowMixer(width, tokens_per_window, rngs=rngs, **kw)
    self.video_head = d(width, 2 * ae.video_channels, ('embed', None))
    self.audio_head = d(width, 2 * ae.audio_channels, ('embed', None))
    self.video_in = d(ae.video_channels, width, (None, 'embed'))
    self.audio_in = d(ae.audio_channels, width, (None, 'embed'))
    self.dec_mixer = WindowMixer(width, tokens_per_window, rngs=rngs, **kw)
    self.video_out = d(width, self.video_dec.in_channels, ('embed', None))
    self.audio_out = d(width, self.audio_dec.in_channels, ('embed', None))

  def posterior(self, video: jax.Array, mel: jax.Array) -> dict:
    hv = self.video_proj(self.video_enc(video))
    ha = self.audio_proj(self.audio_enc(mel[..., None]))
    hv, ha = self.enc_mixer(hv, ha)
    return {'video': _gaussian(self.video_head(hv)), 'audio': _gaussian(self.audio_head(ha))}

  def encode(self, video: jax.Array, mel: jax.Array) -> dict:
    return {k: mean for k, (mean, _) in self.posterior(video, mel).items()}

  def decode(self, latents: dict) -> tuple[jax.Array, jax.Array]:
    hv, ha = self.dec_mixer(self.video_in(latents['video']), self.audio_in(latents['audio']))
    video = self.video_dec(self.video_out(hv))
    mel = self.audio_dec(self.audio_out(ha))
    return video.astype(jnp.float32), mel[..., 0].astype(jnp.float32)


def _with_encoder(config, kind):
  c = config.copy_and_resolve_references()
  c.model.encoder = kind
  return c


def build_autoencoder(config, rngs: nnx.Rngs) -> nnx.Module:
  """The autoencoder of config.model.encoder ('patch' -> IdentityAE, no parameters)."""
  kind = config.model.encoder
  if kind == 'patch':
    return IdentityAE()
  if kind == 'separate_ae':
    return SeparateAE(config, rngs=rngs)
  if kind == 'joint_ae':
    return JointAE(config, rngs=rngs)
  raise ValueError(f'model.encoder={kind!r}')


def _as_model_video(video: jax.Array) -> jax.Array:
  """uint8 [0, 255] (host batch) or float [-1, 1] -> float32 [-1, 1]."""
  return frames.as_float(video)


def ae_loss(ae: nnx.Module, batch: dict, rng: jax.Array, kl_weight: float = 1e-4) -> tuple[jax.Array, dict]:
  """Stage-1 loss on a batch {'video': [B, T, H, W, 3], 'audio_mel': [B, T_a, n_mels]}.

  loss = MSE(video) + MSE(mel) + kl_weight * (KL_video + KL_audio), each a mean over elements; the posterior is
  sampled with `rng` (reparameterization). Metrics: loss_video, loss_audio, kl, psnr_video (dB, peak-to-peak 2),
  mel_l1 (mean |error| of the normalized mel).
  """
  if isinstance(ae, IdentityAE):
    raise ValueError('model.encoder=patch has no autoencoder to train')
  video, mel = _as_model_video(batch['video']), batch['audio_mel'].astype(jnp.float32)
  post = ae.posterior(video, mel)
  keys = dict(zip(post, jax.random.split(rng, len(post))))
  z = {k: m + jnp.exp(0.5 * lv) * jax.random.normal(keys[k], m.shape) for k, (m, lv) in post.items()}
  kl = sum(0.5 * jnp.mean(jnp.square(m) + jnp.exp(lv) - 1.0 - lv) for m, lv in post.values())
  video_hat, mel_hat = ae.decode(z)
  mse_v = jnp.mean(jnp.square(video_hat - video))
  mse_a = jnp.mean(jnp.square(mel_hat - mel))
  loss = mse_v + mse_a + kl_weight * kl
  metrics = {'loss': loss, 'loss_video': mse_v, 'loss_audio': mse_a, 'kl': kl,
             'psnr_video': 10.0 * jnp.log10(4.0 / jnp.maximum(mse_v, 1e-10)),
             'mel_l1': jnp.mean(jnp.abs(mel_hat - mel))}
  return loss, metrics
