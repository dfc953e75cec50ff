"""Short-time Fourier analysis on device (jnp, jittable, differentiable): framed STFT, its windowed overlap-add
inverse, and the normalized log-mel of `avdiff.data.audio.log_mel` recomputed from a waveform.

Framing. Frame k of a [.., S] waveform is centred on sample k * hop + offset and spans n_fft samples; samples
outside [0, S) are zeros (librosa's center=True with pad_mode='constant' is offset 0). The window is the periodic
Hann window librosa uses. `istft` is the least-squares inverse of `stft` for the same framing: every frame is
windowed again, the frames are overlap-added and divided by the summed squared windows, so istft(stft(x)) == x
wherever the windows cover the signal (they do on [0, S) whenever hop <= n_fft / 2).

The overlap-add needs no scatter: a frame padded to J = ceil(n_fft / hop) blocks of hop samples adds its block j to
output block k + j, so the whole sum is J shifted adds of [.., K, hop] arrays.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avdiff import config_lib
from avdiff.data import audio as audio_lib


@functools.lru_cache(maxsize=32)
def window(n_fft: int) -> np.ndarray:
  """float32 [n_fft] periodic Hann window (librosa.filters.get_window('hann', n_fft, fftbins=True))."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def num_frames(num_samples: int, hop: int, offset: int) -> int:
  """Frames whose centre k * hop + offset lies in [0, num_samples)."""
  return (num_samples - offset + hop - 1) // hop


def frames(wave: jax.Array, n_fft: int, hop: int, offset: int = 0, count: int | None = None) -> jax.Array:
  """[.., S] -> [.., K, n_fft]: frame k holds samples k * hop + offset - n_fft // 2 + [0, n_fft) (zeros outside).
  K = count, default `num_frames(S, hop, offset)`."""
  num = wave.shape[-1]
  count = num_frames(num, hop, offset) if count is None else count
  first = offset - n_fft // 2
  left = max(0, -first)
  right = max(0, (count - 1) * hop + first + n_fft - num)
  padded = jnp.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(left, right)])
  index = (np.arange(count)[:, None] * hop + first + left + np.arange(n_fft)[None, :]).astype(np.int32)
  return padded[..., index]


def stft(wave: jax.Array, n_fft: int, hop: int, offset: int = 0, count: int | None = None) -> jax.Array:
  """Complex STFT [.., K, n_fft // 2 + 1] of a float waveform [.., S] (Hann window, framing as `frames`)."""
  return jnp.fft.rfft(frames(wave, n_fft, hop, offset, count) * window(n_fft), axis=-1)


@functools.lru_cache(maxsize=32)
def _window_power(n_fft: int, hop: int, count: int) -> np.ndarray:
  """float32 [(count + J - 1) * hop]: the summed squared windows of `count` frames on the overlap-add grid."""
  blocks = math.ceil(n_fft / hop)
  w2 = np.zeros(blocks * hop, np.float32)
  w2[:n_fft] = window(n_fft)**2
  out = np.zeros((count + blocks - 1) * hop, np.float32)
  for k in range(count):
    out[k * hop:k * hop + blocks * hop] += w2
  return out


def overlap_add(segments: jax.Array, hop: int) -> jax.Array:
  """[.., K, N] -> [.., (K + J - 1) * hop] with segment k added at sample k * hop (J = ceil(N / hop))."""
  *lead, count, size = segments.shape
  blocks = math.ceil(size / hop)
  segments = jnp.pad(segments, [(0, 0)] * len(lead) + [(0, 0), (0, blocks * hop - size)])
  segments = segments.reshape(*lead, count, blocks, hop)
  out = 0.0
  for j in range(blocks):  # Block j of frame k lands in output block k + j.
    out = out + jnp.pad(segments[..., j, :], [(0, 0)] * len(lead) + [(j, blocks - 1 - j), (0, 0)])
  return out.reshape(*lead, (count + blocks - 1) * hop)


def istft(spec: jax.Array, n_fft: int, hop: int, num_samples: int, offset: int = 0) -> jax.Array:
  """Waveform [.., S] (S = num_samples) from a complex STFT [.., K, n_fft // 2 + 1] framed as `stft` frames it:
  windowed overlap-add divided by the summed squared windows (the least-squares inverse; exact for a consistent
  spectrogram). The squared windows must not vanish on [0, S): hop <= n_fft / 2."""
  count = spec.shape[-2]
  first = offset - n_fft // 2  # Sample of frame 0's first value; the overlap-add grid starts there.
  if first > 0 or (count - 1) * hop + first + n_fft < num_samples:
    raise ValueError(f'{count} frames of {n_fft} samples, hop {hop}, offset {offset} do not cover {num_samples} '
                     'samples')
  segments = jnp.fft.irfft(spec, n=n_fft, axis=-1) * window(n_fft)
  summed = overlap_add(segments, hop)[..., -first:-first + num_samples]
  power = _window_power(n_fft, hop, count)[-first:-first + num_samples]
  return summed / np.maximum(power, 1e-8)


def log_mel(wave: jax.Array, data_cfg: ml_collections.ConfigDict) -> jax.Array:
  """Normalized log-mel [.., T_a, n_mels] of a waveform [.., S] (S = T_a * mel hop) at data_cfg.sample_rate, as
  `avdiff.data.audio.log_mel` computes it (frame i centred on sample (i + 1/2) * hop; dB floor -> -1, 0 dB -> 1)."""
  hop = config_lib.mel_hop(data_cfg)
  n_fft = int(data_cfg.n_fft)
  # The data's analysis starts at sample hop / 2 and reads zeros before it: so does this one (frame 0 agrees).
  wave = wave * (np.arange(wave.shape[-1]) >= hop // 2)
  spec = stft(wave, n_fft, hop, hop // 2, wave.shape[-1] // hop)
  power = jnp.square(jnp.abs(spec) / audio_lib.magnitude_scale(n_fft))
  mel = power @ audio_lib.mel_basis(data_cfg).T
  db = 10.0 * jnp.log10(jnp.maximum(mel, 1e-12))
  floor = float(data_cfg.mel_db_floor)
  return jnp.clip((db - floor / 2) / (-floor / 2), -1.0, 1.0)
