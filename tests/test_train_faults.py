"""Fault tolerance end to end with the real command line in child processes: kill -9 + resume gives bitwise the
losses of an uninterrupted run, and two processes (jax.distributed, gloo) train, checkpoint and resume with the
losses of one process. (SIGTERM, a preemption, is tested in tests/test_train_lease.py.)"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np
import pytest

import train_toy
from avdiff import checkpoint
from avdiff.train import metrics as metrics_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
pytestmark = pytest.mark.slow


def _losses(workdir):
  return {r['step']: r['loss'] for r in metrics_lib.read_metrics(workdir)}


def _check(proc):
  assert proc.returncode == 0, proc.stderr[-4000:]


def _wait_for(predicate, proc, timeout=600.0):
  start = time.time()
  while time.time() - start < timeout:
    if predicate():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.05)
  return False


def test_kill_9_then_resume_is_bitwise_identical(tmp_path):
  steps = {'train.steps': 24, 'train.checkpoint_every': 4}
  ref, run = str(tmp_path / 'ref'), str(tmp_path / 'run')
  _check(train_toy.run(train_toy.train_command(ref, DATA_DIR, **steps)))
  proc = subprocess.Popen(train_toy.train_command(run, DATA_DIR, **steps), cwd=train_toy.REPO, env=train_toy.env(1),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  assert _wait_for(lambda: (checkpoint.latest_step(run) or 0) >= 8, proc), 'no checkpoint before the run ended'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed_from = checkpoint.latest_step(run)
  assert resumed_from is not None and resumed_from < 24
  _check(train_toy.run(train_toy.train_command(run, DATA_DIR, **steps)))
  a, b = _losses(ref), _losses(run)
  assert sorted(b) == list(range(1, 25))
  after = [s for s in range(resumed_from + 1, 25)]
  assert after and [b[s] for s in after] == [a[s] for s in after]  # Bitwise (JSON keeps the float32 exactly).
  assert [b[s] for s in range(1, resumed_from + 1)] == [a[s] for s in range(1, resumed_from + 1)]


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _two_processes(workdir, **overrides):
  port = _free_port()
  procs = [subprocess.Popen(
      train_toy.train_command(workdir, DATA_DIR, f'--coordinator_address=localhost:{port}', '--num_processes=2',
                              f'--process_id={i}', **overrides),
      cwd=train_toy.REPO, env=train_toy.env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]


RUN = {'train.checkpoint_every': 2}


@pytest.fixture(scope='module')
def two_process_runs(tmp_path_factory):
  """The shared runs of the two tests below: one process with 4 devices for 6 steps, and 2 processes x 2 devices
  (the same 4-device mesh and global batch) for 4 steps, checkpointing every 2."""
  root = tmp_path_factory.mktemp('two_processes')
  single, multi = str(root / 'single'), str(root / 'multi')
  _check(train_toy.run(train_toy.train_command(single, DATA_DIR, **RUN, **{'train.steps': 6}), num_devices=4))
  _two_processes(multi, **RUN, **{'train.steps': 4})
  assert checkpoint.latest_step(multi) == 4
  return single, multi


def test_two_processes_match_one_process(two_process_runs, tmp_path):
  single, multi = two_process_runs
  resumed = str(tmp_path / 'multi')
  shutil.copytree(multi, resumed)
  _two_processes(resumed, **RUN, **{'train.steps': 6})  # Resumes from the 2-process checkpoint at step 4.
  a, b = _losses(single), _losses(resumed)
  assert sorted(b) == list(range(1, 7))
  # Same devices, same shardings, same programs: only the transport of cross-process collectives differs (gloo),
  # which sums in another order, so allow float32 rounding noise.
  np.testing.assert_allclose([b[s] for s in range(1, 7)], [a[s] for s in range(1, 7)], rtol=1e-5)


def test_two_processes_resume_as_one(two_process_runs, tmp_path):
  """Elastic resume across process counts: 2 processes x 2 devices save at step 4, one process with 4 devices
  continues; the data position is a global batch index, so steps 5-6 see the batches an unchanged run sees."""
  single, multi = two_process_runs
  elastic = str(tmp_path / 'elastic')
  shutil.copytree(multi, elastic)
  _check(train_toy.run(train_toy.train_command(elastic, DATA_DIR, **RUN, **{'train.steps': 6}), num_devices=4))
  a, b = _losses(single), _losses(elastic)
  assert sorted(b) == list(range(1, 7))
  np.testing.assert_allclose([b[s] for s in range(1, 7)], [a[s] for s in range(1, 7)], rtol=1e-5)
