"""One weight-free audio-video offset estimator that reports a number only when it is sure of it.

`estimate_offset(video, audio, max_offset, min_confidence)` correlates a video signal per frame with an audio signal
at lags -K..K and decides. Two kinds of audio signal:

  per frame      an audio signal float [T] on the video's clock (whole-frame lags, stats.lagged_correlations). The
                 mouth_envelope method: motion energy in the mouth box vs the change of the audio RMS amplitude per
                 frame (`envelope_motion_signals`), for talking heads whose mouth region is known (given or detected).
  Onsets         audio onsets (`onset_events`), the onset_motion method for general content (impacts, bounces,
                 footsteps, music with visible beats). Video signal: the change of the optical-flow field between
                 consecutive frame pairs, c[t] = mean_px ||F_t - F_{t-1}|| with F_t the Farneback flow from frame t-1
                 to t (pixels/frame). A motion that stops, starts or reverses at time tau splits its change between
                 frames tau*fps + 1 and its neighbour in proportion to where tau falls between them, so every audio
                 onset (librosa onset detection on a 2 ms hop, weighted by its onset strength) is spread onto the
                 video frame grid with that same linear ("tent") kernel. The normalized cross-correlation (of square
                 roots, the flow change less its 9-frame running median) is evaluated at lags -K..K in quarter-frame
                 steps; the offset is the nearest whole frame to the best lag. Modelling where an event falls between
                 frames is what makes in-sync clips come out at 0 rather than at -1 or +1.

Confidence is the Pearson correlation at the best lag. Below min_confidence (the method's calibrated threshold, or
None for no floor), or with the peak at the edge of the search range, or with too few events, the estimate is
undetermined: offset NaN and a reason. Thresholds come from `benchmarks/calibrate_offsets.py` (true pairs at known
shifts vs audio from another clip), whose figures are in benchmarks/README.md.

Sign convention (avdiff.eval.shift): +k = the audio lags the video by k frames.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import cv2
import librosa
import numpy as np
import scipy.ndimage

from avdiff.eval import stats

# Calibrated in benchmarks/calibrate_offsets.py (see benchmarks/README.md, "Offset estimators").
ONSET_MOTION_MIN_CONFIDENCE = 0.6
MOUTH_ENVELOPE_MIN_CONFIDENCE = 0.7
MIN_EVENTS = 2  # Audio onsets needed before a correlation means anything.
LAG_STEP_FRAMES = 0.25
ONSET_HOP_SECONDS = 0.002
_FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # The AV-Align reference's Farneback parameters.


@dataclasses.dataclass(frozen=True)
class OffsetEstimate:
  """One offset estimate. offset_frames is a whole number of frames, or NaN when undetermined."""
  offset_frames: float
  confidence: float  # Pearson correlation at the best lag (NaN when a signal is constant).
  lag_frames: float  # Best lag before rounding (sub-frame for onset_motion); NaN when no lag could be scored.
  method: str  # 'onset_motion' | 'mouth_envelope' | what the caller named its per-frame signals
  reason: str = ''  # Empty when determined; else why the estimator abstains.

  @property
  def determined(self) -> bool:
    return not self.reason

  def as_dict(self, prefix: str = 'offset') -> dict:
    return {f'{prefix}_frames': self.offset_frames, f'{prefix}_confidence': self.confidence,
            f'{prefix}_method': self.method, f'{prefix}_reason': self.reason}


@dataclasses.dataclass(frozen=True)
class Onsets:
  """Audio onsets placed on a video clock."""
  times: np.ndarray  # float [N], seconds from the time of frame 0.
  strengths: np.ndarray  # float [N], onset strength (librosa units).
  fps: float  # Frame rate (Hz) of the video signal they are correlated with.


def estimate_offset(video: np.ndarray, audio: Union[np.ndarray, Onsets], max_offset: int,
                    min_confidence: Optional[float], method: str = '') -> OffsetEstimate:
  """The offset of one clip from a video signal and an audio signal.

  Args:
    video: float [T], one value per video frame (frame t at t / fps s); NaN entries are ignored with Onsets.
    audio: float [T] on the same clock (whole-frame lags), or Onsets (quarter-frame lags, the onset_motion method).
    max_offset: search lags -max_offset..max_offset frames; a best lag at the edge is undetermined.
    min_confidence: correlation below which the offset is undetermined; None: no floor.
    method: the name written into the estimate; default 'onset_motion' for Onsets, else 'mouth_envelope'.
  """
  video = np.asarray(video, np.float64)
  if isinstance(audio, Onsets):
    method = method or 'onset_motion'
    lags, corr, reason = _onset_correlations(video, audio, max_offset)
  else:
    method = method or 'mouth_envelope'
    lags = np.arange(-max_offset, max_offset + 1, dtype=np.float64)
    corr, reason = stats.lagged_correlations(video, audio, max_offset), ''
  if reason or np.all(np.isnan(corr)):
    return OffsetEstimate(math.nan, math.nan, math.nan, method, reason or 'a signal is constant')
  best = int(np.nanargmax(corr))
  lag, r = float(lags[best]), float(corr[best])
  if abs(lag) > max_offset - 0.5:
    return OffsetEstimate(math.nan, r, lag, method,
                          f'best lag {lag:+.2f} at the edge of the search range +-{max_offset}')
  if min_confidence is not None and r < min_confidence:
    return OffsetEstimate(math.nan, r, lag, method, f'confidence {r:.2f} below {min_confidence:.2f}')
  return OffsetEstimate(float(round(lag)), r, lag, method)


# ----------------------------------------------------------------------------- onset_motion


def flow(prev_gray: np.ndarray, gray: np.ndarray) -> np.ndarray:
  """Farneback flow float [H, W, 2] (pixels/frame) between two uint8 grey frames [H, W], AV-Align's parameters."""
  return cv2.calcOpticalFlowFarneback(prev_gray, gray, None, *_FARNEBACK)


