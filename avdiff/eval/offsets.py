"""Weight-free audio-video offset estimators that report a number only when they are sure of it.

Two estimators, one decision rule:

  onset_motion   general content (impacts, bounces, footsteps, music with visible beats). Video signal: the change of
                 the optical-flow field between consecutive frame pairs, c[t] = mean_px ||F_t - F_{t-1}|| with F_t the
                 Farneback flow from frame t-1 to t (pixels/frame). A motion that stops, starts or reverses at time
                 tau splits its change between frames tau*fps + 1 and its neighbour in proportion to where tau falls
                 between them, so every audio onset (librosa onset detection on a 2 ms hop, weighted by its onset
                 strength) is spread onto the video frame grid with that same linear ("tent") kernel. The normalized
                 cross-correlation (of square roots, the flow change less its 9-frame running median) is
                 evaluated at lags -K..K in quarter-frame steps; the offset is the nearest whole
                 frame to the best lag. Modelling where an event falls between frames is what makes in-sync clips
                 come out at 0 rather than at -1 or +1.
  mouth_envelope talking heads, where the mouth region is known (given or detected): motion energy in the mouth box vs
                 the change of the audio RMS envelope per frame (avdiff.eval.envelope_motion), whole-frame lags.

Confidence is the Pearson correlation at the best lag. Below the estimator's calibrated threshold, or with the peak
at the edge of the search range, or with too few events, the estimate is undetermined: offset NaN and a reason.
Thresholds come from `benchmarks/calibrate_offsets.py` (true pairs at known shifts vs audio from another clip), whose
figures are in benchmarks/README.md.

Sign convention (avdiff.eval.shift): +k = the audio lags the video by k frames.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import librosa
import numpy as np
import scipy.ndimage

from avdiff.eval import envelope_motion

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
  method: str  # 'onset_motion' | 'mouth_envelope'
  reason: str = ''  # Empty when determined; else why the estimator abstains.

  @property
  def determined(self) -> bool:
    return not self.reason

  def as_dict(self, prefix: str = 'offset') -> dict:
    return {f'{prefix}_frames': self.offset_frames, f'{prefix}_confidence': self.confidence,
            f'{prefix}_method': self.method, f'{prefix}_reason': self.reason}


def _decide(lags: np.ndarray, corr: np.ndarray, max_offset: int, min_confidence: float, method: str,
            pre_reason: str = '') -> OffsetEstimate:
  if pre_reason or np.all(np.isnan(corr)):
    return OffsetEstimate(math.nan, math.nan, math.nan, method, pre_reason or 'a signal is constant')
  best = int(np.nanargmax(corr))
  lag, r = float(lags[best]), float(corr[best])
  if abs(lag) > max_offset - 0.5:
    return OffsetEstimate(math.nan, r, lag, method,
                          f'best lag {lag:+.2f} at the edge of the search range +-{max_offset}')
  if r < min_confidence:
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


def onset_events(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
  """Audio onsets of mono float [S]: times (s) [N] and onset strengths [N] (librosa, 2 ms hop)."""
  y = np.asarray(audio, np.float32)
  hop = max(1, int(round(sample_rate * ONSET_HOP_SECONDS)))
  n_fft = 512 if sample_rate <= 16000 else 1024 if sample_rate <= 32000 else 2048  # ~32-43 ms windows.
  if len(y) < n_fft:
    return np.zeros(0), np.zeros(0)
  env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop, n_fft=n_fft)
  frames = librosa.onset.onset_detect(onset_envelope=env, sr=sample_rate, hop_length=hop)
  return librosa.frames_to_time(frames, sr=sample_rate, hop_length=hop), env[frames].astype(np.float64)


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


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  if len(x) < 3 or x.std() == 0 or y.std() == 0:
    return math.nan
  return float(np.corrcoef(x, y)[0, 1])


def onset_motion_offset(change: np.ndarray, times: np.ndarray, strengths: np.ndarray, fps: float, max_offset: int,
                        min_confidence: float = ONSET_MOTION_MIN_CONFIDENCE) -> OffsetEstimate:
  """Offset from a flow-change trajectory [T] (NaN entries ignored) and audio onsets (times relative to frame 0).

  Args:
    change: flow change per frame, float [T] (flow_change_trajectory), frame t at t / fps seconds.
    times, strengths: audio onsets (onset_events), seconds from the time of frame 0.
    fps: video frame rate (Hz).
    max_offset: search lags -max_offset..max_offset frames.
    min_confidence: correlation below which the offset is undetermined.
  """
  change = np.asarray(change, np.float64)
  valid = np.isfinite(change)
  lags = np.arange(-max_offset, max_offset + LAG_STEP_FRAMES / 2, LAG_STEP_FRAMES)
  reason = ''
  if len(times) < MIN_EVENTS:
    reason = f'{len(times)} audio onsets (< {MIN_EVENTS})'
  elif valid.sum() < 3 or np.nanstd(change) == 0:
    reason = 'no visible motion'
  corr = np.full(len(lags), np.nan)
  if not reason:
    # Steady motion (a drift, a pan) adds a slowly varying floor to the flow change: keep what rises above a
    # 9-frame running median. Square roots of both signals keep one loud event from dominating the correlation.
    video = change[valid]
    video = np.sqrt(np.clip(video - scipy.ndimage.median_filter(video, 9, mode='nearest'), 0, None))
    corr = np.asarray([_pearson(video, np.sqrt(events_on_frames(times, strengths, fps, len(change), lag)[valid]))
                       for lag in lags])
  return _decide(lags, corr, max_offset, min_confidence, 'onset_motion', reason)


def onset_motion_offset_clip(video: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, max_offset: int,
                             min_confidence: float = ONSET_MOTION_MIN_CONFIDENCE) -> OffsetEstimate:
  """onset_motion on one clip: RGB uint8 video [T, H, W, 3] at fps Hz, mono float audio [S] at sample_rate Hz."""
  times, strengths = onset_events(audio, sample_rate)
  return onset_motion_offset(flow_change_trajectory(video), times, strengths, fps, max_offset, min_confidence)


# ----------------------------------------------------------------------------- mouth_envelope


def mouth_envelope_offset(motion: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, max_offset: int,
                          min_confidence: float = MOUTH_ENVELOPE_MIN_CONFIDENCE) -> OffsetEstimate:
  """Offset from mouth-box motion energy [T] (envelope_motion.motion_energy) and mono audio float [S]."""
  motion = np.asarray(motion, np.float64)
  change = envelope_motion.audio_energy_change(audio, len(motion), fps, sample_rate)
  corr = envelope_motion.lagged_correlations(motion[1:], change[1:], max_offset)
  lags = np.arange(-max_offset, max_offset + 1, dtype=np.float64)
  return _decide(lags, corr, max_offset, min_confidence, 'mouth_envelope')
