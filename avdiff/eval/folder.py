"""Folder evaluation: every video file of a folder, scored on its own clock or at the training protocol.

    result = folder.evaluate_folder(clips_dir, config, expert=None, syncnet_model=None)

config.eval.protocol 'native' scans each file once at its own frame rate, sample rate and size
(avdiff.eval.native); 'config' reads each file once at data.fps / data.sample_rate / data.resolution, the first
data.clip_seconds (avdiff.data.av_io.read_video), and scores it as a training clip (avdiff.eval.scoring). FVD
features come from the same decode. Public SyncNet (--syncnet) reads each scored file again on its own clock
(25 fps, 16 kHz). A file that cannot be scored is skipped with its reason, never fatal.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import cv2
import ml_collections
import numpy as np
import tqdm

from avdiff import config_lib
from avdiff import console
from avdiff.data import av_io
from avdiff.eval import conditions as conditions_lib
from avdiff.eval import faces
from avdiff.eval import fvd as fvd_lib
from avdiff.eval import lipsync
from avdiff.eval import native
from avdiff.eval import offsets
from avdiff.eval import scoring
from avdiff.eval import syncnet

PROTOCOLS = ('native', 'config')
FACES = ('auto', 'on', 'off')


def video_files(folder: str) -> tuple[list[str], list[str]]:
  """(video file names, other file names) of a folder, sorted; video files by av_io.VIDEO_EXTENSIONS."""
  names = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
  videos = [f for f in names if f.lower().endswith(av_io.VIDEO_EXTENSIONS)]
  return videos, [f for f in names if f not in videos]


def folder_protocol(config: ml_collections.ConfigDict, clips_dir: str, num_files: int, **extra) -> dict:
  """The protocol of a folder result: 'native' replaces the training clock with each file's own."""
  ev = config.eval
  p = conditions_lib.protocol(config, mode='folder', protocol=ev.protocol, clips_dir=os.path.abspath(clips_dir),
                              split='', dataset='', num_clips=num_files, **extra)
  if ev.protocol == 'native':
    p.update(fps='native', sample_rate='native', resolution='native (flow, AV-Align, offsets)',
             clip_seconds='whole file',
             window_seconds=ev.window_seconds, faces=ev.faces,
             offset_estimators={'onset_motion': {'min_confidence': offsets.ONSET_MOTION_MIN_CONFIDENCE},
                                'mouth_envelope': {'min_confidence': offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE}},
             sync_expert_protocol={'fps': config.data.fps, 'resolution': config.data.resolution,
                                   'sample_rate': config.data.sample_rate, 'window_seconds': config.data.clip_seconds})
  return p


def _track_faces(config: ml_collections.ConfigDict, lipsync_scorers: bool) -> bool:
  choice = config.eval.faces
  if choice not in FACES:
    raise config_lib.ConfigError(f'eval.faces={choice!r} is not one of {FACES}')
  return choice == 'on' or (choice == 'auto' and lipsync_scorers and not config.eval.crop_box)


def _score_native(path: str, config: ml_collections.ConfigDict, expert, track_faces: bool,
                  fvd_frames: int) -> tuple[dict, Optional[np.ndarray]]:
  """(metrics, first fvd_frames native frames or None) of one file on its own clock (one streamed decode)."""
  tracker = faces.FaceTracker() if track_faces else None
  scan = native.scan(path, config, protocol_frames=expert is not None, fvd_frames=fvd_frames, face_tracker=tracker,
                     mouth_box=tuple(config.eval.crop_box))
  if tracker is not None and not scan.faces.found:
    raise scoring.UnscorableClip(scan.faces.reason)
  return native.score_scan(scan, config, expert), np.stack(scan.fvd_frames) if scan.fvd_frames else None


def _score_config(path: str, config: ml_collections.ConfigDict, expert) -> tuple[dict, np.ndarray]:
  """(metrics, frames) of one file read at the training protocol, scored as a training clip."""
  d = config.data
  video, audio, _ = av_io.read_video(path, fps=d.fps, sample_rate=d.sample_rate, size=d.resolution,
                                     max_seconds=d.clip_seconds)
  return scoring.score_clip(video, audio, config, None, expert), video


def _score_files(paths: list[str], config: ml_collections.ConfigDict, expert, track_faces: bool, fvd_features):
  """(name, metrics | UnscorableClip, I3D features [400] or None) per file, one decode each."""
  for path in paths:
    name = os.path.basename(path)
    try:
      if config.eval.protocol == 'native':
        metrics, frames = _score_native(path, config, expert, track_faces,
                                        fvd_lib.NUM_FRAMES if fvd_features is not None else 0)
      else:
        metrics, frames = _score_config(path, config, expert)
      feats = None
      if fvd_features is not None:
        try:
          feats = fvd_features([frames])[0]
        except ValueError as e:  # Shorter than the FVD clip: scored, but left out of FVD.
          metrics['fvd_skip_reason'] = str(e)
      yield name, metrics, feats
    except av_io.UnusableClipError as e:
      yield name, scoring.UnscorableClip(f'unreadable: {e}' if e.reason == 'corrupt' else str(e)), None
    except scoring.UnscorableClip as e:
      yield name, e, None
    except Exception as e:  # pylint: disable=broad-except  (a broken file must not end a long evaluation)
      yield name, scoring.UnscorableClip(f'{type(e).__name__}: {e}'), None