def flow_change(prev_flow: np.ndarray, next_flow: np.ndarray) -> float:
  """Mean per-pixel norm of the change between two consecutive flow fields [H, W, 2] (pixels/frame)."""
  d = next_flow - prev_flow
  return float(np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2).mean())


def flow_change_trajectory(video: np.ndarray) -> np.ndarray:
  """c[t] = flow_change(F_{t-1}, F_t) per frame, float [T] (NaN for t < 2), from RGB uint8 video [T, H, W, 3]."""
  gray = [cv2.cvtColor(np.ascontiguousarray(f, np.uint8), cv2.COLOR_RGB2GRAY) for f in np.asarray(video)]
  out = np.full(len(gray), np.nan)
  prev = None
  for t in range(1, len(gray)):
    f = flow(gray[t - 1], gray[t])
    if prev is not None:
      out[t] = flow_change(prev, f)
    prev = f
  return out


def onset_events(audio: np.ndarray, sample_rate: int, fps: float) -> Onsets:
  """Audio onsets of mono float [S] at sample_rate Hz (librosa, 2 ms hop), for a video signal at fps Hz."""
  y = np.asarray(audio, np.float32)
  hop = max(1, int(round(sample_rate * ONSET_HOP_SECONDS)))
  n_fft = 512 if sample_rate <= 16000 else 1024 if sample_rate <= 32000 else 2048  # ~32-43 ms windows.
  if len(y) < n_fft:
    return Onsets(np.zeros(0), np.zeros(0), fps)
  env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop, n_fft=n_fft)
  frames = librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate, hop_length=hop)
  return Onsets(librosa.frames_to_time(frames, sr=sample_rate, hop_length=hop), env[frames].astype(np.float64), fps)


def events_on_frames(times: np.ndarray, strengths: np.ndarray, fps: float, num_frames: int,
                     lag_frames: float = 0.0) -> np.ndarray:
  """Onsets spread on the video frame grid as flow-change would see them, float [num_frames].

  An onset at tau seconds, taken as lagging its visual event by lag_frames, lands at frame position
  p = tau * fps - lag_frames + 1 (the flow F_t spans frames t-1..t, so its change peaks one frame after the event),
  split between frames floor(p) and floor(p) + 1 with weights 1 - frac(p) and frac(p).
  """
  pos = np.asarray(times, np.float64) * fps - lag_frames + 1.0
  lo = np.floor(pos).astype(int)
  frac = pos - lo
  out = np.zeros(num_frames)
  for idx, weight in ((lo, 1.0 - frac), (lo + 1, frac)):
    ok = (idx >= 0) & (idx < num_frames)
    np.add.at(out, idx[ok], (strengths * weight)[ok])
  return out


def _onset_correlations(change: np.ndarray, onsets: Onsets, max_offset: int) -> tuple[np.ndarray, np.ndarray, str]:
  """(lags [L] in quarter frames over -max_offset..max_offset, correlation per lag [L], reason not to decide or '')
  of a flow-change trajectory float [T] (NaN entries ignored) with audio onsets."""
  valid = np.isfinite(change)
  lags = np.arange(-max_offset, max_offset + LAG_STEP_FRAMES / 2, LAG_STEP_FRAMES)
  corr = np.full(len(lags), np.nan)
  if len(onsets.times) < MIN_EVENTS:
    return lags, corr, f'{len(onsets.times)} audio onsets (< {MIN_EVENTS})'
  if valid.sum() < 3 or np.nanstd(change) == 0:
    return lags, corr, 'no visible motion'
  # Steady motion (a drift, a pan) adds a slowly varying floor to the flow change: keep what rises above a 9-frame
  # running median. Square roots of both signals keep one loud event from dominating the correlation.
  video = change[valid]
  video = np.sqrt(np.clip(video - scipy.ndimage.median_filter(video, 9, mode='nearest'), 0, None))
  corr = np.asarray([stats.pearson(video, np.sqrt(events_on_frames(onsets.times, onsets.strengths, onsets.fps,
                                                                    len(change), lag)[valid]))
                     for lag in lags])
  return lags, corr, ''


# ----------------------------------------------------------------------------- mouth_envelope


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
  """|change of RMS amplitude| per video frame, float [num_frames] (entry 0 = 0), from mono audio float [S].

  Linear amplitude, not log: zero-filled or silent stretches would otherwise dominate through the log floor.
  """
  return np.concatenate([[0.0], np.abs(np.diff(frame_rms(audio, num_frames, fps, sample_rate)))])


def envelope_motion_signals(motion: np.ndarray, audio: np.ndarray, fps: float,
                            sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
  """The mouth_envelope signals of one clip: (motion [T - 1], audio energy change [T - 1]), frames 1..T-1.

  Both describe the change from frame t-1 to t; frame 0 has no predecessor and is dropped from both.
  motion: motion energy per frame, float [T] (`motion_energy`, entry 0 unused); audio: mono float [S] at
  sample_rate Hz, starting with frame 0 at fps Hz.
  """
  motion = np.asarray(motion, np.float64)
  return motion[1:], audio_energy_change(audio, len(motion), fps, sample_rate)[1:]
