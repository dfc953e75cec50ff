"""Sync expert on the built-in `talking` data: trained contrastively by the training loop (per-clip mouth boxes) on
CPU, it recovers known audio shifts.

Training clips are the TFDS `talking` train split built in a temporary directory; held-out clips come straight
from avdiff.data.synthetic with seeds 100000.. (disjoint from the built splits by construction). The fast test
trains a small expert for 80 steps; the slow one trains through the experiment's entry function on a fixed crop.
The tiny config's own expert (its sizes, 600 steps: ~6 minutes on 2 cores) is left to
`python -m experiments.train_sync_expert --config=configs/tiny.py --workdir=W`, which prints its shift recovery.
"""

import numpy as np
import pytest

from avdiff.data import audio as audio_lib
from avdiff.data import synthetic
from avdiff.eval import scoring
from avdiff.eval import sync_expert as se_lib
from avdiff.train import loop
from avdiff.train import metrics as metrics_lib
from avdiff.train.tasks import sync_expert
from configs import tiny

HELD_OUT_SEED = 100_000


def _clips(config, seeds):
  out = []
  for s in seeds:
    c = synthetic.talking_clip(s, config.data)
    c['audio_mel'] = audio_lib.log_mel(c['audio'], config.data)
    out.append(c)
  return out


def _config(tmp_path, num_train, steps, small=True):
  config = tiny.get_config()
  d, se = config.data, config.eval.sync_expert
  d.data_dir = str(tmp_path / 'tfds')
  d.num_train, d.num_validation, d.num_test = num_train, 8, 8
  se.steps = steps
  if small:
    se.width, se.embed_dim, se.batch_size = 16, 64, 8
  config.mesh.shape.data = -1
  return config


def _check(config, workdir, num_held_out):
  cfg = sync_expert.stage_config(config)
  loop.train(cfg, workdir, sync_expert.SyncExpertTask(cfg), progress=False)
  hist = metrics_lib.read_metrics(workdir)
  assert hist[-1]['loss'] < hist[0]['loss']
  scorer = scoring.load_scorer(workdir, config)
  assert not scorer.crop_box  # Trained on each clip's own mouth box, so it scores with each clip's box.
  held_out = _clips(config, range(HELD_OUT_SEED, HELD_OUT_SEED + num_held_out))
  res = scoring.shift_recovery(scorer, config, clips=held_out, max_shift=5)
  # Known answer: audio shifted by k in -5..5 frames -> offset k.
  assert res['exact'] >= 0.9 and res['within_one'] >= 0.98, res
  # True audio is closer (LSE-D) and more confidently synced (LSE-C) than audio of another clip.
  assert res['lse_c_true'] > res['lse_c_shuffled'] + 0.2, res
  assert res['lse_d_true'] < res['lse_d_shuffled'] - 0.2, res
  # The checkpoint's EMA expert is what evaluation scores with: loading it again scores identically.
  again = scoring.shift_recovery(se_lib.load(workdir), config, clips=held_out[:2], max_shift=1)
  assert again == pytest.approx(scoring.shift_recovery(scorer, config, clips=held_out[:2], max_shift=1))
  return res


def test_small_expert_recovers_shifts(tmp_path):
  config = _config(tmp_path, num_train=48, steps=80)
  _check(config, str(tmp_path / 'expert'), num_held_out=16)


@pytest.mark.slow
def test_train_and_check_with_fixed_crop(tmp_path):
  """Real clips with one known mouth region (eval.crop_box): the expert trains and scores on that crop."""
  config = _config(tmp_path, num_train=64, steps=150)
  boxes = np.stack([c['mouth_box'] for c in _clips(config, range(64))])
  config.eval.crop_box = (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()),
                          int(boxes[:, 3].max()))
  workdir = str(tmp_path / 'sync_expert')
  res = sync_expert.train_and_check(config, workdir, check_clips=8, progress=False)['shift_recovery']
  assert scoring.load_scorer(workdir, config).crop_box == tuple(config.eval.crop_box)
  assert res['exact'] >= 0.9 and res['within_one'] >= 0.98, res
  assert res['lse_c_true'] > res['lse_c_shuffled'], res
  # Rerunning the same command resumes: nothing left to train.
  again = sync_expert.train_and_check(config, workdir, check_clips=8, progress=False)
  assert again['train']['step'] == config.eval.sync_expert.steps
