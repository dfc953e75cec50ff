"""Static token layout of one clip: patch grids, token times on the shared clock, and the sequence order.

Everything here is numpy, computed once from the config through `avdiff.config_lib.layout`, so token rates are
derived (fps, sample rate, mel hop, compression and patch factors), never typed in.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from avdiff import config_lib

VIDEO, AUDIO, TEXT = 0, 1, 2  # Modality ids of tokens.


@dataclasses.dataclass(frozen=True)
class Spec:
  """Hashable model-side summary of the config (static under jit; stored on modules)."""
  video_latent: tuple  # [T_l, H_l, W_l, C_v]
  audio_latent: tuple  # [T_al, F_l, C_a]
  video_patch: tuple  # (pt, ph, pw)
  audio_patch: tuple  # (pt, pf)
  video_token_seconds: float
  audio_token_seconds: float
  order: str  # 'blocks' | 'interleaved'
  positions: str  # 'rope_shared' | 'rope_separate' | 'learned'

  @property
  def video_grid(self) -> tuple:
    return tuple(s // p for s, p in zip(self.video_latent[:3], self.video_patch))

  @property
  def audio_grid(self) -> tuple:
    return tuple(s // p for s, p in zip(self.audio_latent[:2], self.audio_patch))

  @property
  def num_video(self) -> int:
    return int(np.prod(self.video_grid))

  @property
  def num_audio(self) -> int:
    return int(np.prod(self.audio_grid))

  @property
  def video_patch_dim(self) -> int:
    return int(np.prod(self.video_patch)) * self.video_latent[3]

  @property
  def audio_patch_dim(self) -> int:
    return int(np.prod(self.audio_patch)) * self.audio_latent[2]

  @property
  def audio_steps_per_video_step(self) -> int:
    """Audio token time steps per video token time step (an integer; `config_lib.validate` checks it)."""
    return int(round(self.video_token_seconds / self.audio_token_seconds))


def spec_from_config(config) -> Spec:
  lay = config_lib.layout(config)
  config_lib.audio_tokens_per_video_token_time(config)  # Raises unless both modalities land on one clock.
  m = config.model
  return Spec(tuple(lay.video_latent), tuple(lay.audio_latent), tuple(m.video_patch), tuple(m.audio_patch),
              float(lay.video_token_seconds), float(lay.audio_token_seconds), m.sequence_order, m.positions)


@dataclasses.dataclass(frozen=True)
class TokenLayout:
  """Per-token metadata. Video tokens are raster (t, h, w), audio tokens raster (t, f) before ordering.

  video_time [N_v], audio_time [N_a]: token centre times, seconds.
  video_pos [N_v, 3], audio_pos [N_a, 3]: rotary coordinates (time, axis 1, axis 2); see `positions`.
  perm [N]: sequence position -> index into concat(video tokens, audio tokens); inv_perm its inverse.
  modality [N]: VIDEO or AUDIO per sequence position.
  """
  video_time: np.ndarray
  audio_time: np.ndarray
  video_pos: np.ndarray
  audio_pos: np.ndarray
  perm: np.ndarray
  inv_perm: np.ndarray
  modality: np.ndarray

  @property
  def is_identity_order(self) -> bool:
    return bool(np.all(self.perm == np.arange(len(self.perm))))


@functools.lru_cache(maxsize=64)
def token_layout(spec: Spec) -> TokenLayout:
  """Token times, rotary coordinates and sequence order of `spec` (cached; pure numpy)."""
  gt, gh, gw = spec.video_grid
  at, af = spec.audio_grid
  vt = np.repeat(np.arange(gt), gh * gw)
  vh = np.tile(np.repeat(np.arange(gh), gw), gt)
  vw = np.tile(np.arange(gw), gt * gh)
  a_t = np.repeat(np.arange(at), af)
  a_f = np.tile(np.arange(af), at)
  video_time = (vt + 0.5) * spec.video_token_seconds
  audio_time = (a_t + 0.5) * spec.audio_token_seconds
  nv, na = len(vt), len(a_t)
  if spec.positions == 'rope_separate':
    # No shared clock: each modality is a 1D sequence, audio continuing after video.
    video_pos = np.stack([np.arange(nv), np.zeros(nv), np.zeros(nv)], -1)
    audio_pos = np.stack([nv + np.arange(na), np.zeros(na), np.zeros(na)], -1)
  else:
    # Shared clock: time in units of the finer token step, so equal times give equal temporal rotations. Audio
    # frequency bands sit past the video rows (axis 1) and columns (axis 2) so no audio position equals a video one.
    unit = min(spec.video_token_seconds, spec.audio_token_seconds)
    video_pos = np.stack([video_time / unit - 0.5, vh, vw], -1)
    audio_pos = np.stack([audio_time / unit - 0.5, gh + a_f, np.full(na, gw)], -1)
  if spec.order == 'blocks':
    perm = np.arange(nv + na)
  elif spec.order == 'interleaved':
    # Per video token time step: its h*w video tokens, then the audio tokens that fall in the same time span.
    r = spec.audio_steps_per_video_step
    parts = []
    for j in range(gt):
      parts.append(np.arange(j * gh * gw, (j + 1) * gh * gw))
      parts.append(nv + np.arange(j * r * af, (j + 1) * r * af))
    perm = np.concatenate(parts)
  else:
    raise ValueError(f'model.sequence_order={spec.order!r}')
  modality = np.where(perm < nv, VIDEO, AUDIO)
  return TokenLayout(video_time, audio_time, video_pos.astype(np.float32), audio_pos.astype(np.float32), perm,
                     np.argsort(perm), modality)
