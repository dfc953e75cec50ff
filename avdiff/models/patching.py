"""Patchify / unpatchify of video and audio latents; exact inverses of each other (pure reshapes/transposes)."""

from __future__ import annotations

import jax


def patchify_video(x: jax.Array, patch: tuple) -> jax.Array:
  """[B, T, H, W, C] -> [B, (T/pt)(H/ph)(W/pw), pt*ph*pw*C], tokens in raster (t, h, w) order."""
  b, t, h, w, c = x.shape
  pt, ph, pw = patch
  x = x.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw * c)


def unpatchify_video(tokens: jax.Array, patch: tuple, latent_shape: tuple) -> jax.Array:
  """Inverse of `patchify_video`: [B, N_v, pt*ph*pw*C] -> [B, T, H, W, C] with latent_shape = (T, H, W, C)."""
  t, h, w, c = latent_shape
  pt, ph, pw = patch
  b = tokens.shape[0]
  x = tokens.reshape(b, t // pt, h // ph, w // pw, pt, ph, pw, c)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t, h, w, c)


def patchify_audio(x: jax.Array, patch: tuple) -> jax.Array:
  """[B, T_a, F, C] -> [B, (T_a/pt)(F/pf), pt*pf*C], tokens in raster (t, f) order."""
  b, t, f, c = x.shape
  pt, pf = patch
  x = x.reshape(b, t // pt, pt, f // pf, pf, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (t // pt) * (f // pf), pt * pf * c)


def unpatchify_audio(tokens: jax.Array, patch: tuple, latent_shape: tuple) -> jax.Array:
  """Inverse of `patchify_audio`: [B, N_a, pt*pf*C] -> [B, T_a, F, C] with latent_shape = (T_a, F, C)."""
  t, f, c = latent_shape
  pt, pf = patch
  b = tokens.shape[0]
  x = tokens.reshape(b, t // pt, f // pf, pt, pf, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, t, f, c)
