"""The shared loop in-process on 8 fake devices: metrics, checkpoints, samples, resume, inference restore, clear
errors for a changed model and for NaN losses, and Orbax's atomic step directories."""

import json
import os
import tempfile

import jax
import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import checkpoint
from avdiff import sampling
from avdiff.train.tasks import DiffusionTask
from avdiff.train import loop, metrics as metrics_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
pytestmark = pytest.mark.slow  # Each run compiles a train step: ~20 s idle, minutes on a loaded 2-core box.
LOGGED = ('loss', 'loss_video', 'loss_audio', 'grad_norm', 'param_norm', 'update_norm', 'lr', 'clips_per_s',
          'tokens_per_s', 'tflops_per_device', 'mfu')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  config = train_toy.config(DATA_DIR, **{'train.steps': 4, 'train.checkpoint_every': 2, 'train.sample_every': 4,
                                         'train.peak_flops_per_device': 1e9})
  result = loop.train(config, workdir, DiffusionTask(config), progress=False)
  return workdir, config, result


def test_metrics_checkpoints_and_samples(run):
  workdir, _, result = run
  assert result['step'] == 4 and result['stopped'] == 'done'
  rows = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in rows] == [1, 2, 3, 4]
  for row in rows:
    for key in LOGGED:
      assert np.isfinite(row[key]), (key, row)
  assert rows[0]['lr'] == pytest.approx(1e-3)
  assert rows[-1]['clips_per_s'] > 0 and 0 < rows[-1]['mfu']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit()) == [2, 4]
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['width'] == 32
  for i in range(2):
    path = os.path.join(workdir, 'samples', '4', f'joint_{i}.mp4')
    assert os.path.getsize(path) > 0
  from avdiff.data import av_io
  video, audio, _ = av_io.read_video(os.path.join(workdir, 'samples', '4', 'joint_0.mp4'))
  assert video.shape[1:] == (32, 32, 3) and audio.size > 0


def test_resume_continues_and_inference_restore(run):
  workdir, config, _ = run
  config = config.copy_and_resolve_references()
  config.train.steps = 6
  result = loop.train(config, workdir, DiffusionTask(config), progress=False)
  assert result['step'] == 6
  assert [r['step'] for r in metrics_lib.read_metrics(workdir)] == [1, 2, 3, 4, 5, 6]
  model = sampling.load_model(workdir)
  restored_config, dit = model.config, model.dit
  assert restored_config.model.video_patch == (2, 8, 8) and restored_config.train.steps == 6
  # EMA and raw params of the last checkpoint differ (ema_decay < 1 after 6 updates) and both load.
  ema = _param_leaves(dit)
  raw = _param_leaves(sampling.load_model(workdir, restored_config, params='raw').dit)
  assert len(ema) == len(raw) and any(not np.allclose(a, b) for a, b in zip(ema, raw))


def _param_leaves(module):
  return [np.asarray(x) for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(module, nnx.Param)))]


def test_changed_shapes_raise_a_clear_error(run):
  workdir, config, _ = run
  config = config.copy_and_resolve_references()
  config.model.width = 64
  with pytest.raises(checkpoint.ShapeMismatchError, match=r'(?s)other shapes.*model\.width: 32 -> 64'):
    loop.train(config, workdir, DiffusionTask(config), progress=False)


def test_nan_loss_stops_naming_the_step(tmp_path):
  workdir = str(tmp_path)
  # lr 1e30: step 1 leaves parameters around 1e27, so step 2's loss overflows.
  config = train_toy.config(DATA_DIR, **{'train.steps': 6, 'train.checkpoint_every': 1,
                                         'train.learning_rate': 1e30, 'train.grad_clip_norm': 0.0})
  with pytest.raises(loop.NonFiniteLossError, match=r'at step (\d+).*last good checkpoint: step') as err:
    loop.train(config, workdir, DiffusionTask(config), progress=False)
  bad = int(err.value.args[0].split('at step ')[1].split()[0].rstrip(';'))
  good = checkpoint.latest_step(workdir)
  assert good == bad - 1
  rows = metrics_lib.read_metrics(workdir)
  assert all(np.isfinite(r['loss']) for r in rows) and rows[-1]['step'] == good
