"""The one conversion between stored frames and model frames: uint8 0..255 <-> float32 in [-1, 1].

Works on numpy and jax arrays alike (inside jit too), so the input pipeline, the autoencoder, the sampler, the
sync expert, FVD and mp4 writing all map pixels the same way.
"""

from __future__ import annotations

import numpy as np


def to_float(video):
  """Frames uint8 [..., 3] in 0..255 -> float32 in [-1, 1] (numpy in, numpy out; jax in, jax out)."""
  return video.astype(np.float32) / 127.5 - 1.0


def to_uint8(video) -> np.ndarray:
  """Frames float in [-1, 1] (numpy or jax; values outside are clipped) -> numpy uint8 0..255."""
  return np.clip(np.round((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def as_float(video):
  """uint8 frames (host batch) -> `to_float`; float frames (already in [-1, 1]) -> float32 unchanged."""
  return to_float(video) if video.dtype == np.uint8 else video.astype(np.float32)
