"""Conditions: baselines rank as expected, unscorable clips are counted, the in-loop evaluator's flat metrics."""

import numpy as np

import eval_toy as toy
from avdiff.eval import conditions
from avdiff.eval import in_loop
from avdiff.eval import results
from avdiff.eval import scoring
from avdiff.eval import shift as shift_lib
from configs import tiny


def _config():
  c = tiny.get_config()
  c.eval.bootstrap_samples = 50
  c.eval.fvd = False  # I3D is exercised once, in the workdir test.
  return c


def test_baselines_rank_as_expected_and_bad_clips_are_counted():
  config = _config()
  clips = [toy.talking_like(s) for s in range(8)]
  conds = conditions.baseline_conditions(clips, config)
  conds['broken'] = [dict(clips[0], audio=np.zeros_like(clips[0]['audio'])),
                     dict(clips[1], video=clips[1]['video'][:3]),
                     dict(clips[2], audio=np.zeros(0, np.float32)), clips[3]]
  res = conditions.score_conditions(conds, config)
  gt, sh, shuf = res['ground_truth']['metrics'], res['shifted_audio']['metrics'], res['shuffled_audio']['metrics']
  assert res['ground_truth']['num_scored'] == 8
  assert gt['abs_offset_frames']['mean'] == 0
  assert sh['offset_frames']['mean'] == config.eval.shift_frames
  assert gt['envelope_peak_correlation']['mean'] > shuf['envelope_peak_correlation']['mean'] + 0.2
  lo, hi = gt['envelope_peak_correlation']['ci95']
  assert lo <= gt['envelope_peak_correlation']['mean'] <= hi
  assert 'fd' in sh and 'kid' in sh and 'fd' not in gt
  broken = res['broken']
  assert broken['num_scored'] == 1 and broken['num_skipped'] == 3
  assert set(broken['skip_reasons']) == {'silent audio', 'too short: 3 frames < 6', 'no audio'}
  table = results.metrics_table({'protocol': conditions.protocol(config), 'conditions': res})
  assert '| ground_truth | 8 | 0 |' in table and 'max_offset_frames=6' in table


def test_score_clip_is_deterministic():
  config = _config()
  c = toy.impacts_like(3)
  a = scoring.score_clip(c['video'], c['audio'], config)
  b = scoring.score_clip(c['video'].copy(), c['audio'].copy(), config)
  assert a == b and a['av_align_variant'] == 'v2' and a['offset_source'] == 'onset_motion'


def test_in_loop_evaluator_returns_flat_metrics():
  config = _config()
  clips = [toy.talking_like(s) for s in range(4)]
  evaluator = in_loop.InLoopEvaluator(config, clips=clips, modes=('joint',))
  calls = []

  def sample_fn(cl, mode, seed):
    calls.append((mode, seed))
    d = config.data
    return [dict(c, audio=shift_lib.shift_audio(c['audio'], 2, d.fps, d.sample_rate)) for c in cl]

  metrics = evaluator(sample_fn, seed=7)
  assert calls == [('joint', 7)]
  assert metrics['eval/ground_truth/abs_offset_frames'] == 0
  assert metrics['eval/model_joint/abs_offset_frames'] == 2
  assert all(isinstance(v, float) for v in metrics.values())
