"""Scores one media file on its own clock: native frame rate, native sample rate, the whole file, one decode.

A file is decoded once (avdiff.data.av_io.Stream) and each frame is handed to every consumer as it arrives, so
memory does not grow with the length of the video (the audio track is kept whole; it is small):
  - weight-free signals at native resolution: the Farneback flow magnitude per frame (AV-Align's trajectory) and the
    change of the flow field per frame (the onset_motion offset estimator);
  - the face tracker (avdiff.eval.faces), when faces are wanted, which also yields the mouth-box motion energy;
  - frames resampled to the training config's protocol (data.fps, data.resolution) for the sync expert;
  - the first 16 frames at 224x224 for I3D / FVD (avdiff.eval.fvd).
After the stream: AV-Align over the whole file (equal to the reference algorithm run on the file), the offset with
its confidence (NaN + reason when undetermined), and the same per window of eval.window_seconds (`windows`).
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import librosa
import ml_collections
import numpy as np

from avdiff.data import av_io
from avdiff.eval import av_align as av_align_lib
from avdiff.eval import offsets
from avdiff.eval import scoring


# Grey frames kept for the mouth motion are this wide (about 21 MB per minute at 25 fps for 16:9 video).
_MOUTH_WIDTH = 160


class FileScan:
  """Everything gathered from one decode of a file; see `scan`."""

  def __init__(self, fps: float, sample_rate: int, info: dict):
    self.fps, self.sample_rate, self.info = fps, sample_rate, info
    self.flow_magnitude: list[float] = []  # Per native frame from frame 1 on (motion into that frame).
    self.flow_change: list[float] = [math.nan]  # Per native frame; NaN until two flows exist.
    self.audio: Optional[np.ndarray] = None  # float32 [S] mono at sample_rate, sample 0 at frame 0.
    self.protocol_frames: list[np.ndarray] = []  # uint8 [size, size, 3] at the protocol's fps.
    self.fvd_frames: list[np.ndarray] = []  # The first frames, for I3D.
    self.faces = None  # avdiff.eval.faces result, when faces were tracked.
    self.mouth_motion: Optional[np.ndarray] = None  # Motion energy in the mouth box per frame [T].
    self.height = self.width = 0

  @property
  def num_frames(self) -> int:
    return len(self.flow_change)

  def trajectory(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """AV-Align's flow trajectory of frames [start, stop): entry 0 repeats entry 1, as the reference computes it."""
    stop = self.num_frames if stop is None else stop
    flows = self.flow_magnitude[max(start, 1) - 1:stop - 1]
    return np.asarray(flows[:1] + flows, np.float64)


def scan(path: str, config: ml_collections.ConfigDict, *, protocol_frames: bool = False, fvd_frames: int = 0,
         face_tracker=None, mouth_box=()) -> FileScan:
  """Decodes `path` once at its native frame rate and sample rate and gathers what the metrics need.

  Args:
    path: media file with a video and an audio stream.
    config: for the sync expert's protocol (data.fps, data.resolution) when protocol_frames is set.
    protocol_frames: also keep frames resampled to data.fps and resized to data.resolution (small; the sync expert).
    fvd_frames: keep the first this many frames (native size) for I3D.
    face_tracker: optional avdiff.eval.faces.FaceTracker fed every native frame; its track (FileScan.faces) gives
      the clip's mouth box, in which the mouth motion energy per frame is measured (FileScan.mouth_motion).
    mouth_box: a known (y0, x0, y1, x1) mouth region in native pixels (instead of a face tracker).
  Raises:
    av_io.UnusableClipError: unreadable file, missing stream, fewer than 3 frames.
  """
  with av_io.Stream(path) as stream:
    frames = stream.frames()
    fps = None
    regrid = av_io.Regrid(config.data.fps) if protocol_frames else None
    size = int(config.data.resolution)
    out = None
    prev_gray = prev_flow = None
    grays = []  # Small grey frames for the mouth motion, only while faces are tracked (the box is known at the end).
    mouth = []  # Motion energy in a known mouth box, per frame.
    y0, x0, y1, x1 = (int(b) for b in mouth_box) if mouth_box else (0, 0, 0, 0)
    for time, image in frames:
      if out is None:
        fps = stream.nominal_fps
        out = FileScan(fps, stream.sample_rate, dict(stream.info))
        out.height, out.width = image.shape[:2]
      gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
      if prev_gray is not None:
        flow = offsets.flow(prev_gray, gray)
        out.flow_magnitude.append(float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean()))
        if prev_flow is not None:
          out.flow_change.append(offsets.flow_change(prev_flow, flow))
        else:
          out.flow_change.append(math.nan)
        prev_flow = flow
      if mouth_box:
        mouth.append(0.0 if prev_gray is None else
                     float(np.abs(gray[y0:y1, x0:x1].astype(np.float32) - prev_gray[y0:y1, x0:x1]).mean()))
      prev_gray = gray
      if regrid is not None:
        out.protocol_frames.extend(av_io.square_resize(f, size) for f in regrid.push(time, image))
      if len(out.fvd_frames) < fvd_frames:
        out.fvd_frames.append(image)
      if face_tracker is not None:
        face_tracker.update(image)
        grays.append(cv2.resize(gray, (_MOUTH_WIDTH, max(1, round(_MOUTH_WIDTH * gray.shape[0] / gray.shape[1]))),
                                interpolation=cv2.INTER_AREA))
    out.audio = stream.audio()
  if regrid is not None:
    out.protocol_frames.extend(av_io.square_resize(f, size) for f in regrid.finish())
  if out.num_frames < 3:
    raise av_io.UnusableClipError('too short', f'{out.num_frames} frames')
  # The scored span is what both streams cover.
  keep, num_samples = av_io.common_span(out.num_frames / fps, len(out.audio) / out.sample_rate, fps, out.sample_rate)
  if keep < 3:
    raise av_io.UnusableClipError('zero-length overlap', f'{len(out.audio) / out.sample_rate:.3f} s of audio')
  out.flow_change = out.flow_change[:keep]
  out.flow_magnitude = out.flow_magnitude[:keep - 1]
  out.audio = out.audio[:num_samples]
  if mouth_box:
    out.mouth_motion = np.asarray(mouth[:keep], np.float64)
  if face_tracker is not None:
    out.faces = face_tracker.result()
    if out.faces.found:
      box = out.faces.clip_mouth_box()
      scale = _MOUTH_WIDTH / out.width
      y0, x0 = (int(math.floor(b * scale)) for b in box[:2])
      y1, x1 = (max(int(math.ceil(b * scale)), lo + 1) for b, lo in zip(box[2:], (y0, x0)))
      g = np.stack(grays[:keep]).astype(np.float32)[:, y0:y1, x0:x1]
      out.mouth_motion = np.concatenate([[0.0], np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))])
  return out


