"""In-loop evaluation: the workdir conditions on a small fixed validation subset, called by the training loop.

    evaluator = InLoopEvaluator(config)            # loads config.train.eval_clips clips of the validation split once
    metrics = evaluator(sample_fn, seed=step)      # {'eval/ground_truth/av_align': ..., 'eval/model_joint/...': ...}

sample_fn(clips, mode, seed) -> clips, as in avdiff.eval.workdir (e.g. a closure over the current EMA params).
On `talking` data the outcome measures (avdiff.eval.outcomes) are added as 'eval/<measure>' (e.g. eval/a2v_r, the
generated mouth's correlation with the conditioning audio, and eval/a2v_shuffled_r, with another clip's).
"""

from __future__ import annotations

import copy
from typing import Optional

import ml_collections

from avdiff.data import builders
from avdiff.eval import conditions as conditions_lib
from avdiff.eval import scoring

SPLIT = 'validation'  # In-loop scores never read the test split, which is kept for the final verdict.
_LOGGED = ('av_align', 'abs_offset_frames', 'offset_confidence', 'lse_c', 'lse_d', 'fd')


class InLoopEvaluator:
  """Scores model samples on a small fixed held-out subset every N training steps."""

  def __init__(self, config: ml_collections.ConfigDict, clips: Optional[list[builders.Clip]] = None,
               modes: tuple[str, ...] = ('joint',), expert: Optional[scoring.ExpertScorer] = None):
    self.config = copy.deepcopy(config)
    self.config.eval.bootstrap_samples = min(self.config.eval.bootstrap_samples, 100)
    self.clips = clips if clips is not None else builders.load_clips(config, SPLIT, config.train.eval_clips)
    self.modes, self.expert = modes, expert
    self._outcomes = conditions_lib.talking_outcomes_unavailable(config, self.clips) is None

  def __call__(self, sample_fn: conditions_lib.SampleFn, seed: int = 0) -> dict[str, float]:
    conds = {f'model_{m}': sample_fn(self.clips, m, seed) for m in self.modes}
    res = conditions_lib.score_conditions({'ground_truth': self.clips, **conds}, self.config, self.expert)
    flat = {}
    for cname, c in res.items():
      for metric in _LOGGED:
        if metric in c.get('metrics', {}):
          flat[f'eval/{cname}/{metric}'] = float(c['metrics'][metric]['mean'])
    if self._outcomes:
      for name, v in conditions_lib.talking_outcomes(self.clips, conds, self.config)['measures'].items():
        flat[f'eval/{name}'] = float(v['mean'] if isinstance(v, dict) else v)
    return flat
