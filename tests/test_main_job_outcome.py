"""The main job learns lip-sync: configs/tiny.py's training (its 1000 steps, no in-loop evaluation or periodic
samples), then audio_to_video samples of its EMA params on 16 held-out clips, read with the weight-free mouth and
envelope readers, held to the main job's targets (a2v r >= 0.8, shuffled-audio |r| <= 0.15).

Slow (about 6 minutes on 2 cores); `.ci/run` runs it. Seeded: the same run every time.
"""

import os

import numpy as np
import pytest

from avdiff import sampling
from avdiff.data import builders
from avdiff.eval import outcomes
from avdiff.train.tasks import DiffusionTask
from avdiff.train import loop
from configs import tiny

STEPS = int(os.environ.get('AVDIFF_OUTCOME_STEPS', str(tiny.get_config().train.steps)))
CLIPS = 16


def reduced_main_job(data_dir: str):
  c = tiny.get_config()
  c.data.data_dir = data_dir
  c.train.steps = STEPS
  c.train.eval_every = 0
  c.train.eval_samples = False
  c.train.sample_every = 0
  c.train.checkpoint_every = STEPS
  return c


@pytest.mark.slow
def test_reduced_main_job_learns_audio_to_video_sync(tmp_path):
  config = reduced_main_job(str(tmp_path / 'data'))
  workdir = str(tmp_path / 'run')
  loop.train(config, workdir, DiffusionTask(config), progress=False)
  held_out = builders.load_clips(config, 'test', CLIPS)
  sampled = sampling.sample_clips(sampling.load_model(workdir, config), held_out, 'audio_to_video', seed=0)
  m = outcomes.measure(held_out, {'audio_to_video': sampled}, config.data)
  r, shuffled = m['a2v_r']['mean'], m['a2v_shuffled_r']['mean']
  print(f'audio_to_video r = {r:.3f} (shuffled audio: {shuffled:.3f}) after {STEPS} steps')
  assert m['mouth_reader_r'] >= 0.95, m  # The reader itself is right on these clips.
  assert r >= 0.8 and abs(shuffled) <= 0.15, m
  assert np.isfinite(m['a2v_r']['std'])
