"""Time shifts and shuffles of audio against video: the controlled lower bounds of every sync metric.

Sign convention used across avdiff.eval: an offset of +k frames means the audio LAGS the video by k frames (the
sound of what is shown at frame t is heard at frame t + k). `shift_audio(audio, k, ...)` produces exactly that.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def shift_audio(audio: np.ndarray, frames: int, fps: float, sample_rate: int) -> np.ndarray:
  """Delays (frames > 0) or advances (frames < 0) audio float [..., S] by `frames` video frames, zero-filled.

  The length is kept; the shift is round(frames * sample_rate / fps) samples.
  """
  audio = np.asarray(audio)
  n = int(round(frames * sample_rate / fps))
  out = np.zeros_like(audio)
  s = audio.shape[-1]
  if abs(n) >= s:
    return out
  if n >= 0:
    out[..., n:] = audio[..., :s - n]
  else:
    out[..., :s + n] = audio[..., -n:]
  return out


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
  """A permutation of range(n) with no fixed point (n >= 2): audio shuffled between clips never stays put."""
  if n < 2:
    raise ValueError(f'shuffling audio between clips needs at least 2 clips, got {n}')
  while True:
    p = rng.permutation(n)
    if not np.any(p == np.arange(n)):
      return p


def shuffled_audio(clips: Sequence[dict], seed: int) -> list[np.ndarray]:
  """Clip i's partner audio float [S]: the 'audio' of clip perm[i], perm a derangement seeded by `seed` (n >= 2).

  Every audio-shuffle baseline pairs clips with this list, so one seed gives one pairing everywhere.
  """
  perm = derangement(len(clips), np.random.default_rng(seed))
  return [clips[j]['audio'] for j in perm]
