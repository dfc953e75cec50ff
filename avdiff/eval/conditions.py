"""Conditions: named sets of clips scored the same way, shared by workdir and in-loop evaluation.

A condition is a list of clips aligned with the held-out clips: `ground_truth` (the upper bound), `shuffled_audio`
(each clip with another clip's audio) and `shifted_audio` (audio moved by eval.shift_frames), the lower bounds, and
`model_<mode>` (samples of a model conditioned on the held-out clips, from a `SampleFn`). `score_conditions` scores
every clip of every condition (avdiff.eval.scoring), summarises them, and compares each condition's feature
distribution (FD, KID, FVD) with the ground truth's.
"""

from __future__ import annotations

import collections
from typing import Callable, Iterable, Optional

import ml_collections
import numpy as np
import tqdm

from avdiff.data import builders
from avdiff.eval import distribution
from avdiff.eval import faces
from avdiff.eval import features as features_lib
from avdiff.eval import fvd as fvd_lib
from avdiff.eval import memorization as memo_lib
from avdiff.eval import outcomes
from avdiff.eval import scoring
from avdiff.eval import shift as shift_lib

# offset_confidence is left out: it repeats lse_c (with a sync expert) or the estimator's peak correlation.
HEADLINE = ('av_align', 'offset_frames', 'abs_offset_frames', 'offset_determined_rate', 'lse_c', 'lse_d',
            'envelope_peak_correlation', 'fd', 'kid', 'fvd', 'nn_dist_ratio')  # Metrics of the results tables.
CLASSIFIER_TRAIN_CLIPS = 128  # Train clips the speaker classifier of the outcome measures is fitted on.
# The function evaluators are handed: (held-out clips, mode, seed) -> clips sampled for them.
SampleFn = Callable[[list[builders.Clip], str, int], list[builders.Clip]]


def protocol(config: ml_collections.ConfigDict, **extra) -> dict:
  """Everything two results must share to be comparable; `extra` adds or replaces entries."""
  d, ev = config.data, config.eval
  p = {'dataset': d.dataset, 'split': ev.split, 'num_clips': ev.num_clips, 'fps': d.fps, 'resolution': d.resolution,
       'sample_rate': d.sample_rate, 'clip_seconds': d.clip_seconds, 'n_mels': d.n_mels,
       'mel_frames_per_video_frame': d.mel_frames_per_video_frame, 'sync_window_frames': ev.sync_window_frames,
       'max_offset_frames': ev.max_offset_frames, 'shift_frames': ev.shift_frames,
       'av_align_variant': ev.av_align_variant, 'seed': ev.seed, 'bootstrap_samples': ev.bootstrap_samples,
       'crop_box': list(ev.crop_box), 'sync_expert_workdir': ev.sync_expert_workdir}
  p.update(extra)
  return p


def score_clips(clips: Iterable[tuple[str, builders.Clip]], config: ml_collections.ConfigDict,
                expert: Optional[scoring.ExpertScorer] = None, desc: str = 'clips',
                total: Optional[int] = None) -> tuple[dict, dict]:
  """(name -> metrics, name -> skip reason) over (name, clip) pairs; a clip that fails to score is skipped with its
  reason, never fatal."""
  scored, skipped = {}, {}
  for name, clip in tqdm.tqdm(clips, desc=desc, total=total, leave=False):
    try:
      scored[name] = scoring.score_clip(clip['video'], clip['audio'], config, clip.get('mouth_box'), expert)
    except scoring.UnscorableClip as e:
      skipped[name] = str(e)
    except Exception as e:  # pylint: disable=broad-except  (a broken clip must not end a long evaluation)
      skipped[name] = f'{type(e).__name__}: {e}'
  return scored, skipped


