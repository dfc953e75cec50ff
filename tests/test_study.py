"""Sweeps and comparisons: `compare` writes every file with the right columns (a config difference is a column,
identical fields are not), aggregates seeds and marks the best and the within-noise members; the page loads in a
browser; a two-member sweep runs end to end and a rerun skips the finished member."""

import csv
import json
import os
import tempfile

import numpy as np
import pytest
from matplotlib import image as mpl_image

import browser
import train_toy
from avdiff import checkpoint
from avdiff import config_lib
from avdiff.data import av_io
from avdiff.data import synthetic
from avdiff.study import compare
from avdiff.study import sweep as sweep_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


def _fake_run(path, config, a2v, loss, gains=(0.1, 0.5)):
  """A finished run directory as the loop and the evaluation leave it (config, metrics, eval result, clips)."""
  os.makedirs(os.path.join(path, 'eval'))
  with open(os.path.join(path, checkpoint.CONFIG_FILE), 'w') as f:
    f.write(checkpoint.config_to_json(config))
  with open(os.path.join(path, 'metrics.jsonl'), 'w') as f:
    for step in (1, 2, 3, 4):
      f.write(json.dumps({'step': step, 'loss': loss * (5 - step), 'steps_per_s': 4.0, 'clips_per_s': 32.0}) + '\n')
    f.write(json.dumps({'step': 4, 'val_ema_loss': loss, 'val_ema_gain_video_t0.3': gains[0],
                        'val_ema_gain_video_t0.9': gains[1], 'eval/a2v_r': a2v}) + '\n')
  result = {'protocol': {}, 'conditions': {'model_audio_to_video': {'metrics': {
      'fd': {'mean': 10.0 - a2v, 'ci95': [9.0 - a2v, 11.0 - a2v], 'n': 8}}}},
            'outcomes': {'measures': {'a2v_r': {'mean': a2v, 'std': 0.1, 'n': 16, 'undecided': 0},
                                      'joint_speaker_accuracy': 0.5 + a2v / 4}}}
  with open(os.path.join(path, 'eval', 'test.json'), 'w') as f:
    json.dump(result, f)
  clips = os.path.join(path, 'report', 'clips')
  os.makedirs(clips)
  clip = synthetic.talking_clip(0, config.data)
  for name in ('ground_truth_0.mp4', 'model_audio_to_video_0.mp4'):
    av_io.write_video(os.path.join(clips, name), clip['video'], clip['audio'], config.data.fps,
                      config.data.sample_rate)


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
  root = tmp_path_factory.mktemp('study')
  base = train_toy.config(DATA_DIR)
  flow = train_toy.config(DATA_DIR, **{'diffusion.objective': 'flow'})
  # Member 'x': 3 seeds close together and high; member 'flow': 3 seeds spread wide around a lower mean.
  for seed, a2v in enumerate((0.80, 0.82, 0.81)):
    base.seed = seed
    _fake_run(str(root / 'sweep' / 'x' / f'seed{seed}'), base, a2v, loss=0.1)
  for seed, a2v in enumerate((0.2, 0.9, 0.5)):
    flow.seed = seed
    _fake_run(str(root / 'sweep' / 'flow' / f'seed{seed}'), flow, a2v, loss=0.3, gains=(0.2, 0.6))
  out = str(root / 'report')
  summary = compare.compare([str(root / 'sweep')], out, title='x vs flow',
                            command='python -m experiments.compare SWEEP --out=OUT')
  return out, summary