def _offset(change: np.ndarray, audio: np.ndarray, mouth_motion: Optional[np.ndarray], fps: float,
            sample_rate: int, max_offset: int) -> offsets.OffsetEstimate:
  if mouth_motion is not None:
    signals = offsets.envelope_motion_signals(mouth_motion, audio, fps, sample_rate)
    return offsets.estimate_offset(*signals, max_offset, offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE)
  return offsets.estimate_offset(change, offsets.onset_events(audio, sample_rate, fps), max_offset,
                                 offsets.ONSET_MOTION_MIN_CONFIDENCE)


def windows(num_frames: int, fps: float, window_seconds: float) -> list[tuple[int, int]]:
  """[start, stop) frame ranges of consecutive windows; a last partial window shorter than half is merged."""
  size = max(3, int(round(window_seconds * fps)))
  bounds = list(range(0, num_frames, size)) + [num_frames]
  if len(bounds) > 2 and bounds[-1] - bounds[-2] < size / 2:
    del bounds[-2]
  return list(zip(bounds[:-1], bounds[1:]))


def score_scan(s: FileScan, config: ml_collections.ConfigDict, expert=None) -> dict:
  """Metrics of one scanned file: whole-file values, then per-window values under `windows`."""
  ev = config.eval
  fps, sr, k = s.fps, s.sample_rate, int(ev.max_offset_frames)
  audio = s.audio
  if not np.any(np.abs(audio) > 1e-6):
    raise scoring.UnscorableClip('silent audio')
  out = {'fps': fps, 'sample_rate': sr, 'num_frames': s.num_frames, 'seconds': s.num_frames / fps,
         'width': s.width, 'height': s.height}
  out.update(av_align_lib.from_trajectory(s.trajectory(), audio, fps, sr, ev.av_align_variant).as_dict())
  change = np.asarray(s.flow_change, np.float64)
  est = _offset(change, audio, s.mouth_motion, fps, sr, k)
  out.update(est.as_dict())
  out['abs_offset_frames'] = abs(est.offset_frames)
  if s.faces is not None:
    out['face_found'] = bool(s.faces.found)
    out['face_reason'] = s.faces.reason
    if s.faces.found:
      out['mouth_box'] = list(s.faces.clip_mouth_box())
      out['face_box'] = list(s.faces.clip_face_box())
  per_window = []
  for a, b in windows(s.num_frames, fps, float(ev.window_seconds)):
    seg = audio[int(round(a * sr / fps)):int(round(b * sr / fps))]
    w = {'start_s': a / fps, 'stop_s': b / fps}
    if np.any(np.abs(seg) > 1e-6):
      w.update(av_align_lib.from_trajectory(s.trajectory(a, b), seg, fps, sr, ev.av_align_variant).as_dict())
      mouth = None if s.mouth_motion is None else s.mouth_motion[a:b]
      w.update(_offset(change[a:b], seg, mouth, fps, sr, k).as_dict())
    per_window.append(w)
  if expert is not None:
    out.update(expert_windows(s, config, expert))
  out['windows'] = per_window
  return out


def expert_windows(s: FileScan, config: ml_collections.ConfigDict, expert) -> dict:
  """Sync-expert LSE-C / LSE-D / offset on the training protocol, averaged over windows of data.clip_seconds."""
  d = config.data
  frames = np.stack(s.protocol_frames)
  audio = librosa.resample(s.audio, orig_sr=s.sample_rate, target_sr=d.sample_rate) if s.sample_rate != \
      d.sample_rate else s.audio
  size = int(d.resolution)
  sync_box = tuple(config.eval.crop_box) or (s.faces.clip_mouth_box() if s.faces is not None and s.faces.found
                                               else ())
  box = av_io.box_in_square(sync_box, s.height, s.width, size) if sync_box else (0, 0, size, size)
  n = max(int(round(d.clip_seconds * d.fps)), config.eval.sync_window_frames + 1)
  results = []
  for start in range(0, len(frames) - n + 1, n):
    seg = audio[int(round(start * d.sample_rate / d.fps)):int(round((start + n) * d.sample_rate / d.fps))]
    results.append(expert(frames[start:start + n], seg, box))
  if not results:
    return {'expert_reason': f'shorter than one expert window ({n} frames at {d.fps} fps)'}
  offs = [r.offset_frames for r in results]
  return {'lse_c': float(np.mean([r.lse_c for r in results])), 'lse_d': float(np.mean([r.lse_d for r in results])),
          'expert_offset_frames': float(np.median(offs)), 'expert_windows': len(results)}
