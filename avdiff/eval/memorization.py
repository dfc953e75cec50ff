"""Memorization check: distance from each clip to its nearest training clip, generated vs held-out.

A model that copies training clips gives generated clips much smaller nearest-training distances than held-out
real clips have; `ratio` = median(generated) / median(held-out) well below 1 flags it.
"""

from __future__ import annotations

import numpy as np


def nearest_distances(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Euclidean distance [N] and index [N] of the nearest reference row for each query row (features [N, D], [M, D])."""
  q, r = np.asarray(queries, np.float64), np.asarray(reference, np.float64)
  d2 = (q ** 2).sum(1)[:, None] + (r ** 2).sum(1)[None] - 2 * q @ r.T
  idx = np.argmin(d2, axis=1)
  return np.sqrt(np.clip(d2[np.arange(len(q)), idx], 0, None)), idx


def memorization(generated: np.ndarray, held_out: np.ndarray, train: np.ndarray) -> dict:
  """Nearest-training-clip statistics of generated [N, D] vs held-out [M, D] features against train [K, D]."""
  dg, ig = nearest_distances(generated, train)
  dh, _ = nearest_distances(held_out, train)
  return {
      'nn_dist_generated_median': float(np.median(dg)),
      'nn_dist_held_out_median': float(np.median(dh)),
      'nn_dist_ratio': float(np.median(dg) / max(np.median(dh), 1e-12)),
      'nn_dist_generated': dg.tolist(),
      'nn_index_generated': ig.tolist(),
  }