def test_compare_writes_every_file_with_the_right_columns(compared):
  out, summary = compared
  for name in ('comparison.md', 'comparison.csv', 'index.html', 'loss.png', 'time_to_sync.png', 'metrics.png',
               'gain.png'):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  for name in ('loss.png', 'time_to_sync.png', 'metrics.png', 'gain.png'):
    assert mpl_image.imread(os.path.join(out, name)).shape[0] > 100  # Decodes as a picture.
  # The one config difference is a column; identical fields (and the seeds) are not.
  assert summary['differences'] == ['diffusion.objective']
  with open(os.path.join(out, 'comparison.csv')) as f:
    rows = {r['member']: r for r in csv.DictReader(f)}
  assert set(rows) == {'x', 'flow'}
  with open(os.path.join(out, 'comparison.md')) as f:
    assert f.readline().startswith('Written by `python -m experiments.compare SWEEP --out=OUT` from the runs')
  header = list(rows['x'])
  assert 'diffusion.objective' in header and 'model.width' not in header and 'seed' not in header
  assert rows['x']['diffusion.objective'] == 'x' and rows['flow']['diffusion.objective'] == 'flow'
  for column in ('params_m_mean', 'tokens_per_clip_mean', 'step_s_mean', 'clips_per_s_mean', 'final_loss_mean',
                 'final_val_ema_loss_mean', 'a2v_r_mean', 'a2v_r_lo', 'a2v_r_hi', 'a2v_fd_mean',
                 'joint_speaker_accuracy_mean', 'gain_video_t0.3_mean', 'gain_video_t0.9_mean'):
    assert column in header, column
  assert rows['x']['seeds'] == '3'
  # Seeds aggregated: mean over the three runs, 95% t-interval.
  assert float(rows['x']['a2v_r_mean']) == pytest.approx(0.81)
  assert float(rows['x']['a2v_r_sd']) == pytest.approx(0.01)
  half = 4.302652729911275 * 0.01 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n).
  assert float(rows['x']['a2v_r_lo']) == pytest.approx(0.81 - half, rel=1e-4)
  assert float(rows['x']['params_m_mean']) > 0 and float(rows['x']['tokens_per_clip_mean']) == 80


def test_best_and_within_noise_marks(compared):
  out, _ = compared
  with open(os.path.join(out, 'comparison.csv')) as f:
    rows = {r['member']: r for r in csv.DictReader(f)}
  assert rows['x']['a2v_r_mark'] == 'best'
  # flow's seeds spread so wide that its interval reaches x's: within noise, and said so.
  assert rows['flow']['a2v_r_mark'] == 'noise'
  # Lower is better for losses of the same objective and for FD; informative columns are never marked.
  assert rows['x']['a2v_fd_mark'] == 'best'
  assert rows['x']['params_m_mark'] == '' and rows['flow']['final_loss_mark'] == ''
  text = open(os.path.join(out, 'comparison.md')).read()
  assert '**0.81 ± 0.01**' in text and '| diffusion.objective |' in text.replace('member | seeds ', '')


def test_comparison_page_loads_in_headless_chromium(compared, tmp_path):
  out, _ = compared
  seen = browser.load(out, tmp_path)
  assert seen['title'] == 'x vs flow'
  assert len(seen['images']) == 4
  for im in seen['images']:
    assert 'error' not in im and im['width'] > 0, im
  assert len(seen['videos']) == 4  # Ground truth and audio_to_video for each member.
  for v in seen['videos']:
    assert 'error' not in v and v['duration'] == pytest.approx(0.8, abs=0.15), v


def test_sweep_file_errors_name_the_problem(tmp_path):
  path = tmp_path / 'bad.py'
  path.write_text("def get_sweep():\n  return {'base': 'configs/tiny.py', 'members': {'a': {}}}\n")
  with pytest.raises(ValueError, match="must return 'seeds'"):
    sweep_lib.load_sweep(str(path))
  path.write_text("def get_sweep():\n  return {'base': 'configs/tiny.py', 'members': {'a': {'model.widht': 3}}, "
                  "'seeds': (0,)}\n")
  with pytest.raises(ValueError, match="no field 'widht'"):
    sweep_lib.member_config(sweep_lib.load_sweep(str(path)), 'a', 0)


def test_the_study_sweeps_load():
  for name in ('study', 'study_short'):
    sweep = sweep_lib.load_sweep(f'configs/sweeps/{name}.py')
    for member in sweep.members:
      config = sweep_lib.member_config(sweep, member, sweep.seeds[-1])
      assert config.seed == sweep.seeds[-1]
      config_lib.validate(config)  # Shapes and clocks; mesh checks need the target device count.
  short = sweep_lib.load_sweep('configs/sweeps/study_short.py')
  assert sweep_lib.member_config(short, 'dual_tower', 0).model.fusion == 'dual_tower'
  assert sweep_lib.member_config(short, 'baseline', 0).train.eval_every == 100
  assert short.seeds == (0, 1, 2, 3, 4) and set(short.members) < set(sweep_lib.load_sweep('configs/sweeps/study.py')
                                                                      .members)
  levers = sweep_lib.member_config(short, 'no_sync_levers', 0)
  assert (levers.model.av_time_bias, levers.diffusion.sync_loss_weight, levers.diffusion.motion_loss_weight) == (0, 0, 0)


