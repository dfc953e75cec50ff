"""Workdir evaluation: a training run's held-out clips under every condition, and the outcome targets.

    evaluation = workdir.evaluate_workdir(W, config)    # config: the run's, with eval.split / num_clips / params
    results.write_workdir(run_dir.RunDir(W), evaluation, config)   # W/eval/<split>.json, .md and W/report/

The conditions are the baselines (ground truth, shuffled and shifted audio; avdiff.eval.conditions) and the model's
samples in each of SAMPLED_MODES, drawn by a `SampleFn` (default: the run's newest checkpoint through
avdiff.sampling). On `talking` data the outcome measures and their targets (avdiff.eval.outcomes) are added.
Everything the evaluation reads comes from `config`; nothing here changes it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import ml_collections

from avdiff import config_lib
from avdiff import run_dir
from avdiff import sampling
from avdiff.data import builders
from avdiff.eval import conditions as conditions_lib
from avdiff.eval import fvd as fvd_lib
from avdiff.eval import scoring

SAMPLED_MODES = ('joint', 'audio_to_video', 'video_to_audio')  # Model conditions of a workdir evaluation.


@dataclasses.dataclass
class Evaluation:
  """What a workdir evaluation produced: `result` (JSON-ready: protocol, conditions, outcomes, faces) and the
  clips of each condition it scored (for the report's videos)."""
  result: dict
  conditions: dict[str, list[builders.Clip]]
  split: str


def find_expert(config: ml_collections.ConfigDict, workdir: str = '') -> tuple[Optional[scoring.ExpertScorer], str]:
  """(the sync expert, its directory) of config.eval.sync_expert_workdir, else of W/sync_expert if present; else
  (None, '')."""
  for cand in (config.eval.sync_expert_workdir, str(run_dir.RunDir(workdir) / 'sync_expert') if workdir else ''):
    if cand and run_dir.RunDir(cand).has_config():
      return scoring.load_scorer(cand, config), str(run_dir.RunDir(cand))
  return None, ''


def sampler_settings(config: ml_collections.ConfigDict) -> dict:
  """How the evaluated samples were drawn (sampler, steps, guidance scales): read from the evaluation's config,
  which may override the run's own (e.g. --config.diffusion.guidance_video)."""
  df = config.diffusion
  return {'sampler': df.sampler, 'steps': df.num_sampling_steps, 'guidance_video': df.guidance_video,
          'guidance_audio': df.guidance_audio}


def evaluate_workdir(workdir: str, config: ml_collections.ConfigDict,
                     sample_fn: Optional[conditions_lib.SampleFn] = None,
                     expert: Optional[scoring.ExpertScorer] = None,
                     mesh: Optional[jax.sharding.Mesh] = None) -> Evaluation:
  """Baselines and model samples on config.eval.num_clips clips of config.eval.split of the run in `workdir`.

  sample_fn defaults to `avdiff.sampling.sample_clips` with the workdir's newest checkpoint (its EMA or raw params as
  config.eval.params says). When the model cannot be restored or sampled, its conditions are recorded as
  unavailable with the reason. The sync expert is `expert`, else the one `find_expert` finds, if any. mesh: restore
  and sample the model there (`sampling.load_model`; every process of a multi-process job calls this).
  """
  config_lib.validate(config)
  builders.check_labels(config)
  ev = config.eval
  expert_dir = ev.sync_expert_workdir
  if expert is None:
    expert, expert_dir = find_expert(config, workdir)
  held_out = builders.load_clips(config, ev.split, ev.num_clips)
  conditions = conditions_lib.baseline_conditions(held_out, config)
  unavailable = {}
  if sample_fn is None:
    restored = None

    def sample_fn(clips, mode, seed):  # The run is restored on first use, once for every mode.
      nonlocal restored
      restored = restored or sampling.load_model(workdir, config, mesh=mesh)
      return sampling.sample_clips(restored, clips, mode, seed)
  for mode in SAMPLED_MODES:
    try:
      conditions[f'model_{mode}'] = sample_fn(held_out, mode, ev.seed)
    except Exception as e:  # pylint: disable=broad-except  (report what is missing, still score the baselines)
      unavailable[f'model_{mode}'] = f'{type(e).__name__}: {e}'
  train_clips = None
  try:
    train_clips = builders.load_clips(config, 'train', max(ev.num_clips, conditions_lib.CLASSIFIER_TRAIN_CLIPS))
  except Exception as e:  # pylint: disable=broad-except
    unavailable['memorization'] = f'train split unavailable: {type(e).__name__}: {e}'
  faces_found = ({} if all('mouth_box' in c for c in held_out) else
                 conditions_lib.track_mouths(conditions, config))
  fvd_features = fvd_lib.I3DFeatures() if ev.fvd else None
  scores = conditions_lib.score_conditions(conditions, config, expert,
                                           train_clips[:ev.num_clips] if train_clips else None, fvd_features)
  for name, why in unavailable.items():
    scores[name] = {'unavailable': why}
  result = {'protocol': conditions_lib.protocol(config, mode='workdir', workdir=str(run_dir.RunDir(workdir)),
                                                sync_expert=expert is not None, sync_expert_workdir=expert_dir,
                                                params=ev.params, fvd=fvd_lib.PROTOCOL if ev.fvd else None,
                                                sampler=sampler_settings(config)),
            'conditions': scores}
  why_not = conditions_lib.talking_outcomes_unavailable(config, held_out)
  result['outcomes'] = ({'unavailable': why_not} if why_not is not None else
                        conditions_lib.talking_outcomes(held_out, conditions, config, train_clips))
  if faces_found:
    result['faces'] = faces_found
  return Evaluation(result, conditions, ev.split)
