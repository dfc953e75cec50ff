"""The training loop scores EMA-model samples with the in-loop evaluator at eval steps (train.eval_samples)."""

import pytest

import train_toy
from avdiff import config_lib
from avdiff.train import loop, metrics as metrics_lib
from avdiff.train.tasks import DiffusionTask


def test_eval_samples_needs_eval_every(tmp_path):
  cfg = train_toy.config(str(tmp_path), **{'train.eval_samples': True, 'train.eval_every': 0})
  with pytest.raises(config_lib.ConfigError, match='train.eval_samples'):
    config_lib.validate(cfg)
  cfg.train.eval_every = 2
  config_lib.validate(cfg, num_processes=2)  # Every process samples and scores on the training mesh.


@pytest.mark.slow
def test_loop_logs_sync_metrics_of_samples(tmp_path):
  cfg = train_toy.config(str(tmp_path / 'data'), **{
      'data.clip_seconds': 2.0, 'train.steps': 2, 'train.eval_every': 2, 'train.eval_clips': 2,
      'train.eval_samples': True})
  workdir = str(tmp_path / 'run')
  loop.train(cfg, workdir, DiffusionTask(cfg), progress=False)
  rows = {r['step']: r for r in metrics_lib.read_metrics(workdir)}
  logged = rows[2]
  for cond in ('ground_truth', 'model_joint', 'model_audio_to_video', 'model_video_to_audio'):
    assert 0.0 <= logged[f'eval/{cond}/av_align'] <= 1.0, sorted(logged)
  for cond in ('model_joint', 'model_audio_to_video'):  # Two steps of training: samples far from the truth.
    assert logged[f'eval/{cond}/fd'] > 0.0
  # Every sampled mode's outcome measure, so a run that syncs in one direction only shows it in the loop.
  assert all(k in logged for k in ('eval/a2v_r', 'eval/joint_r', 'eval/v2a_r')), sorted(logged)
  # Ground-truth talking clips are in sync: the weight-free envelope-motion offset is exactly zero.
  assert logged['eval/ground_truth/abs_offset_frames'] == 0.0
  assert 'val_loss' in logged and 'loss' in logged
  assert 'eval/model_joint/av_align' not in rows.get(1, {})
