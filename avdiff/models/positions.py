"""Rotary position embeddings over (time, axis 1, axis 2) token coordinates, and their application to q / k.

The rotary channel pairs of a head are split into three groups: half for time (shared by video and audio, so tokens
at the same moment rotate identically), a quarter each for the two spatial axes (video: height, width; audio:
frequency band, offset past the video grid; see `tokens.token_layout`). 'rope_separate' uses one 1D axis for all.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp


def axis_split(head_dim: int, separate: bool) -> tuple[int, int, int]:
  """Rotary channel pairs per coordinate axis (time, axis 1, axis 2)."""
  pairs = head_dim // 2
  if separate:
    return pairs, 0, 0
  pt = pairs // 2
  p1 = (pairs - pt) // 2
  return pt, p1, pairs - pt - p1


def rope_angles(pos: np.ndarray, head_dim: int, theta: float, separate: bool = False) -> np.ndarray:
  """Rotation angles [N, head_dim / 2] (radians) for coordinates pos [N, 3] (time, axis 1, axis 2)."""
  cols = []
  for axis, n in enumerate(axis_split(head_dim, separate)):
    if n == 0:
      continue
    freqs = theta ** (-np.arange(n, dtype=np.float64) / n)
    cols.append(pos[:, axis:axis + 1].astype(np.float64) * freqs[None])
  return np.concatenate(cols, axis=-1).astype(np.float32)


def sincos_embedding(pos: np.ndarray, width: int, separate: bool = False, theta: float = 10000.0) -> np.ndarray:
  """Fixed absolute position embedding [N, width] (DiT's sin-cos table, here over 3 axes), from pos [N, 3].

  Channels are split over (time, axis 1, axis 2) as the rotary pairs are (`axis_split`); each axis gets sin and cos
  of pos * theta^(-k / n). Values lie in [-1, 1] (RMS ~0.7), the scale of an embedded patch, so a token in pure
  noise still knows where it is: rotary positions carry only relative offsets.
  """
  cols = []
  for axis, n in enumerate(axis_split(width, separate)):
    if n == 0:
      continue
    freqs = theta ** (-np.arange(n, dtype=np.float64) / n)
    ang = pos[:, axis:axis + 1].astype(np.float64) * freqs[None]
    cols += [np.sin(ang), np.cos(ang)]
  return np.concatenate(cols, axis=-1).astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates x [B, N, H, Dh] by angles with cos/sin [N, Dh/2] (pairs are (i, i + Dh/2), 'rotate half' layout)."""
  half = x.shape[-1] // 2
  x1, x2 = x[..., :half], x[..., half:]
  c = cos[None, :, None, :].astype(x.dtype)
  s = sin[None, :, None, :].astype(x.dtype)
  return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)
