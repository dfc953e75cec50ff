"""A new user's path on their own videos, each step the real command: build_dataset --source=DIR -> train on it
with in-loop evaluation -> sample -> evaluate --workdir (with a --config override) -> compare.

The folder mixes containers (mp4, mov, mkv), codecs (AAC, PCM), frame rates (25, 30 fps), sizes and channels, and
holds broken files; every command must exit 0 and each step's outputs must be there."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from avdiff.data import av_io, export
from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOLS = (export.FileProtocol(25.0, 44100, 2, 96, '.mp4', 'aac'),
             export.FileProtocol(30.0, 48000, 1, 64, '.mov', 'pcm'),
             export.FileProtocol(30.0, 22050, 2, 80, '.mkv', 'aac'),
             export.FileProtocol(25.0, 16000, 1, 48, '.mkv', 'pcm'))


def _run(env, *args):
  proc = subprocess.run([sys.executable, '-m', *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
  assert proc.returncode == 0, (args[0], proc.stderr[-3000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  return proc


def _broken_files(folder):
  data = (folder / 'talking_00000.mp4').read_bytes()
  (folder / 'cut_short.mp4').write_bytes(data[:len(data) // 3])
  (folder / 'not_a_video.mov').write_text('plain text\n')
  av_io.write_video(str(folder / 'no_sound.mp4'), np.zeros((50, 32, 32, 3), np.uint8), None, 25, 16000)
  return {'cut_short.mp4': 'corrupt', 'not_a_video.mov': 'corrupt', 'no_sound.mp4': 'no audio stream'}


@pytest.mark.slow
def test_own_videos_from_build_to_compare(tmp_path):
  videos = tmp_path / 'videos'
  config = tiny.get_config()
  export.export_talking(str(videos), config.data, 24, seconds=4.0, protocols=PROTOCOLS)  # 2 clips each.
  broken = _broken_files(videos)
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'AVDIFF_DATA_DIR': str(tmp_path / 'tfds')}

  built = _run(env, 'experiments.build_dataset', f'--source={videos}', '--name=my_clips',
               '--validation_fraction=0.17', '--test_fraction=0.17')
  assert 'files per split: test=4, train=16, validation=4' in built.stdout, built.stdout
  report = json.loads(open(built.stdout.split('report: ')[1].split()[0]).read())
  for name, reason in broken.items():
    assert report['files'][name]['reason'] == reason
  assert report['generator'] == 'talking' and report['num_classes'] <= config.model.num_classes

  workdir = tmp_path / 'run'
  overrides = ['--config.data.dataset=my_clips', '--config.train.steps=20', '--config.train.global_batch_size=8',
               '--config.train.eval_every=10', '--config.train.eval_clips=4', '--config.train.log_every=5',
               '--config.train.checkpoint_every=10', '--config.train.sample_every=0', '--config.model.depth=1',
               '--config.diffusion.num_sampling_steps=2', '--config.eval.bootstrap_samples=20']
  _run(env, 'experiments.train', '--config=configs/tiny.py', f'--workdir={workdir}', *overrides)
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  scored = [r for r in rows if 'eval/a2v_r' in r]  # In-loop scores on the validation split.
  assert [r['step'] for r in scored] == [10, 20], rows
  assert all(np.isfinite(r['eval/ground_truth/av_align']) for r in scored)

  _run(env, 'experiments.sample', f'--workdir={workdir}', '--mode=audio_to_video', '--num=2')
  assert len(list((workdir / 'samples' / '20').glob('audio_to_video_*.mp4'))) == 2

  # An override on top of the run's own config: the run's model (depth 1) is restored, not configs/tiny.py's.
  _run(env, 'experiments.evaluate', f'--workdir={workdir}', '--num_clips=4', '--config.eval.fvd=False')
  result = json.loads((workdir / 'eval' / 'test.json').read_text())
  assert result['protocol']['dataset'] == 'my_clips' and result['protocol']['split'] == 'test'
  assert 'unavailable' not in result['conditions']['model_audio_to_video'], result['conditions']
  assert 'verdict' in result['outcomes']  # Sidecars name the talking generator: its targets apply.
  assert (workdir / 'report' / 'index.html').exists()

  _run(env, 'experiments.compare', str(workdir), f'--out={tmp_path / "compare"}')
  assert (tmp_path / 'compare' / 'comparison.md').exists()
