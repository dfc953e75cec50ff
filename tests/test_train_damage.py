"""A damaged newest checkpoint (a truncated data file, as a bad copy, a full bucket or bit rot leaves it) costs only
the steps since the one before: training moves it aside and resumes from the previous checkpoint with the losses
of an uninterrupted run; sampling and evaluation read the previous one; with none readable the error lists them."""

import os
import subprocess
import tempfile
import threading
import time

import pytest

import train_toy
from avdiff import checkpoint
from avdiff import sampling
from avdiff.train import loop
from avdiff.train import metrics as metrics_lib
from avdiff.train.tasks import DiffusionTask

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
RUN = {'train.checkpoint_every': 2, 'train.keep_checkpoints': 3}


def _train(workdir, steps):
  config = train_toy.config(DATA_DIR, **RUN, **{'train.steps': steps})
  return loop.train(config, workdir, DiffusionTask(config), progress=False)


def _losses(workdir):
  return {r['step']: r['loss'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r}


def _damage(workdir, step):
  """Truncates every data file of checkpoint `step` to an eighth of its size. (Which arrays one file holds depends
  on how TensorStore packed them; damaging all of them makes both the full restore of training and the partial
  EMA-params restore of sampling fail.)"""
  root = os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step))
  data = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if os.path.basename(d) == 'd']
  assert data, f'no data files under {root}'
  for path in data:
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 8)


def _steps(workdir):
  return [int(n) for n in os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)) if n.isdigit()]


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  _train(workdir, 8)
  return _losses(workdir)


def test_training_resumes_from_the_checkpoint_before_a_damaged_one(tmp_path, reference, caplog):
  workdir = str(tmp_path)
  _train(workdir, 6)
  _damage(workdir, 6)
  result = _train(workdir, 8)
  assert result['step'] == 8
  # Moved aside, never deleted; the warning names it.
  assert os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, '6' + checkpoint.CORRUPT_SUFFIX))
  assert any('Checkpoint step 6 cannot be read' in r.getMessage() for r in caplog.records)
  # Steps 5..8 were trained again from step 4's state and data position: the losses of an uninterrupted run.
  losses = _losses(workdir)
  assert [losses[s] for s in range(5, 9)] == [reference[s] for s in range(5, 9)]
  assert sorted(_steps(workdir)) == [4, 6, 8]


def test_readers_use_the_newest_readable_checkpoint(tmp_path, caplog):
  workdir = str(tmp_path)
  _train(workdir, 4)
  _damage(workdir, 4)
  model = sampling.load_model(workdir)
  assert model.step == 2
  assert any('step 4' in r.getMessage() and 'using the one before' in r.getMessage() for r in caplog.records)
  assert sorted(_steps(workdir)) == [2, 4]  # Readers never move anything.


def test_no_readable_checkpoint_lists_what_was_tried(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, 4)
  _damage(workdir, 2)
  _damage(workdir, 4)
  with pytest.raises(checkpoint.NoReadableCheckpointError, match=r'(?s)step 4 .*step 2 '):
    _train(workdir, 6)
  names = os.listdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR))
  assert {'2.corrupt', '4.corrupt'} <= set(names)


# ----------------------------------------------------------------------------- a full disk

def _small_filesystem(path, megabytes):
  """A tmpfs of `megabytes` at path (needs root and mount); skips the test with the reason otherwise."""
  os.makedirs(path, exist_ok=True)
  proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={megabytes}M', 'tmpfs', str(path)],
                        capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    pytest.skip(f'cannot mount a small tmpfs here ({proc.stderr.strip() or proc.returncode}); '
                'test_failed_write_is_reported_plainly simulates the error instead')


def _fill_after_first_checkpoint(root, workdir, stop):
  """Waits for the first finished checkpoint under workdir, then fills the filesystem at root to its last 64 KiB
  (one file), so the next checkpoint cannot be written. Filling the disk at a moment, rather than sizing it, keeps
  the test independent of what a checkpoint takes, which varies with the Orbax/TensorStore version, the number of
  devices and how TensorStore packs the files (1.1 to 4.2 MiB for this model, measured)."""
  checkpoints = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
  while not stop.is_set():
    # Orbax writes <step>.orbax-checkpoint-tmp and renames it to <step> when the checkpoint is finished.
    if os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints)):
      with open(os.path.join(root, 'ballast'), 'wb') as f:
        free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
        os.posix_fallocate(f.fileno(), 0, max(free - 2**16, 1))
      return
    time.sleep(0.005)


def test_full_disk_stops_with_a_plain_message_and_keeps_the_checkpoints(tmp_path):
  root = tmp_path / 'small'
  _small_filesystem(root, 64)
  workdir = str(root / 'run')
  stop = threading.Event()
  filler = threading.Thread(target=_fill_after_first_checkpoint, args=(str(root), workdir, stop), daemon=True)
  filler.start()
  try:
    config = train_toy.config(DATA_DIR, **{'train.checkpoint_every': 2, 'train.keep_checkpoints': 20,
                                           'train.steps': 40})
    with pytest.raises(checkpoint.CheckpointWriteError) as err:
      loop.train(config, workdir, DiffusionTask(config), progress=False)
    message = str(err.value)
    assert 'no space left on device' in message and workdir in message
    assert 'MiB' in message and 'rerun the same command' in message
    latest = checkpoint.latest_step(workdir)
    assert latest is not None and f'Step {latest} ' in message
    assert sampling.load_model(workdir, config).step == latest  # The last finished checkpoint reads whole.
  finally:
    stop.set()
    filler.join()
    subprocess.run(['umount', '-l', str(root)], check=False)  # Lazy: a writer thread may still hold a file.


def test_failed_write_is_reported_plainly(tmp_path):
  """The same conversion on a simulated error (TensorStore's status text for ENOSPC), where no tmpfs can be made."""
  workdir = str(tmp_path)
  _train(workdir, 2)
  manager = checkpoint.make_manager(workdir)
  error = ValueError('RESOURCE_EXHAUSTED: Failed writing: "x": No space left on device [os_error_code="28"]')
  converted = checkpoint.as_write_error(error, manager)
  assert isinstance(converted, checkpoint.CheckpointWriteError)
  assert str(converted).startswith(f'Could not write to the run directory {workdir}: no space left on device. '
                                   'Step 2 and the ones before it are intact.')
  assert checkpoint.as_write_error(ValueError('some other failure'), manager) is None
  manager.close()