def summarize(scored: dict, skipped: dict, config: ml_collections.ConfigDict) -> dict:
  """Counts, skip reasons and per-metric aggregates (mean, bootstrap CI) of score_clips' output."""
  return {'num_scored': len(scored), 'num_skipped': len(skipped), 'skip_reasons': dict(collections.Counter(
      skipped.values())), 'metrics': scoring.aggregate(list(scored.values()), config.eval.bootstrap_samples,
                                                      config.eval.seed)}


def baseline_conditions(clips: list[builders.Clip],
                        config: ml_collections.ConfigDict) -> dict[str, list[builders.Clip]]:
  """ground_truth (upper bound), shuffled_audio (audio from another clip), shifted_audio (+shift_frames)."""
  d, ev = config.data, config.eval
  shuffled = [dict(c, audio=audio) for c, audio in zip(clips, shift_lib.shuffled_audio(clips, ev.seed))]
  shifted = [dict(c, audio=shift_lib.shift_audio(c['audio'], ev.shift_frames, d.fps, d.sample_rate))
             for c in clips]
  return {'ground_truth': clips, 'shuffled_audio': shuffled, 'shifted_audio': shifted}


def track_mouths(conditions: dict[str, list[builders.Clip]], config: ml_collections.ConfigDict) -> dict[str, str]:
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


def score_conditions(conditions: dict[str, list[builders.Clip]], config: ml_collections.ConfigDict,
                     expert: Optional[scoring.ExpertScorer] = None,
                     train_clips: Optional[list[builders.Clip]] = None, fvd_features=None) -> dict:
  """{condition: summarize(...) + 'per_clip'} for each condition; adds FD / KID against ground truth, and the
  memorization check (nearest training clip) for generated conditions (names starting with 'model_').

  fvd_features: optional avdiff.eval.fvd.I3DFeatures; adds `fvd` (I3D protocol) against ground truth to every
  condition whose videos differ from the ground truth's (conditions that only change the audio would score 0).
  """
  d = config.data
  feature_fn = features_lib.expert_features(expert) if expert else features_lib.raw_features(d.fps, d.sample_rate)

  def features(clips: list[builders.Clip]) -> np.ndarray:
    return np.stack([feature_fn(c['video'], c['audio'], scoring.sync_box(config, c['video'], c.get('mouth_box')))
                     for c in clips])

  feats, out = {}, {}
  for name, clips in conditions.items():
    scored, skipped = score_clips(((f'{name}/{i}', c) for i, c in enumerate(clips)), config, expert, desc=name,
                                  total=len(clips))
    out[name] = summarize(scored, skipped, config)
    out[name]['per_clip'] = scored
    try:
      feats[name] = features(clips)
    except Exception as e:  # pylint: disable=broad-except
      out[name]['feature_error'] = f'{type(e).__name__}: {e}'
  ref = feats.get('ground_truth')
  train_feats = features(train_clips) if train_clips else None
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
    _add_fvd(out, conditions, fvd_features)
  return out


def _add_fvd(out: dict, conditions: dict[str, list[builders.Clip]], fvd_features) -> None:
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


def talking_outcomes_unavailable(config: ml_collections.ConfigDict,
                                 held_out: list[builders.Clip]) -> Optional[str]:
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


def talking_outcomes(held_out: list[builders.Clip], conditions: dict[str, list[builders.Clip]],
                     config: ml_collections.ConfigDict, train_clips: Optional[list[builders.Clip]] = None) -> dict:
  """{'measures': avdiff.eval.outcomes.measure(...), 'verdict': target rows} for `talking` clips and the generated
  conditions among `conditions` ('model_<mode>'); the speaker classifier is fitted on train_clips, if any."""
  labelled = train_clips and all('label' in c for c in train_clips)
  classifier = outcomes.SpeakerClassifier.fit(train_clips) if labelled else None
  generated = {name[len('model_'):]: clips for name, clips in conditions.items() if name.startswith('model_')}
  measures = outcomes.measure(held_out, generated, config.data, classifier, config.eval.max_offset_frames,
                              config.eval.seed)
  return {'measures': measures, 'verdict': outcomes.verdict(measures)}
