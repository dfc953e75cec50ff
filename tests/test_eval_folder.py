"""Folder evaluation: sync read from stream timestamps, bad files skipped with a reason, the CLI."""

import json
import os
import subprocess
import sys

import pytest

from avdiff.eval import folder
from configs import tiny


def _config():
  c = tiny.get_config()
  c.eval.bootstrap_samples = 50
  c.eval.fvd = False  # I3D is exercised once, in the workdir test.
  return c


@pytest.fixture(scope='module')
def clip_folder(tmp_path_factory):
  from avdiff.data import av_io
  from avdiff.data import synthetic
  d = _config().data
  out = tmp_path_factory.mktemp('clips')
  for i in range(2):
    c = synthetic.talking_clip(i, d)
    av_io.write_video(str(out / f'talk{i}.mp4'), c['video'], c['audio'], d.fps, d.sample_rate)
    # Same samples, but the audio stream starts 0.3 s (3 frames) after the video: only timestamps say so.
    av_io.write_video(str(out / f'talk{i}_late.mkv'), c['video'], c['audio'], d.fps, d.sample_rate, 'pcm',
                      audio_start=0.3)
  av_io.write_video(str(out / 'silent_film.mov'), c['video'], None, d.fps, d.sample_rate)
  (out / 'broken.webm').write_bytes(b'not a video' * 50)
  (out / 'notes.txt').write_text('not a clip')
  return out


MOUTH_REGION = '(16,8,29,24)'  # Covers the mouth of every `talking` speaker at 32x32.


def test_folder_mode_reads_sync_from_timestamps_and_skips_bad_files(clip_folder):
  config = _config()
  config.eval.crop_box = (16, 8, 29, 24)
  res = folder.evaluate_folder(str(clip_folder), config)
  clips = res['clips']
  assert sorted(clips) == ['talk0.mp4', 'talk0_late.mkv', 'talk1.mp4', 'talk1_late.mkv']
  for i in range(2):
    assert clips[f'talk{i}.mp4']['offset_frames'] == 0
    assert clips[f'talk{i}_late.mkv']['offset_frames'] == 3
    for key in ('av_align', 'av_align_variant', 'offset_frames', 'offset_confidence'):
      assert key in clips[f'talk{i}.mp4']
  assert set(res['skipped']) == {'silent_film.mov', 'broken.webm', 'notes.txt'}
  assert 'no audio' in res['skipped']['silent_film.mov']
  assert res['aggregate']['offset_frames']['mean'] == pytest.approx(1.5)
  assert res['protocol']['crop_box'] == [16, 8, 29, 24] and res['protocol']['protocol'] == 'native'
  assert clips['talk0.mp4']['offset_method'] == 'mouth_envelope' and clips['talk0.mp4']['fps'] == config.data.fps


def test_cli_folder_mode(clip_folder, tmp_path):
  out = tmp_path / 'res.json'
  cmd = [sys.executable, '-m', 'experiments.evaluate', f'--clips={clip_folder}', f'--out={out}',
         f'--config.eval.crop_box={MOUTH_REGION}', '--config.eval.bootstrap_samples=20']
  subprocess.run(cmd, check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  res = json.loads(out.read_text())
  assert res['num_scored'] == 4 and res['num_skipped'] == 3
  assert res['clips']['talk0_late.mkv']['offset_frames'] == 3