def test_command_line_overrides_reach_every_member():
  """ablate --override / --seeds: a smoke test of a whole sweep at a few steps without editing the sweep file."""
  short = sweep_lib.load_sweep('configs/sweeps/study_short.py')
  smoke = sweep_lib.with_overrides(short, ['train.steps=50', 'train.eval_every=25', "model.attention='xla'",
                                           'data.dataset=talking'], ['0', '2'])
  assert smoke.seeds == (0, 2) and short.seeds != smoke.seeds
  for member in smoke.members:
    config = sweep_lib.member_config(smoke, member, 2)
    assert (config.train.steps, config.train.eval_every, config.model.attention) == (50, 25, 'xla')
    assert config.data.dataset == 'talking' and config.seed == 2
  assert sweep_lib.member_config(smoke, 'dual_tower', 0).model.fusion == 'dual_tower'  # The delta stays.
  with pytest.raises(ValueError, match="not 'section.field=value'"):
    sweep_lib.with_overrides(short, ['train.steps'])
  with pytest.raises(ValueError, match="no field 'stpes'"):
    sweep_lib.member_config(sweep_lib.with_overrides(short, ['train.stpes=5']), 'baseline', 0)


@pytest.mark.slow
def test_two_member_sweep_end_to_end_and_rerun_skips(tmp_path):
  overrides = {k: v for k, v in train_toy.OVERRIDES.items()}
  overrides.update({'train.steps': 4, 'train.eval_every': 2, 'eval.num_clips': 4, 'eval.fvd': False,
                    'eval.bootstrap_samples': 20, 'data.data_dir': DATA_DIR})
  sweep_file = tmp_path / 'two.py'
  sweep_file.write_text(
      'def get_sweep():\n'
      f"  return {{'base': 'configs/tiny.py', 'seeds': (0,), 'overrides': {overrides!r},\n"
      "          'members': {'joint': {}, 'shared_noise': {'diffusion.independent_t_prob': 0.0}}}\n")
  workdir = str(tmp_path / 'runs')
  sweep = sweep_lib.load_sweep(str(sweep_file))
  runs = sweep_lib.run_sweep(sweep, workdir, progress=False)
  assert runs == [os.path.join(workdir, 'joint', 'seed0'), os.path.join(workdir, 'shared_noise', 'seed0')]
  for run in runs:
    assert os.path.exists(os.path.join(run, 'eval', 'test.json'))
    assert os.path.exists(os.path.join(run, 'report', 'clips', 'model_audio_to_video_0.mp4'))
  # Rerun: the finished member is skipped (its evaluation is not rewritten, nothing is trained).
  done = os.path.join(runs[0], 'eval', 'test.json')
  stamp = os.path.getmtime(done)
  trained = []
  sweep_lib.run_sweep(sweep, workdir, train_fn=lambda config, run: trained.append(run) or {'stopped': 'done'},
                     progress=False)
  assert os.path.getmtime(done) == stamp and trained == []
  summary = compare.compare([workdir], str(tmp_path / 'report'))
  assert summary['members'] == ['joint', 'shared_noise']
  assert summary['differences'] == ['diffusion.independent_t_prob']
  assert 'a2v_r' in summary['metrics'] and 'gain_video_t0.5' in summary['metrics']


def test_a_preempted_member_is_not_evaluated(tmp_path):
  """SIGTERM stops training with a saved checkpoint: the member must not be evaluated (its eval file would mark a
  half-trained run finished), and the sweep stops there for the rerun."""
  path = tmp_path / 'one.py'
  path.write_text("def get_sweep():\n  return {'base': 'configs/tiny.py', 'members': {'a': {}, 'b': {}}, "
                  "'seeds': (0,)}\n")
  sweep = sweep_lib.load_sweep(str(path))
  calls = []
  preempted = lambda config, run: calls.append(run) or {'stopped': 'preempted', 'step': 3}
  assert sweep_lib.run_member(sweep, str(tmp_path / 'runs'), 'a', 0, train_fn=preempted) is None
  assert sweep_lib.run_sweep(sweep, str(tmp_path / 'runs'), train_fn=preempted) == []
  assert len(calls) == 2  # Member 'b' never started.
  assert not os.path.exists(tmp_path / 'runs' / 'a' / 'seed0' / 'eval')
