"""Envelope-motion correlation: weight-free sync offset from audio energy change vs visual motion energy.

Per video frame t (both signals describe the change from frame t-1 to t):
  motion[t] = mean |frame_t - frame_{t-1}| over the (optional) mouth box, grayscale,
  audio[t]  = |e_t - e_{t-1}| with e_t the RMS amplitude of the audio samples of frame t (linear, not log: zero-filled
              or silent stretches would otherwise dominate through the log floor).
The normalized cross-correlation (Pearson over the overlapping frames) is computed for every lag in -K..K; the
offset is the lag with the highest correlation (+k = audio lags video by k frames, see avdiff.eval.shift).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class EnvelopeMotionResult:
  offset_frames: int  # Argmax lag; +k = audio lags video by k frames.
  peak_correlation: float  # Pearson correlation at that lag, in [-1, 1] (NaN if a signal is constant).
  correlations: tuple  # Correlation per lag -K..K.

  def as_dict(self) -> dict:
    return {'envelope_offset_frames': self.offset_frames, 'envelope_peak_correlation': self.peak_correlation}


def motion_energy(video: np.ndarray, box=None) -> np.ndarray:
  """Mean absolute grayscale frame difference per frame, float [T] (entry 0 = 0), from uint8 [T, H, W, 3].

  box: optional (y0, x0, y1, x1) pixel box (e.g. the mouth region) restricting where motion is measured.
  """
  v = np.asarray(video, np.float32)
  if box is not None:
    y0, x0, y1, x1 = (int(b) for b in box)
    v = v[:, y0:y1, x0:x1]
  gray = v @ np.asarray([0.299, 0.587, 0.114], np.float32)
  diff = np.abs(np.diff(gray, axis=0)).mean(axis=(1, 2))
  return np.concatenate([[0.0], diff]).astype(np.float64)


def frame_rms(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
  """RMS amplitude of mono audio float [S] over each video frame [f / fps, (f + 1) / fps), float [num_frames]
  (0 past the end of the audio); any fps, not only divisors of the sample rate."""
  a = np.asarray(audio, np.float64)
  edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(int)
  return np.asarray([np.sqrt(np.mean(a[s:e] ** 2)) if e > s and s < len(a) else 0.0
                     for s, e in zip(edges[:-1], np.minimum(edges[1:], len(a)))])


def audio_energy_change(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
  """|change of RMS amplitude| per video frame, float [num_frames] (entry 0 = 0), from mono audio float [S]."""
  return np.concatenate([[0.0], np.abs(np.diff(frame_rms(audio, num_frames, fps, sample_rate)))])


def lagged_correlations(motion: np.ndarray, audio: np.ndarray, max_lag: int) -> np.ndarray:
  """Pearson correlation of motion[t] with audio[t + k] for k in -max_lag..max_lag, float [2K+1]."""
  out = []
  n = len(motion)
  for k in range(-max_lag, max_lag + 1):
    lo, hi = max(0, -k), min(n, n - k)
    m, a = motion[lo:hi], audio[lo + k:hi + k]
    if len(m) < 3 or m.std() == 0 or a.std() == 0:
      out.append(np.nan)
    else:
      out.append(float(np.corrcoef(m, a)[0, 1]))
  return np.asarray(out)


def envelope_motion(video: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, max_offset_frames: int,
                    box=None) -> EnvelopeMotionResult:
  """Offset and peak correlation of one clip: video uint8 [T, H, W, 3] at fps Hz, audio float [S] at sample_rate."""
  # The first frame has no predecessor: drop entry 0 from both signals.
  motion = motion_energy(video, box)[1:]
  audio_change = audio_energy_change(audio, len(video), fps, sample_rate)[1:]
  corr = lagged_correlations(motion, audio_change, max_offset_frames)
  if np.all(np.isnan(corr)):
    return EnvelopeMotionResult(0, float('nan'), tuple(corr.tolist()))
  best = int(np.nanargmax(corr))
  return EnvelopeMotionResult(best - max_offset_frames, float(corr[best]), tuple(corr.tolist()))
