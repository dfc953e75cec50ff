"""One trainer per run directory, end to end with the real command line: the same command started a second time on a
workdir whose trainer still runs exits with status 2 and one `error:` line naming the holder, touching nothing;
the first trainer goes on, logs every step once, leaves intact checkpoints and releases the lease when it exits
(on SIGTERM, a preemption: it saves and exits 0, and the same command resumes from that checkpoint).
All processes of a multi-process job stop together when the workdir is held."""

import glob
import os
import signal
import socket
import subprocess
import tempfile

import pytest

import train_toy
from test_train_faults import _check, _wait_for  # pylint: disable=g-bad-import-order
from avdiff import checkpoint
from avdiff import lease as lease_lib
from avdiff import sampling
from avdiff.train import metrics as metrics_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


def _two_trainers(workdir: str, checkpoint_every: int):
  """Starts a long trainer on workdir, then the same command again once the first logs; stops the first with
  SIGTERM (a preemption: save, release, exit 0) after the second has been refused. Returns (first process, its
  stderr, the second's CompletedProcess)."""
  # Many steps, so the first trainer still runs however long the second takes to start on a busy machine.
  command = train_toy.train_command(workdir, DATA_DIR, **{'train.steps': 100_000,
                                                          'train.checkpoint_every': checkpoint_every})
  first = subprocess.Popen(command, cwd=train_toy.REPO, env=train_toy.env(1), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  try:
    # On a bucket metrics.jsonl is rewritten at each checkpoint: rows show the trainer is running either way.
    assert _wait_for(lambda: len(metrics_lib.read_metrics(workdir)) >= 2, first), 'the first trainer did not start'
    second = train_toy.run(command, timeout=300)
    assert first.poll() is None, 'the first trainer ended before the second was refused'
  finally:
    first.send_signal(signal.SIGTERM)
    _, first_err = first.communicate(timeout=300)
  return first, first_err, second


@pytest.mark.slow  # ~2 min: the first trainer compiles and runs while the second starts; then a resume.
def test_second_trainer_on_a_running_workdir_is_refused(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  first, first_err, second = _two_trainers(workdir, checkpoint_every=50)
  # The second: status 2, exactly one line, naming the holder and what to do.
  assert second.returncode == 2, second.stderr[-3000:]
  errors = [line for line in second.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, second.stderr[-3000:]
  assert f'host {socket.gethostname()}, pid {first.pid}' in errors[0]
  assert 'running since' in errors[0] and 'last renewed' in errors[0] and 'train.lease_timeout_s' in errors[0]
  assert 'Traceback' not in second.stderr

  # The first: a clean preempted exit, every step logged once, its checkpoint readable, the lease released.
  assert first.returncode == 0, first_err[-3000:]
  steps = [r['step'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r]
  assert steps == list(range(1, len(steps) + 1))
  saved = checkpoint.latest_step(workdir)
  assert saved == steps[-1]
  assert sampling.load_model(workdir).step == saved
  assert not any('cannot be read' in r.getMessage() for r in caplog.records)
  assert not glob.glob(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, '*' + checkpoint.CORRUPT_SUFFIX))
  assert len(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))) == 1  # The second opened no writer.
  assert not os.path.exists(os.path.join(workdir, lease_lib.LEASE_FILE))
  # SIGTERM is a preemption: the first saved at the step it had reached, said why, and the same command resumes.
  assert 'Preemption requested' in first_err
  _check(train_toy.run(train_toy.train_command(workdir, DATA_DIR, **{'train.steps': saved + 2})))
  assert max(r['step'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r) == saved + 2


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_every_process_of_a_job_stops_on_refusal(tmp_path):
  """Two processes (jax.distributed) on a held workdir: process 0 is refused and tells process 1, so both exit with
  status 2 and the holder's name instead of process 1 waiting in a collective."""
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(['sleep', '300'])
  try:
    lease_lib.Lease(workdir, 120.0, pid=holder.pid).acquire()
    port = _free_port()
    procs = [subprocess.Popen(
        train_toy.train_command(workdir, DATA_DIR, f'--coordinator_address=localhost:{port}', '--num_processes=2',
                                f'--process_id={i}'),
        cwd=train_toy.REPO, env=train_toy.env(2), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
  finally:
    holder.kill()
    holder.wait()
  for p, err in zip(procs, errs):
    assert p.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and f'pid {holder.pid}' in errors[0], err[-3000:]
  assert os.listdir(workdir) == [lease_lib.LEASE_FILE]


@pytest.mark.slow  # ~2 min: as the local test, with the run directory on an emulated GCS bucket.
def test_second_trainer_on_a_running_bucket_workdir_is_refused(gcs_bucket):
  from etils import epath  # pylint: disable=g-import-not-at-top
  workdir = f'{gcs_bucket}/run'
  first, first_err, second = _two_trainers(workdir, checkpoint_every=20)
  assert second.returncode == 2, second.stderr[-3000:]
  errors = [line for line in second.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and f'pid {first.pid}' in errors[0], second.stderr[-3000:]
  assert first.returncode == 0, first_err[-3000:]
  steps = [r['step'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r]
  assert steps == list(range(1, len(steps) + 1))
  assert checkpoint.latest_step(workdir) == steps[-1]
  assert not (epath.Path(workdir) / lease_lib.LEASE_FILE).exists()