def syncnet_metrics(path: str, model, face_box=()) -> dict:
  """Public-SyncNet LSE-C / LSE-D / offset of one file, read at 25 fps / 16 kHz (SyncNet's clock).

  face_box: (y0, x0, y1, x1) in the file's native pixels; () = the file is already a face crop.
  """
  video, audio, _ = av_io.read_video(path, fps=syncnet.FPS, sample_rate=syncnet.SAMPLE_RATE)
  if face_box:
    y0, x0, y1, x1 = face_box
    video = video[:, y0:y1, x0:x1]
  frames = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA)[..., ::-1] for f in video])
  v, a = syncnet.clip_embeddings(model, frames, audio)
  res = lipsync.score_embeddings(v, a, max_offset=15)
  return {'syncnet_offset_frames': res.offset_frames, 'syncnet_lse_c': res.lse_c, 'syncnet_lse_d': res.lse_d}


def reference_fvd_features(reference_dir: str, fvd_features) -> tuple[np.ndarray, dict]:
  """I3D features [N, 400] of the videos in reference_dir (first frames only are decoded), and skipped files."""
  feats, skipped = [], {}
  for name in video_files(reference_dir)[0]:
    try:
      with av_io.Stream(os.path.join(reference_dir, name)) as stream:
        frames = []
        for _, image in stream.frames():
          frames.append(image)
          if len(frames) == fvd_lib.NUM_FRAMES:
            break
      feats.append(fvd_features([np.stack(frames)])[0])
    except (av_io.UnusableClipError, ValueError) as e:
      skipped[name] = str(e)
  return np.asarray(feats), skipped


def folder_fvd(feats: dict, reference_dir: str, fvd_features) -> dict:
  """FVD of a folder's features (name -> [400]) against the videos of reference_dir, with the protocol."""
  ref, ref_skipped = reference_fvd_features(reference_dir, fvd_features)
  out = {'protocol': fvd_lib.PROTOCOL, 'reference_dir': os.path.abspath(reference_dir), 'num_clips': len(feats),
         'num_reference': len(ref), 'reference_skipped': ref_skipped}
  if len(feats) < 2 or len(ref) < 2:
    out['fvd'] = math.nan
    out['reason'] = f'FVD needs at least 2 clips per set ({len(feats)} scored, {len(ref)} reference)'
  else:
    out['fvd'] = fvd_lib.fvd(ref, np.stack(list(feats.values())))
  return out


def evaluate_folder(clips_dir: str, config: ml_collections.ConfigDict,
                    expert: Optional[scoring.ExpertScorer] = None, syncnet_model=None) -> dict:
  """Scores every video file in clips_dir. Result: protocol, per-file metrics, aggregates, skipped files.

  config.eval.protocol: 'native' (each file on its own clock, whole file, per-window values; avdiff.eval.native) or
  'config' (files read at the training protocol, first data.clip_seconds; avdiff.eval.scoring.score_clip).
  config.eval.fvd_reference: a folder of reference videos; adds FVD (avdiff.eval.fvd) of clips_dir against it.
  syncnet_model: optional avdiff.eval.syncnet.SyncNet (public weights) adding syncnet_* metrics per file.
  """
  ev = config.eval
  if ev.protocol not in PROTOCOLS:
    raise config_lib.ConfigError(f'eval.protocol={ev.protocol!r} is not one of {PROTOCOLS}')
  if not os.path.isdir(clips_dir):
    raise console.UserError(f'--clips={clips_dir}: no such folder')
  names, others = video_files(clips_dir)
  if not names:
    raise console.UserError(f'--clips={clips_dir}: no video files ({", ".join(av_io.VIDEO_EXTENSIONS)}) in this folder')
  paths = [os.path.join(clips_dir, n) for n in names]
  track_faces = _track_faces(config, expert is not None or syncnet_model is not None)
  # One file at a time: a padded batch would waste work.
  fvd_features = fvd_lib.I3DFeatures(batch_size=1) if ev.fvd_reference else None
  scored, skipped, fvd_feats = {}, {}, {}
  for name, res, feats in tqdm.tqdm(_score_files(paths, config, expert, track_faces, fvd_features), desc='files',
                                    total=len(paths), leave=False):
    if isinstance(res, Exception):
      skipped[name] = str(res)
      continue
    scored[name] = res
    if feats is not None:
      fvd_feats[name] = feats
  if syncnet_model is not None:
    for n in tqdm.tqdm(list(scored), desc='syncnet', leave=False):
      try:
        box = tuple(config.eval.crop_box) or tuple(scored[n].get('face_box', ()))
        scored[n].update(syncnet_metrics(os.path.join(clips_dir, n), syncnet_model, box))
      except Exception as e:  # pylint: disable=broad-except
        scored[n]['syncnet_error'] = f'{type(e).__name__}: {e}'
  for n in others:
    skipped[n] = 'not a video file (extension)'
  summary = conditions_lib.summarize(scored, skipped, config)
  result = {'protocol': folder_protocol(config, clips_dir, len(names), sync_expert=expert is not None,
                                        syncnet=syncnet_model is not None, face_tracking=track_faces),
            'clips': scored, 'aggregate': summary['metrics'], 'skipped': skipped,
            'num_scored': summary['num_scored'], 'num_skipped': summary['num_skipped'],
            'skip_reasons': summary['skip_reasons']}
  if fvd_features is not None:
    result['fvd'] = folder_fvd(fvd_feats, ev.fvd_reference, fvd_features)
  return result
