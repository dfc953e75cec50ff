"""Sync expert on the built-in `talking` data: trained contrastively on CPU, it recovers known audio shifts.

Clips come straight from avdiff.data.synthetic (seeds 0.. for training, 100000.. held out: disjoint by
construction). The fast test trains a small expert for 80 steps; the slow one uses the tiny config's sizes.
"""

import numpy as np
import pytest

from avdiff.data import audio as audio_lib
from avdiff.data import synthetic
from avdiff.eval import sync_train
from configs import tiny

HELD_OUT_SEED = 100_000


def _clips(config, seeds):
  out = []
  for s in seeds:
    c = synthetic.talking_clip(s, config.data)
    c['audio_mel'] = audio_lib.log_mel(c['audio'], config.data)
    out.append(c)
  return out


def _batches(clips, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  while True:
    idx = rng.choice(len(clips), batch_size, replace=False)
    yield sync_train.stack_clips([{k: clips[i][k] for k in ('video', 'audio_mel', 'mouth_box')} for i in idx])


def _check(config, num_train, num_held_out, steps, tmp_path=None):
  train = _clips(config, range(num_train))
  model, hist = sync_train.train(config, _batches(train, config.eval.sync_expert.batch_size), steps=steps,
                                 log_every=max(1, steps // 4), log_fn=None)
  assert hist[-1]['loss'] < hist[0]['loss']
  held_out = _clips(config, range(HELD_OUT_SEED, HELD_OUT_SEED + num_held_out))
  res = sync_train.shift_recovery(model, config, clips=held_out, max_shift=5)
  # Known answer: audio shifted by k in -5..5 frames -> offset k.
  assert res['exact'] >= 0.9 and res['within_one'] >= 0.98, res
  # True audio is closer (LSE-D) and more confidently synced (LSE-C) than audio of another clip.
  assert res['lse_c_true'] > res['lse_c_shuffled'] + 0.2, res
  assert res['lse_d_true'] < res['lse_d_shuffled'] - 0.2, res
  if tmp_path is not None:  # Save / load round trip scores identically.
    sync_train.save(model, config, str(tmp_path), steps)
    again = sync_train.shift_recovery(sync_train.load(str(tmp_path)), config, clips=held_out[:2], max_shift=1)
    assert again == pytest.approx(sync_train.shift_recovery(model, config, clips=held_out[:2], max_shift=1))
  return res


def test_small_expert_recovers_shifts(tmp_path):
  config = tiny.get_config()
  se = config.eval.sync_expert
  se.width, se.embed_dim, se.batch_size = 16, 64, 8
  _check(config, num_train=48, num_held_out=16, steps=80, tmp_path=tmp_path)


@pytest.mark.slow
def test_tiny_config_expert_recovers_shifts():
  config = tiny.get_config()
  _check(config, num_train=config.data.num_train, num_held_out=config.data.num_test,
         steps=config.eval.sync_expert.steps)


@pytest.mark.slow
def test_shared_loop_trains_and_scores(tmp_path):
  config = tiny.get_config()
  d, se = config.data, config.eval.sync_expert
  d.data_dir = str(tmp_path / 'tfds')
  d.num_train, d.num_validation, d.num_test = 64, 8, 8
  se.width, se.embed_dim, se.batch_size, se.steps = 16, 64, 8, 150
  config.mesh.shape.data = -1
  workdir = str(tmp_path / 'sync_expert')
  sync_train.train_with_shared_loop(config, workdir)
  scorer = sync_train.load_scorer(workdir, config)
  assert scorer.fixed_box  # Trained on one fixed mouth region (the loop sends no mouth_box).
  res = sync_train.shift_recovery(scorer, config, split='validation', num_clips=8, max_shift=5)
  assert res['exact'] >= 0.9 and res['within_one'] >= 0.98, res
  assert res['lse_c_true'] > res['lse_c_shuffled'], res
