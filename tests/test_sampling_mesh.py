"""Sampling at the size that trains: a run's params restored straight into their training shardings on the mesh
(FSDP, context), sampled there, the same clips as on one device; the sample command over 2 processes on localhost,
and in-loop sample scoring in a 2-process training run (both slow)."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import checkpoint
from avdiff import long_clips
from avdiff import parallel
from avdiff import sampling
from avdiff.data import av_io
from avdiff.data import builders
from avdiff.train import loop
from avdiff.train import metrics as metrics_lib
from avdiff.train.tasks import DiffusionTask


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  """A toy run trained 2 steps on one device (the checkpoint does not know the mesh it was written from)."""
  root = tmp_path_factory.mktemp('mesh_run')
  config = train_toy.config(str(root / 'data'), **{'train.steps': 2, 'train.checkpoint_every': 2})
  config.mesh.shape.data = 1
  workdir = str(root / 'run')
  loop.train(config, workdir, DiffusionTask(config), mesh=parallel.make_mesh(config.mesh, jax.devices()[:1]),
             progress=False)
  return workdir, config


def _mesh(config, **shape):
  c = config.copy_and_resolve_references()
  c.mesh.shape.update(shape)
  return c, parallel.make_mesh(c.mesh)


@pytest.mark.parametrize('shape', [dict(data=2, fsdp=4), dict(data=2, fsdp=2, context=2)])
def test_params_restore_into_their_shardings_and_sample_as_on_one_device(run, shape):
  workdir, config = run
  config, mesh = _mesh(config, **shape)
  one = sampling.load_model(workdir, config)
  on_mesh = sampling.load_model(workdir, config, mesh=mesh)
  assert on_mesh.step == one.step == 2
  leaves = jax.tree.leaves(jax.tree.map(lambda p: p.sharding, nnx.state(on_mesh.dit, nnx.Param)))
  assert all(s.mesh.shape == mesh.shape for s in leaves)
  split = [s for s in leaves if 'fsdp' in str(s.spec)]
  assert split, 'no parameter is split over fsdp'  # Each device holds 1 / fsdp of them, not the whole model.
  clips = builders.load_clips(config, 'test', 2)
  a = sampling.sample_clips(one, clips, 'audio_to_video', seed=0)
  b = sampling.sample_clips(on_mesh, clips, 'audio_to_video', seed=0)
  for x, y in zip(a, b):  # The same program up to the order of float sums: frames within one uint8 level.
    assert np.abs(x['video'].astype(int) - y['video'].astype(int)).max() <= 1
  long_one = long_clips.generate(one, [{'audio': np.concatenate([c['audio'] for c in clips])}], overlap_seconds=0.2)
  long_mesh = long_clips.generate(on_mesh, [{'audio': np.concatenate([c['audio'] for c in clips])}],
                                  overlap_seconds=0.2)
  assert np.abs(long_one[0]['video'].astype(int) - long_mesh[0]['video'].astype(int)).max() <= 1


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_dir(path, workdir, config):
  """A run directory with `workdir`'s checkpoints and `config` (its mesh) as its config.json."""
  path.mkdir()
  os.symlink(os.path.join(workdir, 'checkpoints'), path / 'checkpoints')
  (path / 'config.json').write_text(checkpoint.config_to_json(config))
  return path


def _frames(workdir):
  return [av_io.read_video(str(f))[0] for f in sorted((workdir / 'samples' / '2').glob('*.mp4'))]


def _two_processes(args, devices=1, timeout=900):
  """Runs `python -m args...` as 2 processes x `devices` fake devices on localhost; returns their outputs."""
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, '-m', *args, f'--coordinator_address=localhost:{port}',
                             '--num_processes=2', f'--process_id={i}'],
                            cwd=train_toy.REPO, env=train_toy.env(devices), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = [p.communicate(timeout=timeout)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  return outs


@pytest.mark.slow
def test_sample_command_on_two_processes_writes_what_one_process_does(run, tmp_path):
  """experiments.sample on 2 processes x 1 device (params split over both: fsdp=2 across processes, gloo) and on
  one process with 2 devices (the same mesh): process 0 writes the same clips. experiments.evaluate on 2 processes
  writes one result."""
  workdir, config = run
  config = config.copy_and_resolve_references()
  config.mesh.shape.update(data=1, fsdp=2)
  two, one = _run_dir(tmp_path / 'two', workdir, config), _run_dir(tmp_path / 'one', workdir, config)
  sample = ['experiments.sample', '--mode=audio_to_video', '--num=2']
  _two_processes(sample + [f'--workdir={two}'])
  proc = train_toy.run([sys.executable, '-m', *sample, f'--workdir={one}'], num_devices=2)
  assert proc.returncode == 0, proc.stderr[-4000:]
  a, b = _frames(two), _frames(one)
  assert len(a) == len(b) == 2
  for x, y in zip(a, b):
    assert np.abs(x.astype(int) - y.astype(int)).mean() < 1.0
  _two_processes(['experiments.evaluate', f'--workdir={two}', '--num_clips=4', '--config.eval.fvd=False',
                  '--config.eval.bootstrap_samples=20'])
  result = json.loads((two / 'eval' / 'test.json').read_text())
  assert 'unavailable' not in result['conditions']['model_audio_to_video'], result['conditions']


@pytest.mark.slow
def test_in_loop_sample_scores_on_two_processes(tmp_path):
  """Training over 2 processes x 2 devices with params split over fsdp=2 scores EMA samples at its eval step, as one
  process does."""
  workdir = str(tmp_path / 'run')
  overrides = {'data.clip_seconds': 2.0, 'train.steps': 2, 'train.eval_every': 2, 'train.eval_clips': 2,
               'train.eval_samples': True, 'mesh.shape.fsdp': 2}
  _two_processes(train_toy.train_command(workdir, str(tmp_path / 'data'), **overrides)[2:], devices=2)
  logged = {r['step']: r for r in metrics_lib.read_metrics(workdir)}[2]
  for cond in ('ground_truth', 'model_joint', 'model_audio_to_video'):
    assert 0.0 <= logged[f'eval/{cond}/av_align'] <= 1.0, sorted(logged)
