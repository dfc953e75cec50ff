"""Evaluation runner: scores sets of clips under named conditions and writes JSON + markdown results.

Modes:
  evaluate_folder(dir, config)      a folder of video files (mp4/mov/mkv/webm), sync read from stream timestamps.
  evaluate_workdir(workdir, split)  held-out ground truth (upper bound), shuffled / shifted audio (lower bounds),
                                    model samples (joint, audio_to_video) with EMA params -> W/eval/<split>.json.
  InLoopEvaluator                   the same scoring on a small held-out subset, called by the training loop.
Every result file carries the protocol (clips, split, fps, resolution, sample rate, windows, seeds).
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
from typing import Callable, Iterable, Optional

import cv2
import ml_collections
import numpy as np
import tqdm

from avdiff import checkpoint
from avdiff import config_lib
from avdiff import console
from avdiff import run_dir
from avdiff import sampling
from avdiff.data import av_io
from avdiff.data import builders
from avdiff.eval import distribution
from avdiff.eval import faces
from avdiff.eval import features as features_lib
from avdiff.eval import fvd as fvd_lib
from avdiff.eval import html_report
from avdiff.eval import lipsync
from avdiff.eval import memorization as memo_lib
from avdiff.eval import native
from avdiff.eval import offsets
from avdiff.eval import outcomes
from avdiff.eval import report
from avdiff.eval import scoring
from avdiff.eval import shift as shift_lib
from avdiff.eval import syncnet

Clip = builders.Clip


def protocol(config: ml_collections.ConfigDict, **extra) -> dict:
  """Everything two results must share to be comparable."""
  d, ev = config.data, config.eval
  p = {'dataset': d.dataset, 'split': ev.split, 'num_clips': ev.num_clips, 'fps': d.fps, 'resolution': d.resolution,
       'sample_rate': d.sample_rate, 'clip_seconds': d.clip_seconds, 'n_mels': d.n_mels,
       'mel_frames_per_video_frame': d.mel_frames_per_video_frame, 'sync_window_frames': ev.sync_window_frames,
       'max_offset_frames': ev.max_offset_frames, 'shift_frames': ev.shift_frames,
       'av_align_variant': ev.av_align_variant, 'seed': ev.seed, 'bootstrap_samples': ev.bootstrap_samples,
       'crop_box': list(ev.crop_box), 'sync_expert_workdir': ev.sync_expert_workdir}
  p.update(extra)
  return p


def score_clips(clips: Iterable[tuple[str, Clip]], config: ml_collections.ConfigDict,
                expert: Optional[scoring.ExpertScorer] = None, desc: str = 'clips',
                total: Optional[int] = None) -> tuple[dict, dict]:
  """(name -> metrics, name -> skip reason) over (name, clip) pairs; a clip that fails is skipped, never fatal."""
  scored, skipped = {}, {}
  for name, clip in tqdm.tqdm(clips, desc=desc, total=total, leave=False):
    if isinstance(clip, Exception):
      skipped[name] = str(clip) or type(clip).__name__
      continue
    try:
      scored[name] = scoring.score_clip(clip['video'], clip['audio'], config, clip.get('mouth_box'), expert)
    except scoring.UnscorableClip as e:
      skipped[name] = str(e)
    except Exception as e:  # pylint: disable=broad-except  (a broken clip must not end a long evaluation)
      skipped[name] = f'{type(e).__name__}: {e}'
  return scored, skipped


def summarize(scored: dict, skipped: dict, config: ml_collections.ConfigDict) -> dict:
  reasons = collections.Counter(skipped.values())
  return {'num_scored': len(scored), 'num_skipped': len(skipped), 'skip_reasons': dict(reasons),
          'metrics': scoring.aggregate(list(scored.values()), config.eval.bootstrap_samples, config.eval.seed)}


# ----------------------------------------------------------------------------- folder mode

def _read_one(path: str, config: ml_collections.ConfigDict):
  d = config.data
  return av_io.read_video(path, fps=d.fps, sample_rate=d.sample_rate, size=d.resolution,
                          max_seconds=d.clip_seconds)


def _read_folder(paths: list[str], config: ml_collections.ConfigDict):
  for path in paths:
    name = os.path.basename(path)
    try:
      video, audio, _ = _read_one(path, config)
      yield name, {'video': video, 'audio': audio}
    except Exception as e:  # pylint: disable=broad-except  (UnusableClipError and any decoder failure)
      yield name, scoring.UnscorableClip(f'unreadable ({type(e).__name__}): {e}')


def syncnet_metrics(path: str, model, crop_box=()) -> dict:
  """Public-SyncNet LSE-C / LSE-D / offset of one file, read at 25 fps / 16 kHz (SyncNet's clock).

  crop_box: (y0, x0, y1, x1) face box in the file's native pixels; () = the file is already a face crop.
  """
  video, audio, _ = av_io.read_video(path, fps=syncnet.FPS, sample_rate=syncnet.SAMPLE_RATE)
  if crop_box:
    y0, x0, y1, x1 = crop_box
    video = video[:, y0:y1, x0:x1]
  frames = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_AREA)[..., ::-1] for f in video])
  v, a = syncnet.clip_embeddings(model, frames, audio)
  res = lipsync.score_embeddings(v, a, max_offset=15)
  return {'syncnet_offset_frames': res.offset_frames, 'syncnet_lse_c': res.lse_c, 'syncnet_lse_d': res.lse_d}


PROTOCOLS = ('native', 'config')
FACES = ('auto', 'on', 'off')


def folder_protocol(config: ml_collections.ConfigDict, clips_dir: str, num_files: int, **extra) -> dict:
  """The protocol of a folder result: 'native' replaces the training clock with each file's own."""
  ev = config.eval
  p = protocol(config, mode='folder', protocol=ev.protocol, clips_dir=os.path.abspath(clips_dir), split='',
               dataset='', num_clips=num_files, **extra)
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
  faces = config.eval.faces
  if faces not in FACES:
    raise ValueError(f'eval.faces={faces!r} is not one of {FACES}')
  return faces == 'on' or (faces == 'auto' and lipsync_scorers and not config.eval.crop_box)


def _scan_folder(paths: list[str], config: ml_collections.ConfigDict, expert, track_faces: bool, fvd_features,
                 fvd_feats: dict):
  """(name, metrics dict | UnscorableClip) per file on its own clock, one decode each (avdiff.eval.native).

  With fvd_features (avdiff.eval.fvd.I3DFeatures), each file's I3D features go into fvd_feats[name].
  """
  for path in paths:
    name = os.path.basename(path)
    try:
      tracker = None
      if track_faces:
        tracker = faces.FaceTracker()
      scan = native.scan(path, config, protocol_frames=expert is not None,
                         fvd_frames=fvd_lib.NUM_FRAMES if fvd_features is not None else 0, face_tracker=tracker,
                         mouth_box=tuple(config.eval.crop_box))
      if tracker is not None and not scan.faces.found:
        raise scoring.UnscorableClip(scan.faces.reason)
      metrics = native.score_scan(scan, config, expert)
      if fvd_features is not None:
        try:
          fvd_feats[name] = fvd_features([np.stack(scan.fvd_frames)])[0]
        except ValueError as e:  # Shorter than the FVD clip: scored, but left out of FVD.
          metrics['fvd_skip_reason'] = str(e)
      yield name, metrics
    except av_io.UnusableClipError as e:
      yield name, scoring.UnscorableClip(f'unreadable: {e}' if e.reason == 'corrupt' else str(e))
    except scoring.UnscorableClip as e:
      yield name, e
    except Exception as e:  # pylint: disable=broad-except  (a broken file must not end a long evaluation)
      yield name, scoring.UnscorableClip(f'{type(e).__name__}: {e}')


def reference_fvd_features(reference_dir: str, fvd_features) -> tuple[np.ndarray, dict]:
  """I3D features [N, 400] of the videos in reference_dir (first frames only are decoded), and skipped files."""
  feats, skipped = [], {}
  for name in sorted(f for f in os.listdir(reference_dir) if f.lower().endswith(av_io.VIDEO_EXTENSIONS)):
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
  names = sorted(f for f in os.listdir(clips_dir) if f.lower().endswith(av_io.VIDEO_EXTENSIONS))
  if not names:
    raise console.UserError(f'--clips={clips_dir}: no video files ({", ".join(av_io.VIDEO_EXTENSIONS)}) in this folder')
  others = sorted(f for f in os.listdir(clips_dir) if not f.lower().endswith(av_io.VIDEO_EXTENSIONS)
                  and os.path.isfile(os.path.join(clips_dir, f)))
  paths = [os.path.join(clips_dir, n) for n in names]
  track_faces = _track_faces(config, expert is not None or syncnet_model is not None)
  fvd_features = None
  if ev.fvd_reference:
    fvd_features = fvd_lib.I3DFeatures(batch_size=1)  # One file at a time: a padded batch would waste work.
  fvd_feats = {}
  if ev.protocol == 'native':
    scored, skipped = {}, {}
    for name, res in tqdm.tqdm(_scan_folder(paths, config, expert, track_faces, fvd_features, fvd_feats),
                               desc='files', total=len(paths), leave=False):
      if isinstance(res, Exception):
        skipped[name] = str(res)
      else:
        scored[name] = res
  else:
    scored, skipped = score_clips(_read_folder(paths, config), config, expert, total=len(names))
  if syncnet_model is not None:
    for n in tqdm.tqdm(list(scored), desc='syncnet', leave=False):
      try:
        box = tuple(config.eval.crop_box) or tuple(scored[n].get('face_box', ()))
        scored[n].update(syncnet_metrics(os.path.join(clips_dir, n), syncnet_model, box))
      except Exception as e:  # pylint: disable=broad-except
        scored[n]['syncnet_error'] = f'{type(e).__name__}: {e}'
  for n in others:
    skipped[n] = 'not a video file (extension)'
  extra = {}
  if fvd_features is not None:
    if ev.protocol == 'config':  # Frames at the training protocol, as read for the other metrics.
      for name in scored:
        video, _, _ = _read_one(os.path.join(clips_dir, name), config)
        try:
          fvd_feats[name] = fvd_features([video])[0]
        except ValueError as e:
          scored[name]['fvd_skip_reason'] = str(e)
    extra['fvd'] = folder_fvd(fvd_feats, ev.fvd_reference, fvd_features)
  summary = summarize(scored, skipped, config)
  result = {'protocol': folder_protocol(config, clips_dir, len(names), sync_expert=expert is not None,
                                        syncnet=syncnet_model is not None, face_tracking=track_faces),
            'clips': scored, 'aggregate': summary['metrics'], 'skipped': skipped,
            'num_scored': summary['num_scored'], 'num_skipped': summary['num_skipped'],
            'skip_reasons': summary['skip_reasons']}
  result.update(extra)
  return result


# ----------------------------------------------------------------------------- held-out data

def baseline_conditions(clips: list[Clip], config: ml_collections.ConfigDict) -> dict[str, list[Clip]]:
  """ground_truth (upper bound), shuffled_audio (audio from another clip), shifted_audio (+shift_frames)."""
  d, ev = config.data, config.eval
  perm = shift_lib.derangement(len(clips), np.random.default_rng(ev.seed))
  shuffled = [dict(c, audio=clips[j]['audio']) for c, j in zip(clips, perm)]
  shifted = [dict(c, audio=shift_lib.shift_audio(c['audio'], ev.shift_frames, d.fps, d.sample_rate))
             for c in clips]
  return {'ground_truth': clips, 'shuffled_audio': shuffled, 'shifted_audio': shifted}


# ----------------------------------------------------------------------------- model samples

SampleFn = Callable[[list[Clip], str, int], list[Clip]]  # (held-out clips, mode, seed) -> sampled clips


def track_mouths(conditions: dict[str, list[Clip]], config: ml_collections.ConfigDict) -> dict[str, str]:
  """Finds the mouth box of every clip that has none (dlib face tracking, `avdiff.eval.faces`), in place, so that
  offsets and the sync expert read the mouth rather than the whole frame; eval.faces='off' leaves them. Returns
  {condition: 'mouth found in k of n clips' or why not}; clips without a face keep reading the whole frame."""
  if config.eval.faces == 'off':
    return {name: 'face tracking off (eval.faces): clips without a mouth box are read whole'
            for name in conditions}
  found = {}
  tracks: dict[int, Optional[tuple]] = {}  # Conditions that share a clip's video (shuffled audio) track it once.
  for name, clips in conditions.items():
    hits = 0
    for i, clip in enumerate(clips):
      if 'mouth_box' in clip:
        hits += 1
        continue
      key = id(clip['video'])
      if key not in tracks:
        track = faces.detect_faces(np.asarray(clip['video'], np.uint8))
        tracks[key] = track.clip_mouth_box() if track.found else None
      if tracks[key] is not None:
        clips[i] = dict(clip, mouth_box=np.asarray(tracks[key], np.int32))
        hits += 1
    found[name] = f'mouth found in {hits} of {len(clips)} clips' + (
        '' if hits == len(clips) else ' (the rest are read whole: no face found, e.g. frames too small for the '
                                      'HOG detector)')
  return found


def evaluate_conditions(conditions: dict[str, list[Clip]], config: ml_collections.ConfigDict,
                        expert: Optional[scoring.ExpertScorer] = None,
                        train_clips: Optional[list[Clip]] = None, fvd_features=None) -> dict:
  """Scores each condition; adds FD / KID against ground truth, and the memorization check (nearest training clip)
  for generated conditions (names starting with 'model_').

  fvd_features: optional avdiff.eval.fvd.I3DFeatures; adds `fvd` (I3D protocol) against ground truth to every
  condition whose videos differ from the ground truth's (conditions that only change the audio would score 0).
  """
  d = config.data
  feature_fn = features_lib.expert_features(expert) if expert else features_lib.raw_features(d.fps, d.sample_rate)
  feats, out = {}, {}
  for name, clips in conditions.items():
    scored, skipped = score_clips(((f'{name}/{i}', c) for i, c in enumerate(clips)), config, expert, desc=name,
                                  total=len(clips))
    out[name] = summarize(scored, skipped, config)
    out[name]['per_clip'] = scored
    try:
      feats[name] = np.stack([feature_fn(c['video'], c['audio'], scoring.clip_box(config, c['video'],
                                                                                  c.get('mouth_box')))
                              for c in clips])
    except Exception as e:  # pylint: disable=broad-except
      out[name]['feature_error'] = f'{type(e).__name__}: {e}'
  ref = feats.get('ground_truth')
  train_feats = None
  if train_clips:
    train_feats = np.stack([feature_fn(c['video'], c['audio'], scoring.clip_box(config, c['video'],
                                                                               c.get('mouth_box')))
                            for c in train_clips])
  for name, f in feats.items():
    if ref is None or name == 'ground_truth' or len(f) < 2:
      continue
    out[name]['metrics']['fd'] = {'mean': distribution.frechet_distance(f, ref), 'n': len(f)}
    kid_mean, kid_std = distribution.kid(f, ref, seed=config.eval.seed)
    out[name]['metrics']['kid'] = {'mean': kid_mean, 'std': kid_std, 'n': len(f)}
    if train_feats is not None and name.startswith('model_'):
      m = memo_lib.memorization(f, ref, train_feats)
      out[name]['metrics']['nn_dist_ratio'] = {'mean': m['nn_dist_ratio'], 'n': len(f)}
      out[name]['memorization'] = {k: v for k, v in m.items() if not isinstance(v, list)}
  if fvd_features is not None and 'ground_truth' in conditions:
    add_fvd(out, conditions, fvd_features)
  return out


def add_fvd(out: dict, conditions: dict[str, list[Clip]], fvd_features) -> None:
  """out[name]['metrics']['fvd'] for each condition with its own videos, against conditions['ground_truth']."""
  truth = conditions['ground_truth']
  try:
    ref = fvd_features([c['video'] for c in truth])
  except ValueError as e:  # Clips shorter than the protocol's 16 frames.
    for name in conditions:
      out[name]['fvd_unavailable'] = str(e)
    return
  for name, clips in conditions.items():
    same = len(clips) == len(truth) and all(np.array_equal(c['video'], t['video']) for c, t in zip(clips, truth))
    if name == 'ground_truth' or same or len(clips) < 2:
      continue
    out[name]['metrics']['fvd'] = {'mean': fvd_lib.fvd(ref, fvd_features([c['video'] for c in clips])),
                                   'n': len(clips)}


def evaluate_workdir(workdir: str, split: Optional[str] = None, config: Optional[ml_collections.ConfigDict] = None,
                     num_clips: Optional[int] = None, sample_fn: Optional[SampleFn] = None,
                     expert: Optional[scoring.ExpertScorer] = None, sync_expert_workdir: str = '',
                     write: bool = True, params: Optional[str] = None) -> dict:
  """Baselines + model samples on held-out clips of the run in `workdir`; writes W/eval/<split>.json and .md.

  sample_fn defaults to `avdiff.sampling.sample_clips` (the workdir's latest checkpoint; its EMA or raw params
  as `params` or config.eval.params says). When the
  model cannot be restored or sampled, its conditions are recorded as unavailable with the reason. The sync expert
  is `expert`, else the one in sync_expert_workdir / config.eval.sync_expert_workdir / W/sync_expert, if any.
  """
  if config is None:
    config = checkpoint.load_config(workdir)
  config = copy.deepcopy(config)
  split = split or config.eval.split
  config.eval.split = split
  num = num_clips or config.eval.num_clips
  config.eval.num_clips = num
  if sync_expert_workdir:
    config.eval.sync_expert_workdir = sync_expert_workdir
  if params:
    config.eval.params = params
  config_lib.validate(config)
  builders.check_labels(config)
  if expert is None:
    expert = find_expert(config, workdir)
  held_out = builders.load_clips(config, split, num)
  conditions = baseline_conditions(held_out, config)
  unavailable = {}
  if sample_fn is None:
    model = None

    def sample_fn(clips, mode, seed):  # The model is restored on first use, once for every mode.
      nonlocal model
      model = model or sampling.load_model(workdir, config)
      return sampling.sample_clips(model, clips, mode, seed)
  for mode in SAMPLED_MODES:
    try:
      conditions[f'model_{mode}'] = sample_fn(held_out, mode, config.eval.seed)
    except Exception as e:  # pylint: disable=broad-except  (report what is missing, still score the baselines)
      unavailable[f'model_{mode}'] = f'{type(e).__name__}: {e}'
  train_clips = None
  try:
    train_clips = builders.load_clips(config, 'train', max(num, CLASSIFIER_TRAIN_CLIPS))
  except Exception as e:  # pylint: disable=broad-except
    unavailable['memorization'] = f'train split unavailable: {type(e).__name__}: {e}'
  faces_found = track_mouths(conditions, config) if not all('mouth_box' in c for c in held_out) else {}
  fvd_features, fvd_protocol = None, None
  if config.eval.fvd:
    fvd_features, fvd_protocol = fvd_lib.I3DFeatures(), fvd_lib.PROTOCOL
  conds = evaluate_conditions(conditions, config, expert, train_clips[:num] if train_clips else None, fvd_features)
  for name, why in unavailable.items():
    conds[name] = {'unavailable': why}
  run = run_dir.RunDir(workdir)
  result = {'protocol': protocol(config, mode='workdir', workdir=str(run),
                                 sync_expert=expert is not None, params=config.eval.params, fvd=fvd_protocol),
            'conditions': conds}
  why_not = talking_outcomes_unavailable(config, held_out)
  if why_not is None:
    result['outcomes'] = talking_outcomes(held_out, conditions, config, train_clips)
  else:
    result['outcomes'] = {'unavailable': why_not}
  if faces_found:
    result['faces'] = faces_found
  if write:
    write_workdir_result(run, split, result, conditions, config)
  return result


def write_workdir_result(run: run_dir.RunDir, split: str, result: dict, conditions: dict[str, list[Clip]],
                         config: ml_collections.ConfigDict) -> None:
  """W/eval/<split>.md, W/report/ (HTML, png and mp4 are written locally and copied up when W is on a bucket),
  then W/eval/<split>.json last: its presence marks the run evaluated (a sweep skips it), so it must not appear
  before the rest. Sets result['report'] to the report page's path."""
  markdown = report.markdown_table(result)
  if 'verdict' in result.get('outcomes', {}):
    markdown += '\n## Outcome targets\n\n' + outcomes.verdict_markdown(result['outcomes']['verdict'])
  run.write_text(f'eval/{split}.md', markdown)
  with run.staged(run.report) as local:
    index = html_report.write_report(local, result, conditions, config.data, title=f'{run.name}: {split}')
  run.write_text(f'eval/{split}.json', json.dumps(result, indent=2, default=_json_default))
  result['report'] = str(run.report / os.path.basename(index))


SAMPLED_MODES = ('joint', 'audio_to_video', 'video_to_audio')  # Sampled conditions of a workdir evaluation.
IN_LOOP_SPLIT = 'validation'  # In-loop scores never read the test split, which is kept for the final verdict.


def talking_outcomes_unavailable(config: ml_collections.ConfigDict, held_out: list[Clip]) -> Optional[str]:
  """None when the `talking` outcome targets apply to the held-out clips of config.data.dataset (the built-in data,
  or a folder exported from it whose sidecars carry the generator's ground truth), else why they do not."""
  generator = builders.ground_truth_generator(config)
  if generator == 'talking':
    if not all('label' in c for c in held_out):
      return 'held-out clips carry no speaker label (the mouth region needs it)'
    return None
  return (f'the talking outcome targets read mouths where the talking generator draws them; dataset '
          f'{config.data.dataset!r} is ' + (f'from the {generator!r} generator' if generator else
                                             'not from it (no sidecar names generator=talking)') +
          '. AV-Align, offsets and FVD are scored instead')
CLASSIFIER_TRAIN_CLIPS = 128  # Train clips the speaker classifier of the outcome measures is fitted on.


def talking_outcomes(held_out: list[Clip], conditions: dict[str, list[Clip]], config: ml_collections.ConfigDict,
                     train_clips: Optional[list[Clip]] = None) -> dict:
  """{'measures': avdiff.eval.outcomes.measure(...), 'verdict': target rows} for `talking` clips and the generated
  conditions among `conditions` ('model_<mode>'); the speaker classifier is fitted on train_clips, if any."""
  labelled = train_clips and all('label' in c for c in train_clips)
  classifier = outcomes.SpeakerClassifier.fit(train_clips) if labelled else None
  generated = {name[len('model_'):]: clips for name, clips in conditions.items() if name.startswith('model_')}
  measures = outcomes.measure(held_out, generated, config.data, classifier, config.eval.max_offset_frames,
                              config.eval.seed)
  return {'measures': measures, 'verdict': outcomes.verdict(measures)}


def find_expert(config: ml_collections.ConfigDict, workdir: str = '') -> Optional[scoring.ExpertScorer]:
  """The sync expert of config.eval.sync_expert_workdir, else W/sync_expert if present, else None.

  The directory used is written back into config.eval.sync_expert_workdir (so the protocol records it).
  """
  for cand in (config.eval.sync_expert_workdir, str(run_dir.RunDir(workdir) / 'sync_expert') if workdir else ''):
    if cand and run_dir.RunDir(cand).has_config():
      config.eval.sync_expert_workdir = str(run_dir.RunDir(cand))
      return scoring.load_scorer(cand, config)
  return None


def folder_summary(result: dict) -> dict:
  """The headline of a folder result: protocol, counts, skip reasons, every aggregate's mean (and FVD)."""
  summary = {'protocol': result['protocol']['protocol'], 'num_scored': result['num_scored'],
             'num_skipped': result['num_skipped'], 'skip_reasons': result['skip_reasons'],
             **{k: v['mean'] for k, v in result['aggregate'].items()}}
  if 'fvd' in result:
    summary['fvd'] = result['fvd']['fvd']
  return summary


def workdir_summary(result: dict) -> str:
  """Markdown of a workdir result: the metrics table, the outcome verdict (talking data) and the report's path."""
  text = report.markdown_table(result)
  if 'verdict' in result.get('outcomes', {}):
    text += '\n' + outcomes.verdict_markdown(result['outcomes']['verdict'])
  if 'report' in result:
    text += f'\nReport: {result["report"]}'
  return text


def _json_default(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)


def write_json(result: dict, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2, default=_json_default)


# ----------------------------------------------------------------------------- in-loop evaluation

class InLoopEvaluator:
  """Scores model samples on a small fixed held-out subset every N training steps.

  evaluator = InLoopEvaluator(config)            # loads config.train.eval_clips clips of the validation split once
  metrics = evaluator(sample_fn, seed=step)      # {'eval/ground_truth/av_align': ..., 'eval/model_joint/...': ...}
  sample_fn(clips, mode, seed) -> clips, as in evaluate_workdir (e.g. a closure over the current EMA params).
  On `talking` data the outcome measures (avdiff.eval.outcomes) are added as 'eval/<measure>' (e.g. eval/a2v_r,
  the generated mouth's correlation with the conditioning audio, and eval/a2v_shuffled_r, with another clip's).
  """

  def __init__(self, config: ml_collections.ConfigDict, clips: Optional[list[Clip]] = None,
               modes: tuple[str, ...] = ('joint',), expert: Optional[scoring.ExpertScorer] = None):
    self.config = copy.deepcopy(config)
    self.config.eval.bootstrap_samples = min(self.config.eval.bootstrap_samples, 100)
    self.clips = clips if clips is not None else builders.load_clips(config, IN_LOOP_SPLIT, config.train.eval_clips)
    self.modes, self.expert = modes, expert
    self._outcomes = talking_outcomes_unavailable(config, self.clips) is None

  def __call__(self, sample_fn: SampleFn, seed: int = 0) -> dict[str, float]:
    conds = {f'model_{m}': sample_fn(self.clips, m, seed) for m in self.modes}
    res = evaluate_conditions({'ground_truth': self.clips, **conds}, self.config, self.expert)
    flat = {}
    for cname, c in res.items():
      for metric in ('av_align', 'abs_offset_frames', 'offset_confidence', 'lse_c', 'lse_d', 'fd'):
        if metric in c.get('metrics', {}):
          flat[f'eval/{cname}/{metric}'] = float(c['metrics'][metric]['mean'])
    if self._outcomes:
      for name, v in talking_outcomes(self.clips, conds, self.config)['measures'].items():
        flat[f'eval/{name}'] = float(v['mean'] if isinstance(v, dict) else v)
    return flat
