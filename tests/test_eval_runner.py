"""Evaluation runner: conditions, unscorable clips, result files and the markdown table."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import eval_toy as toy
from avdiff.eval import report
from avdiff.eval import runner
from avdiff.eval import scoring
from avdiff.eval import shift as shift_lib
from configs import tiny


def _config():
  c = tiny.get_config()
  c.eval.bootstrap_samples = 50
  c.eval.fvd = False  # I3D is exercised once, in the workdir test.
  return c


def test_baselines_rank_as_expected_and_bad_clips_are_counted():
  config = _config()
  clips = [toy.talking_like(s) for s in range(8)]
  conds = runner.baseline_conditions(clips, config)
  conds['broken'] = [dict(clips[0], audio=np.zeros_like(clips[0]['audio'])),
                     dict(clips[1], video=clips[1]['video'][:3]),
                     dict(clips[2], audio=np.zeros(0, np.float32)), clips[3]]
  res = runner.evaluate_conditions(conds, config)
  gt, sh, shuf = res['ground_truth']['metrics'], res['shifted_audio']['metrics'], res['shuffled_audio']['metrics']
  assert res['ground_truth']['num_scored'] == 8
  assert gt['abs_offset_frames']['mean'] == 0
  assert sh['offset_frames']['mean'] == config.eval.shift_frames
  assert gt['envelope_peak_correlation']['mean'] > shuf['envelope_peak_correlation']['mean'] + 0.2
  lo, hi = gt['envelope_peak_correlation']['ci95']
  assert lo <= gt['envelope_peak_correlation']['mean'] <= hi
  assert 'fd' in sh and 'kid' in sh and 'fd' not in gt
  broken = res['broken']
  assert broken['num_scored'] == 1 and broken['num_skipped'] == 3
  assert set(broken['skip_reasons']) == {'silent audio', 'too short: 3 frames < 6', 'no audio'}
  table = report.markdown_table({'protocol': runner.protocol(config), 'conditions': res})
  assert '| ground_truth | 8 | 0 |' in table and 'max_offset_frames=6' in table


def test_score_clip_is_deterministic():
  config = _config()
  c = toy.impacts_like(3)
  a = scoring.score_clip(c['video'], c['audio'], config)
  b = scoring.score_clip(c['video'].copy(), c['audio'].copy(), config)
  assert a == b and a['av_align_variant'] == 'v2' and a['offset_source'] == 'onset_motion'


def test_workdir_mode_with_injected_sample_fn(tmp_path, monkeypatch):
  config = _config()
  held_out = [toy.talking_like(s) for s in range(6)]
  train = [toy.talking_like(s) for s in range(100, 106)]
  monkeypatch.setattr(runner.builders, 'load_clips',
                      lambda cfg, split, num: (held_out if split != 'train' else train)[:num])

  def sample_fn(clips, mode, seed):
    if mode == 'audio_to_video':
      raise NotImplementedError('no model in this test')
    return [dict(train[i % len(train)]) for i in range(len(clips))]  # A "model" that copies training clips.

  config.eval.fvd = True
  res = runner.evaluate_workdir(str(tmp_path), 'test', config, num_clips=6, sample_fn=sample_fn)
  conds = res['conditions']
  assert conds['model_joint']['metrics']['fvd']['mean'] > 0 and res['protocol']['fvd']['frames'] == 16
  assert 'fvd' not in conds['shifted_audio']['metrics']  # Same videos as the ground truth.
  assert res['protocol']['split'] == 'test' and res['protocol']['num_clips'] == 6
  assert conds['model_joint']['metrics']['nn_dist_ratio']['mean'] < 0.05  # Copies are flagged.
  assert conds['model_audio_to_video']['unavailable'].startswith('NotImplementedError')
  saved = json.load(open(tmp_path / 'eval' / 'test.json'))
  assert saved['protocol']['fps'] == config.data.fps
  assert (tmp_path / 'eval' / 'test.md').read_text().startswith('| condition |')


@pytest.fixture(scope='module')
def clip_folder(tmp_path_factory):
  from avdiff.data import av_io
  from avdiff.data import synthetic
  d = _config().data
  folder = tmp_path_factory.mktemp('clips')
  for i in range(2):
    c = synthetic.talking_clip(i, d)
    av_io.write_video(str(folder / f'talk{i}.mp4'), c['video'], c['audio'], d.fps, d.sample_rate)
    # Same samples, but the audio stream starts 0.3 s (3 frames) after the video: only timestamps say so.
    av_io.write_video(str(folder / f'talk{i}_late.mkv'), c['video'], c['audio'], d.fps, d.sample_rate, 'pcm',
                      audio_start=0.3)
  av_io.write_video(str(folder / 'silent_film.mov'), c['video'], None, d.fps, d.sample_rate)
  (folder / 'broken.webm').write_bytes(b'not a video' * 50)
  (folder / 'notes.txt').write_text('not a clip')
  return folder


MOUTH_REGION = '(16,8,29,24)'  # Covers the mouth of every `talking` speaker at 32x32.


def test_folder_mode_reads_sync_from_timestamps_and_skips_bad_files(clip_folder):
  config = _config()
  config.eval.crop_box = (16, 8, 29, 24)
  res = runner.evaluate_folder(str(clip_folder), config)
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


def test_in_loop_evaluator_returns_flat_metrics():
  config = _config()
  clips = [toy.talking_like(s) for s in range(4)]
  evaluator = runner.InLoopEvaluator(config, clips=clips, modes=('joint',))
  calls = []

  def sample_fn(cl, mode, seed):
    calls.append((mode, seed))
    d = config.data
    return [dict(c, audio=shift_lib.shift_audio(c['audio'], 2, d.fps, d.sample_rate)) for c in cl]

  metrics = evaluator(sample_fn, seed=7)
  assert calls == [('joint', 7)]
  assert metrics['eval/ground_truth/abs_offset_frames'] == 0
  assert metrics['eval/model_joint/abs_offset_frames'] == 2
  assert all(isinstance(v, float) for v in metrics.values())


def test_workdir_mode_finds_mouths_of_clips_without_a_box(tmp_path, monkeypatch):
  """Clips of a folder dataset without ground truth: their mouths are tracked so offsets read the mouth."""
  from avdiff.data import synthetic  # pylint: disable=g-import-not-at-top
  config = _config()
  config.data.resolution = 64
  truth = [synthetic.talking_clip(s, config.data) for s in range(4)]
  held_out = [{k: c[k] for k in ('video', 'audio', 'label')} for c in truth]  # No mouth_box, as from a folder.
  monkeypatch.setattr(runner.builders, 'load_clips', lambda cfg, split, num: held_out)  # Boxes are set in it.

  def sample_fn(clips, mode, seed):
    del mode, seed
    return [dict(c, video=np.zeros_like(c['video'])) for c in clips]  # Blank frames: no face to find.

  res = runner.evaluate_workdir(str(tmp_path), 'test', config, num_clips=4, sample_fn=sample_fn, write=False)
  assert res['faces']['ground_truth'] == 'mouth found in 4 of 4 clips'
  assert res['faces']['model_joint'].startswith('mouth found in 0 of 4 clips (the rest are read whole')
  for clip, known in zip(held_out, truth):
    y0, x0, y1, x1 = clip['mouth_box']
    cy, cx = (known['mouth_box'][0] + known['mouth_box'][2]) / 2, (known['mouth_box'][1] + known['mouth_box'][3]) / 2
    assert y0 <= cy <= y1 and x0 <= cx <= x1, (clip['mouth_box'], known['mouth_box'])
  config.eval.faces = 'off'
  held_out[:] = [{k: c[k] for k in ('video', 'audio', 'label')} for c in truth]
  res = runner.evaluate_workdir(str(tmp_path), 'test', config, num_clips=4, sample_fn=sample_fn, write=False)
  assert res['faces']['ground_truth'].startswith('face tracking off')
