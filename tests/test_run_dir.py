"""RunDir, the one object for a run directory, on a local folder and on an emulated bucket (tests/gcs_emulator.py):
config.json, metrics.jsonl (appended locally, rewritten whole on a bucket), TensorBoard events, staged files and
the Orbax directory a gs:// workdir gets (the URI as is, never made into a local path)."""

import os

import pytest
from etils import epath

from avdiff import run_dir
from avdiff.train import metrics as metrics_lib


@pytest.fixture(params=['local', 'bucket'])
def workdir(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path / 'run')
  return request.getfixturevalue('gcs_bucket') + '/runs/tiny'


def test_paths_of_a_bucket_run_stay_uris():
  run = run_dir.RunDir('gs://b/runs/tiny')
  assert run.remote and str(run) == 'gs://b/runs/tiny' and run.name == 'tiny'
  assert run.checkpoints == 'gs://b/runs/tiny/checkpoints'
  assert str(run.samples(8)) == 'gs://b/runs/tiny/samples/8'
  assert str(run.eval_json('test')) == 'gs://b/runs/tiny/eval/test.json'
  local = run_dir.RunDir('runs/tiny')
  assert not local.remote and local.checkpoints == os.path.abspath('runs/tiny/checkpoints')


def test_config_files_and_staged_folders(workdir):
  run = run_dir.RunDir(workdir)
  assert not run.has_config()
  with pytest.raises(FileNotFoundError, match='is not a run directory'):
    run.read_config()
  run.mkdir()
  run.write_config('{"seed": 1}')
  assert run_dir.RunDir(workdir).read_config() == '{"seed": 1}'
  run.write_text('eval/test.json', '{}')
  assert run.eval_json('test').read_text() == '{}'
  with run.staged(run.report) as local:  # What PyAV / matplotlib need: a local folder.
    os.makedirs(os.path.join(local, 'clips'))
    with open(os.path.join(local, 'clips', 'a.mp4'), 'wb') as f:
      f.write(b'\x00video')
    with open(os.path.join(local, 'index.html'), 'w') as f:
      f.write('<html>')
  assert (run.report / 'clips' / 'a.mp4').read_bytes() == b'\x00video'
  assert (run.report / 'index.html').read_text() == '<html>'


def test_metrics_survive_a_resumed_writer(workdir):
  """Rows are in metrics.jsonl after flush (a bucket object is rewritten whole), a second writer (a resumed run)
  keeps the first one's rows, and TensorBoard event files sit beside them."""
  writer = metrics_lib.MetricWriter(workdir, flush_secs=3600)
  writer.write(1, {'loss': 0.5})
  writer.write(2, {'loss': float('nan')})
  writer.flush()
  assert [r['step'] for r in metrics_lib.read_metrics(workdir)] == [1, 2]
  writer.close()
  resumed = metrics_lib.MetricWriter(workdir, flush_secs=3600)
  resumed.write(2, {'loss': 0.25})
  resumed.write(3, {'loss': 0.125}, prefix='val')
  resumed.close()
  rows = metrics_lib.read_metrics(workdir)
  assert [(r['step'], r.get('loss')) for r in rows] == [(1, 0.5), (2, 0.25), (3, None)]
  assert rows[2]['val/loss'] == 0.125
  events = [p.name for p in epath.Path(workdir).iterdir() if p.name.startswith('events.out.tfevents')]
  assert events  # One per writer (two when they start in different seconds).
