"""Workdir evaluation: conditions with an injected sampler, result files, FVD, memorization, tracked mouths."""

import json

import numpy as np

import eval_toy as toy
from avdiff import run_dir
from avdiff.eval import results
from avdiff.eval import workdir
from configs import tiny


def _config():
  c = tiny.get_config()
  c.eval.bootstrap_samples = 50
  c.eval.fvd = False  # I3D is exercised once, in the workdir test.
  return c


def test_workdir_mode_with_injected_sample_fn(tmp_path, monkeypatch):
  config = _config()
  held_out = [toy.talking_like(s) for s in range(6)]
  train = [toy.talking_like(s) for s in range(100, 106)]
  monkeypatch.setattr(workdir.builders, 'load_clips',
                      lambda cfg, split, num: (held_out if split != 'train' else train)[:num])

  def sample_fn(clips, mode, seed):
    if mode == 'audio_to_video':
      raise NotImplementedError('no model in this test')
    return [dict(train[i % len(train)]) for i in range(len(clips))]  # A "model" that copies training clips.

  config.eval.fvd, config.eval.split, config.eval.num_clips = True, 'test', 6
  evaluation = workdir.evaluate_workdir(str(tmp_path), config, sample_fn)
  results.write_workdir(run_dir.RunDir(str(tmp_path)), evaluation, config)
  res = evaluation.result
  conds = res['conditions']
  assert conds['model_joint']['metrics']['fvd']['mean'] > 0 and res['protocol']['fvd']['frames'] == 16
  assert 'fvd' not in conds['shifted_audio']['metrics']  # Same videos as the ground truth.
  assert res['protocol']['split'] == 'test' and res['protocol']['num_clips'] == 6
  df = config.diffusion
  assert res['protocol']['sampler'] == {'sampler': df.sampler, 'steps': df.num_sampling_steps,
                                        'guidance_video': df.guidance_video, 'guidance_audio': df.guidance_audio}
  assert conds['model_joint']['metrics']['nn_dist_ratio']['mean'] < 0.05  # Copies are flagged.
  assert conds['model_audio_to_video']['unavailable'].startswith('NotImplementedError')
  saved = json.load(open(tmp_path / 'eval' / 'test.json'))
  assert saved['protocol']['fps'] == config.data.fps
  assert (tmp_path / 'eval' / 'test.md').read_text().startswith('| condition |')


def test_workdir_mode_finds_mouths_of_clips_without_a_box(tmp_path, monkeypatch):
  """Clips of a folder dataset without ground truth: their mouths are tracked so offsets read the mouth."""
  from avdiff.data import synthetic  # pylint: disable=g-import-not-at-top
  config = _config()
  config.data.resolution = 64
  truth = [synthetic.talking_clip(s, config.data) for s in range(4)]
  held_out = [{k: c[k] for k in ('video', 'audio', 'label')} for c in truth]  # No mouth_box, as from a folder.
  monkeypatch.setattr(workdir.builders, 'load_clips', lambda cfg, split, num: held_out)  # Boxes are set in it.

  def sample_fn(clips, mode, seed):
    del mode, seed
    return [dict(c, video=np.zeros_like(c['video'])) for c in clips]  # Blank frames: no face to find.

  config.eval.split, config.eval.num_clips = 'test', 4
  res = workdir.evaluate_workdir(str(tmp_path), config, sample_fn).result
  assert res['faces']['ground_truth'] == 'mouth found in 4 of 4 clips'
  assert res['faces']['model_joint'].startswith('mouth found in 0 of 4 clips (the rest are read whole')
  for clip, known in zip(held_out, truth):
    y0, x0, y1, x1 = clip['mouth_box']
    cy, cx = (known['mouth_box'][0] + known['mouth_box'][2]) / 2, (known['mouth_box'][1] + known['mouth_box'][3]) / 2
    assert y0 <= cy <= y1 and x0 <= cx <= x1, (clip['mouth_box'], known['mouth_box'])
  config.eval.faces = 'off'
  held_out[:] = [{k: c[k] for k in ('video', 'audio', 'label')} for c in truth]
  res = workdir.evaluate_workdir(str(tmp_path), config, sample_fn).result
  assert res['faces']['ground_truth'].startswith('face tracking off')
