"""User errors of the command-line tools print one line naming the field or path and exit with status 2; no
traceback (README 'Errors'). Each case runs the real tool in a subprocess."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=REPO):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                        env=env, check=False)


def _assert_user_error(proc, *needles):
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  errors = [line for line in lines if line.startswith('error: ')]
  assert len(errors) == 1 and len(lines) <= 3, proc.stderr[-2000:]
  for needle in needles:
    assert needle in errors[0], errors[0]


def test_misspelt_config_field(tmp_path):
  proc = _run('experiments.train', f'--workdir={tmp_path}', '--config.model.widht=64')
  _assert_user_error(proc, '--config.model.widht', 'width')


def test_invalid_config_value(tmp_path):
  proc = _run('experiments.train', f'--workdir={tmp_path}', '--config.model.width=abc')
  _assert_user_error(proc, 'model.width', 'abc')


def test_value_the_config_check_rejects(tmp_path):
  proc = _run('experiments.train', f'--workdir={tmp_path}', '--config.model.fusion=sideways')
  _assert_user_error(proc, 'fusion')


def test_workdir_in_use_by_another_trainer(tmp_path):
  """A live trainer (here a stand-in process) holds W: the same command stops before touching anything in W."""
  from avdiff import lease  # pylint: disable=g-import-not-at-top  (JAX: only this test needs it in-process)
  holder = subprocess.Popen(['sleep', '300'])
  try:
    lease.Lease(str(tmp_path), 120.0, pid=holder.pid).acquire()
    proc = _run('experiments.train', f'--workdir={tmp_path}')
  finally:
    holder.kill()
    holder.wait()
  _assert_user_error(proc, 'in use by another trainer', f'pid {holder.pid}', 'last renewed', 'lease.json')
  assert os.listdir(tmp_path) == [lease.LEASE_FILE]  # No config.json, checkpoints or metrics written.


def test_missing_workdir(tmp_path):
  proc = _run('experiments.evaluate', f'--workdir={tmp_path / "nowhere"}')
  _assert_user_error(proc, 'nowhere', 'not a run directory')


def test_foreign_workdir(tmp_path):
  (tmp_path / 'photos').mkdir()
  proc = _run('experiments.sample', f'--workdir={tmp_path / "photos"}')
  _assert_user_error(proc, 'photos', 'not a run directory')


def test_more_labels_than_the_model_has(tmp_path):
  proc = _run('experiments.train', f'--workdir={tmp_path}', '--config.data.num_speakers=9')
  _assert_user_error(proc, 'model.num_classes=8', 'data.num_speakers', '--config.model.num_classes=9')


def test_evaluate_workdir_with_a_config_file(tmp_path):
  from avdiff import checkpoint  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  (tmp_path / 'config.json').write_text(checkpoint.config_to_json(tiny.get_config()))
  proc = _run('experiments.evaluate', f'--workdir={tmp_path}', '--config=configs/tiny.py')
  _assert_user_error(proc, 'W/config.json', '--config.<section>.<field>=value')


def test_validation_split_smaller_than_one_eval_batch(tmp_path):
  proc = _run('experiments.train', f'--workdir={tmp_path / "run"}', f'--config.data.data_dir={tmp_path / "tfds"}',
              '--config.data.num_train=16', '--config.data.num_validation=2', '--config.data.num_test=2',
              '--config.train.eval_clips=8', '--config.train.global_batch_size=8')
  _assert_user_error(proc, "validation split of 'talking' has 2 clips", '--validation_fraction')
  assert not (tmp_path / 'run' / 'checkpoints').exists()  # Refused before anything was set up.


def test_empty_and_missing_clip_folders(tmp_path):
  (tmp_path / 'empty').mkdir()
  proc = _run('experiments.evaluate', f'--clips={tmp_path / "empty"}', f'--out={tmp_path / "s.json"}')
  _assert_user_error(proc, 'empty', 'no video files')
  proc = _run('experiments.evaluate', f'--clips={tmp_path / "absent"}', f'--out={tmp_path / "s.json"}')
  _assert_user_error(proc, 'absent', 'no such folder')


def test_flag_misuse():
  proc = _run('experiments.evaluate')
  _assert_user_error(proc, '--clips', '--workdir')
  proc = _run('experiments.compare', '--out=/tmp/x', '/nonexistent/run')
  _assert_user_error(proc, '/nonexistent/run')
  proc = _run('experiments.train', '--workdir=/tmp/x', 'model.av_time_bias=20')  # Without its --config.
  _assert_user_error(proc, "unexpected argument 'model.av_time_bias=20'", '--config.<section>.<field>=value')


def test_missing_optional_dependency(tmp_path):
  if importlib.util.find_spec('torch') is not None:
    pytest.skip('torch is installed here, so its absence cannot be shown')
  clip_dir = tmp_path / 'clips'
  clip_dir.mkdir()
  (clip_dir / 'a.mp4').write_bytes(b'')
  proc = _run('experiments.evaluate', f'--clips={clip_dir}', f'--out={tmp_path / "s.json"}',
              f'--syncnet={tmp_path / "syncnet_v2.model"}')
  _assert_user_error(proc, 'torch', 'pip install')


def test_a_bug_still_shows_its_traceback(tmp_path):
  """Only user errors are shortened: anything else keeps its traceback (and a non-2 status)."""
  code = ('from avdiff import console\nconsole.quiet_logging()\n'
          'def main(argv):\n  raise RuntimeError("a bug")\nconsole.run(main)\n')
  script = tmp_path / 'bug.py'
  script.write_text(code)
  proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                        check=False, env=dict(os.environ, PYTHONPATH=REPO))
  assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'RuntimeError: a bug' in proc.stderr


@pytest.mark.parametrize('case,needles', [
    ('text', ('cannot read audio', 'speech.wav')),
    ('no_sound', ('cannot read audio', 'no audio stream')),
    ('blip', ('less than one video frame',)),
    ('mode', ('--audio goes with --mode=audio_to_video',)),
])
def test_sample_file_that_cannot_be_generated_from(tmp_path, case, needles):
  """--audio: every unusable file is one line before the model loads (the workdir has no checkpoint)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  from avdiff import checkpoint  # pylint: disable=g-import-not-at-top
  from avdiff.data import av_io  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  (tmp_path / 'config.json').write_text(checkpoint.config_to_json(tiny.get_config()))
  path = tmp_path / 'speech.wav'
  if case == 'text':
    path.write_text('not a sound file\n')
  elif case == 'no_sound':
    path = tmp_path / 'speech.mp4'
    av_io.write_video(str(path), np.zeros((10, 32, 32, 3), np.uint8), None, 25, 16000)
  else:
    soundfile.write(path, np.zeros(800 if case == 'blip' else 32000, np.float32), 16000)
  mode = 'joint' if case == 'mode' else 'audio_to_video'
  proc = _run('experiments.sample', f'--workdir={tmp_path}', f'--mode={mode}', f'--audio={path}')
  _assert_user_error(proc, *needles)
