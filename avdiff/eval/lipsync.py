"""SyncNet / Wav2Lip lip-sync scoring protocol on per-window embeddings: AV offset, LSE-D, LSE-C.

For each video window t the audio window t + k is compared for every offset k in -K..K, the audio embeddings
zero-padded by K windows at both ends (as the reference pads its audio features); distances are averaged over
windows per offset. offset = argmin (+k: audio lags video by k frames; the reference script prints -k), LSE-D = the
minimum mean distance, LSE-C = median over offsets minus that minimum.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LipSyncResult:
  offset_frames: int
  lse_d: float  # Min over offsets of the mean distance (lower = better synced).
  lse_c: float  # Median minus min mean distance (higher = more confident sync).
  mean_distances: tuple  # Mean distance per offset -K..K.

  def as_dict(self) -> dict:
    return {'offset_frames': self.offset_frames, 'offset_confidence': self.lse_c, 'lse_c': self.lse_c,
            'lse_d': self.lse_d}


def offset_distances(video_emb: np.ndarray, audio_emb: np.ndarray, max_offset: int) -> np.ndarray:
  """Distances [N, 2K+1]: row t, column j = ||v_t - a_{t + j - K}||, audio embeddings zero-padded at both ends."""
  v, a = np.asarray(video_emb, np.float64), np.asarray(audio_emb, np.float64)
  n = min(len(v), len(a))
  v, a = v[:n], a[:n]
  k = max_offset
  padded = np.concatenate([np.zeros((k, a.shape[1])), a, np.zeros((k, a.shape[1]))])
  idx = np.arange(n)[:, None] + np.arange(2 * k + 1)[None]
  return np.linalg.norm(v[:, None, :] - padded[idx], axis=-1)


def score_embeddings(video_emb: np.ndarray, audio_emb: np.ndarray, max_offset: int) -> LipSyncResult:
  """SyncNet-protocol result from per-window video [N, E] and audio [N, E] embeddings of one clip."""
  mean = offset_distances(video_emb, audio_emb, max_offset).mean(axis=0)
  best = int(np.argmin(mean))
  return LipSyncResult(best - max_offset, float(mean[best]), float(np.median(mean) - mean[best]),
                       tuple(mean.tolist()))
