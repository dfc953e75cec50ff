"""Clip-level feature extractors for the distribution metrics (FD, KID) and the memorization check.

An extractor maps one clip (video uint8 [T, H, W, 3], audio float [S], box) to a feature vector [D]. The default
is the sync expert's window embeddings averaged over the clip ([2E]: video half, audio half); without an expert,
`raw_features` (thumbnails of the mean frame and of the motion, per-frame audio RMS) is a weight-free stand-in.
Neither is
comparable to published FVD / FAD, which use I3D / VGGish features.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np


FeatureFn = Callable[[np.ndarray, np.ndarray, tuple], np.ndarray]


def raw_features(fps: float, sample_rate: int, thumb: int = 8) -> FeatureFn:
  """Weight-free features [2 * thumb^2 + T]: thumbnail of the mean frame and of the mean absolute frame difference
  (grayscale, [0, 1]), and the RMS amplitude per video frame. Small D keeps Frechet distance well-posed."""
  def fn(video, audio, box):
    del box
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in video]).astype(np.float32)
    small = lambda img: cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA).ravel() / 255.0
    motion = np.abs(np.diff(gray, axis=0)).mean(0) if len(gray) > 1 else np.zeros_like(gray[0])
    a = np.asarray(audio, np.float64)
    edges = np.round(np.arange(len(video) + 1) * sample_rate / fps).astype(int)
    rms = [np.sqrt(np.mean(a[s:e] ** 2)) if e > s else 0.0 for s, e in zip(edges[:-1], np.minimum(edges[1:], len(a)))]
    return np.concatenate([small(gray.mean(0)), small(motion), np.asarray(rms)])
  return fn


def expert_features(scorer) -> FeatureFn:
  """Sync-expert features [2E]: mean video-window embedding and mean audio-window embedding of the clip."""
  def fn(video, audio, box):
    v, a = scorer.embeddings(video, audio, box)
    return np.concatenate([v.mean(0), a.mean(0)])
  return fn
