"""A run that lives on a bucket, end to end against the GCS emulator (tests/gcs_emulator.py), with the real command
lines in child processes: `experiments.train --workdir=gs://...` killed with -9 and resumed gives the losses of an
uninterrupted run; a damaged newest checkpoint on the bucket is moved aside and training resumes from the one
before; then sample, evaluate and compare read and write the same gs:// run, and a sweep (experiments.ablate) runs
with a gs:// workdir."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from etils import epath

import train_toy
from avdiff import checkpoint
from avdiff import run_dir
from avdiff.eval import results
from avdiff.eval import workdir
from avdiff.train import metrics as metrics_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
pytestmark = pytest.mark.slow

# keep_checkpoints=3 keeps the step before the newest one (the fallback after damage).
RUN = {'train.checkpoint_every': 4, 'train.keep_checkpoints': 3}


def _check(proc):
  assert proc.returncode == 0, proc.stderr[-4000:]


def _losses(workdir):
  return {r['step']: r['loss'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r}


def _files(path: epath.Path):
  """Every object under a bucket prefix (epath has no recursive glob on gs://)."""
  for child in path.iterdir():
    if child.is_dir():
      yield from _files(child)
    else:
      yield child


def _damage(workdir, step):
  """Truncates every data file of checkpoint `step` to an eighth (as tests/test_train_damage.py does locally)."""
  root = epath.Path(run_dir.RunDir(workdir).checkpoints) / str(step)
  data = [p for p in _files(root) if p.parent.name == 'd']
  assert data, f'no data files under {root}'
  for path in data:
    content = path.read_bytes()
    path.write_bytes(content[:len(content) // 8])


def _steps(workdir):
  return sorted(p.name for p in epath.Path(run_dir.RunDir(workdir).checkpoints).iterdir())


def test_train_kill_resume_damage_sample_evaluate_compare_on_a_bucket(gcs_bucket, tmp_path):
  ref, run = f'{gcs_bucket}/ref', f'{gcs_bucket}/run'
  _check(train_toy.run(train_toy.train_command(ref, DATA_DIR, **RUN, **{'train.steps': 28})))

  # kill -9 after the first checkpoint on the bucket, then the same command resumes.
  command = train_toy.train_command(run, DATA_DIR, **RUN, **{'train.steps': 24})
  proc = subprocess.Popen(command, cwd=train_toy.REPO, env=train_toy.env(1), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 600
  while proc.poll() is None and (checkpoint.latest_step(run) or 0) < 4 and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed_from = checkpoint.latest_step(run)
  assert resumed_from is not None
  _check(train_toy.run(command))
  reference, losses = _losses(ref), _losses(run)
  assert sorted(losses) == list(range(1, 25))
  assert [losses[s] for s in range(1, 25)] == [reference[s] for s in range(1, 25)]  # Bitwise, as on a local disk.

  # A damaged newest checkpoint: moved aside on the bucket, training goes on from the one before.
  _damage(run, 24)
  resumed = train_toy.run(train_toy.train_command(run, DATA_DIR, **RUN, **{'train.steps': 28}))
  _check(resumed)
  assert 'Checkpoint step 24 cannot be read' in resumed.stderr
  assert '24' + checkpoint.CORRUPT_SUFFIX in _steps(run)
  losses = _losses(run)
  assert [losses[s] for s in range(21, 29)] == [reference[s] for s in range(21, 29)]

  # Sampling writes mp4s (PyAV needs a local file: staged, then copied up).
  sampled = train_toy.run([sys.executable, '-m', 'experiments.sample', f'--workdir={run}', '--mode=joint', '--num=2'])
  _check(sampled)
  assert {p.name for p in run_dir.RunDir(run).samples(28).iterdir()} == {'joint_0.mp4', 'joint_1.mp4'}
  assert run_dir.RunDir(run).samples(28).joinpath('joint_0.mp4').stat().length > 1000

  # Evaluation: eval/test.json and .md and the report (html, png, mp4) on the bucket.
  config = checkpoint.load_config(run)
  config.eval.fvd = False
  config.eval.bootstrap_samples = 20
  config.eval.split, config.eval.num_clips = 'test', 4
  evaluation = workdir.evaluate_workdir(run, config)
  results.write_workdir(run_dir.RunDir(run), evaluation, config)
  result = evaluation.result
  assert result['protocol']['workdir'] == run
  assert result['report'] == f'{run}/report/index.html'
  rundir = run_dir.RunDir(run)
  assert rundir.eval_json('test').exists() and rundir.eval_md('test').exists()
  assert (rundir.report / 'clips').exists() and (rundir.report / 'index.html').exists()

  # Compare reads the bucket run and writes its page to the bucket.
  out = f'{gcs_bucket}/compare'
  _check(train_toy.run([sys.executable, '-m', 'experiments.compare', run, f'--out={out}']))
  assert {'comparison.md', 'comparison.csv', 'index.html'} <= {p.name for p in epath.Path(out).iterdir()}
  assert 'run' in (epath.Path(out) / 'comparison.md').read_text()


def test_ablate_with_a_bucket_workdir(gcs_bucket, tmp_path):
  overrides = dict(train_toy.OVERRIDES)
  overrides.update({'train.steps': 2, 'eval.num_clips': 4, 'eval.fvd': False, 'eval.bootstrap_samples': 20,
                    'data.data_dir': DATA_DIR})
  sweep_file = tmp_path / 'one.py'
  sweep_file.write_text('def get_sweep():\n'
                        f"  return {{'base': 'configs/tiny.py', 'seeds': (0,), 'overrides': {overrides!r},\n"
                        "          'members': {'joint': {}}}\n")
  workdir = f'{gcs_bucket}/sweep'
  _check(train_toy.run([sys.executable, '-m', 'experiments.ablate', f'--sweep={sweep_file}', f'--workdir={workdir}']))
  member = run_dir.RunDir(f'{workdir}/joint/seed0')
  assert member.has_config() and member.eval_json('test').exists()
  assert (member.report / 'clips' / 'model_audio_to_video_0.mp4').exists()
  report = epath.Path(workdir) / 'report'
  assert {'comparison.md', 'index.html'} <= {p.name for p in report.iterdir()}
