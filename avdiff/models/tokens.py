"""Per-token metadata of one clip: token times on the shared clock, rotary coordinates and the sequence order.

Everything here is numpy, computed once from the clip's `avdiff.config_lib.Layout` (built by
`config_lib.layout(config)`), so token rates are derived (fps, sample rate, mel hop, compression and patch
factors), never typed in.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from avdiff import config_lib

VIDEO, AUDIO, TEXT = 0, 1, 2  # Modality ids of tokens.


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
def token_layout(lay: config_lib.Layout) -> TokenLayout:
  """Token times, rotary coordinates and sequence order of the clip layout `lay` (cached; pure numpy)."""
  gt, gh, gw = lay.video_grid
  at, af = lay.audio_grid
  vt = np.repeat(np.arange(gt), gh * gw)
  vh = np.tile(np.repeat(np.arange(gh), gw), gt)
  vw = np.tile(np.arange(gw), gt * gh)
  a_t = np.repeat(np.arange(at), af)
  a_f = np.tile(np.arange(af), at)
  video_time = (vt + 0.5) * lay.video_token_seconds
  audio_time = (a_t + 0.5) * lay.audio_token_seconds
  nv, na = len(vt), len(a_t)
  if lay.positions == 'rope_separate':
    # No shared clock: each modality is a 1D sequence, audio continuing after video.
    video_pos = np.stack([np.arange(nv), np.zeros(nv), np.zeros(nv)], -1)
    audio_pos = np.stack([nv + np.arange(na), np.zeros(na), np.zeros(na)], -1)
  else:
    # Shared clock: time in units of the finer token step, so equal times give equal temporal rotations. Audio
    # frequency bands sit past the video rows (axis 1) and columns (axis 2) so no audio position equals a video one.
    unit = min(lay.video_token_seconds, lay.audio_token_seconds)
    video_pos = np.stack([video_time / unit - 0.5, vh, vw], -1)
    audio_pos = np.stack([audio_time / unit - 0.5, gh + a_f, np.full(na, gw)], -1)
  if lay.order == 'blocks':
    perm = np.arange(nv + na)
  elif lay.order == 'interleaved':
    # Per video token time step: its h*w video tokens, then the audio tokens that fall in the same time span.
    r = lay.audio_steps_per_video_step
    parts = []
    for j in range(gt):
      parts.append(np.arange(j * gh * gw, (j + 1) * gh * gw))
      parts.append(nv + np.arange(j * r * af, (j + 1) * r * af))
    perm = np.concatenate(parts)
  else:
    raise ValueError(f'model.sequence_order={lay.order!r}')
  modality = np.where(perm < nv, VIDEO, AUDIO)
  return TokenLayout(video_time, audio_time, video_pos.astype(np.float32), audio_pos.astype(np.float32), perm,
                     np.argsort(perm), modality)
