"""AV-Align (Yariv et al. 2024): overlap of audio onsets and optical-flow peaks, weight-free.

Audio peaks are librosa onsets (onset strength + onset detection, library defaults) on the waveform resampled to
22.05 kHz mono, as the reference loads audio with `librosa.load`. Video peaks are strict local maxima of the mean
Farneback optical-flow magnitude between consecutive grayscale frames. An audio onset matches a video peak when it
lies strictly within one frame period of it; score = matches / (|audio peaks| + |video peaks| - matches).

Two variants of the reference exist:
  'v1' (original release): every strict local maximum is a peak; an audio onset counts as matched if any video peak
      lies in its window (a video peak may be matched by several onsets).
  'v2' (later release): a video peak must also have a flow magnitude >= 0.1 (pixels per frame), and matching is
      one-to-one (each video peak is used at most once; an onset takes the nearest unused peak).
"""

from __future__ import annotations

import dataclasses

import cv2
import librosa
import numpy as np

VARIANTS = ('v1', 'v2')
REFERENCE_SAMPLE_RATE = 22050  # librosa.load default: the reference computes onsets at this rate.
V2_FLOW_FLOOR = 0.1  # Minimum mean flow magnitude (pixels/frame) of a video peak in 'v2'.


@dataclasses.dataclass(frozen=True)
class AVAlignResult:
  score: float  # In [0, 1]; NaN when there are no peaks at all.
  variant: str
  audio_peaks: tuple  # Onset times, seconds.
  video_peaks: tuple  # Flow-peak times, seconds.
  matches: int

  def as_dict(self) -> dict:
    return {'av_align': self.score, 'av_align_variant': self.variant, 'av_align_audio_peaks': len(self.audio_peaks),
            'av_align_video_peaks': len(self.video_peaks), 'av_align_matches': self.matches}


def audio_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
  """Onset times in seconds of a mono waveform float [S] at `sample_rate` Hz (librosa defaults at 22.05 kHz)."""
  y = np.asarray(audio, np.float32)
  if y.ndim != 1:
    raise ValueError(f'audio must be mono [S], got shape {y.shape}')
  if sample_rate != REFERENCE_SAMPLE_RATE:
    y = librosa.resample(y, orig_sr=sample_rate, target_sr=REFERENCE_SAMPLE_RATE)
  env = librosa.onset.onset_strength(y=y, sr=REFERENCE_SAMPLE_RATE)
  frames = librosa.onset.onset_detect(onset_envelope=env, sr=REFERENCE_SAMPLE_RATE)
  return librosa.frames_to_time(frames, sr=REFERENCE_SAMPLE_RATE)


def _mean_flow(prev_gray: np.ndarray, gray: np.ndarray) -> float:
  # Farneback parameters of the reference: pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2.
  flow = cv2.calcOpticalFlowFarneback(prev_gray, gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)
  return float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean())


def flow_trajectory(video: np.ndarray) -> np.ndarray:
  """Mean flow magnitude per frame, float [T] (pixels/frame), from RGB uint8 video [T, H, W, 3].

  As in the reference, entry 0 repeats the flow between frames 0 and 1, so entry i is the motion into frame i.
  """
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[0] < 2:
    raise ValueError(f'video must be [T>=2, H, W, 3], got shape {video.shape}')
  gray = [cv2.cvtColor(np.ascontiguousarray(f, np.uint8), cv2.COLOR_RGB2GRAY) for f in video]
  flows = [_mean_flow(gray[i - 1], gray[i]) for i in range(1, len(gray))]
  return np.asarray([flows[0]] + flows, np.float64)


def video_peaks(trajectory: np.ndarray, fps: float, floor: float = 0.0) -> np.ndarray:
  """Times in seconds of strict local maxima of `trajectory` [T] whose value is >= floor."""
  t = np.asarray(trajectory)
  idx = [i for i in range(1, len(t) - 1) if t[i - 1] < t[i] > t[i + 1] and t[i] >= floor]
  return np.asarray(idx, np.float64) / fps


def match_peaks(audio_times: np.ndarray, video_times: np.ndarray, fps: float, one_to_one: bool) -> int:
  """Audio onsets lying strictly within one frame period of a video peak (one-to-one: each peak used once)."""
  period = 1.0 / fps
  used = np.zeros(len(video_times), bool)
  matches = 0
  for a in audio_times:
    near = np.abs(np.asarray(video_times) - a) < period
    if one_to_one:
      near &= ~used
    if near.any():
      matches += 1
      if one_to_one:
        cand = np.flatnonzero(near)
        used[cand[np.argmin(np.abs(video_times[cand] - a))]] = True
  return matches


def av_align(video: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int,
             variant: str = 'v2') -> AVAlignResult:
  """AV-Align of one clip: video uint8 [T, H, W, 3] (RGB) at `fps` Hz, audio float [S] mono at `sample_rate` Hz."""
  if variant not in VARIANTS:
    raise ValueError(f'av_align variant {variant!r} is not one of {VARIANTS}')
  return from_trajectory(flow_trajectory(video), audio, fps, sample_rate, variant)


def from_trajectory(trajectory: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int,
                    variant: str = 'v2') -> AVAlignResult:
  """AV-Align from a flow trajectory float [T] (flow_trajectory, or gathered while streaming) and its audio [S]."""
  a = audio_onsets(audio, sample_rate)
  v = video_peaks(trajectory, fps, V2_FLOW_FLOOR if variant == 'v2' else 0.0)
  m = match_peaks(a, v, fps, one_to_one=variant == 'v2')
  denom = len(a) + len(v) - m
  score = m / denom if denom else float('nan')
  return AVAlignResult(float(score), variant, tuple(a.tolist()), tuple(v.tolist()), m)
