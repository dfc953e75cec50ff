"""The main job on ordinary files: `talking` exported as h264 + AAC mp4 (25 fps, 44.1 kHz stereo, 96 x 96) with
JSON sidecars, built into a folder dataset (resampled to the training protocol), trained with the main-job recipe
(configs/tiny.py) and evaluated on its held-out files with the same readers and targets as `make main`.

    python -m benchmarks.files_outcome --workdir=runs/files --seeds=0,1,2      # ~15 min per seed alone on 2 cores
    python -m benchmarks.files_outcome --workdir=runs/files --seeds=0,1,2 --table_only
    python -m benchmarks.files_outcome --workdir=runs/files_tb --train_args=--config.model.av_time_bias=20 \
        --out=benchmarks/files_outcome_time_bias.md                          # the same with a config change

Steps already done are skipped (the export, the build, a finished seed), so the command resumes. The table goes
to stdout and to --out (default benchmarks/files_outcome.md): one column per seed, mean +- sd over seeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np

from avdiff.study import verdicts
from benchmarks import report

_WORKDIR = flags.DEFINE_string('workdir', 'runs/files', 'Folder of the files, their dataset and the runs.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Training seeds.')
_NUM_FILES = flags.DEFINE_integer('num_files', 320, 'Exported files (2 s each): 10% validation, 10% test.')
_TABLE_ONLY = flags.DEFINE_bool('table_only', False, 'Only write the table from finished runs.')
_OUT = flags.DEFINE_string('out', 'benchmarks/files_outcome.md', 'Markdown table.')
_TRAIN_ARGS = flags.DEFINE_list('train_args', [], 'Extra --config.* overrides for every run (e.g. a shorter test).')

DATASET = 'talking_files'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> None:
  print('+ python -m ' + ' '.join(args), flush=True)
  subprocess.run([sys.executable, '-m', *args], cwd=REPO, check=True,
                 env={**os.environ, 'AVDIFF_DATA_DIR': os.path.abspath(os.path.join(_WORKDIR.value, 'tfds'))})


def _seed_dir(seed: str) -> str:
  return os.path.join(_WORKDIR.value, f'seed{seed}')


def run_seed(seed: str) -> None:
  workdir = _seed_dir(seed)
  if os.path.exists(os.path.join(workdir, 'eval', 'test.json')):
    return
  _run('experiments.train', '--config=configs/tiny.py', f'--workdir={workdir}', f'--config.data.dataset={DATASET}',
       f'--config.seed={seed}', *_TRAIN_ARGS.value)
  _run('experiments.evaluate', f'--workdir={workdir}', '--split=test')


def table(seeds: list[str]) -> list[str]:
  extra = ''.join(f' --{f.name}={",".join(f.value) if isinstance(f.value, list) else f.value}'
                  for f in (_TRAIN_ARGS, _OUT) if f.value != f.default)
  command = (f'python -m benchmarks.files_outcome --workdir={_WORKDIR.value} --seeds={",".join(seeds)}{extra} '
             '--table_only')
  return verdicts.seeds_table([_seed_dir(s) for s in seeds], command,
                              source='held-out files of the exported `talking` folder')


def truth_measures(seeds: list[str]) -> list[str]:
  """Rows of the held-out files' own ground truth (from the first finished run's eval/test.json) and its sync
  against the audio moved later by 0..60 ms (how well picture and sound of the built clips line up)."""
  for seed in seeds:
    path = os.path.join(_seed_dir(seed), 'eval', 'test.json')
    if os.path.exists(path):
      with open(path) as f:
        measures = json.load(f)['outcomes']['measures']
      break
  else:
    return []
  from avdiff.data import builders  # pylint: disable=g-import-not-at-top  (JAX only when a table is written)
  from avdiff.eval import outcomes  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data.dataset = DATASET
  os.environ['AVDIFF_DATA_DIR'] = os.path.abspath(os.path.join(_WORKDIR.value, 'tfds'))
  clips = builders.load_clips(config, 'test', config.eval.num_clips)
  shifted = []
  for ms in (0, 20, 40, 60):
    later = int(round(ms * 1e-3 * config.data.sample_rate))
    r = [outcomes.sync_r(c, config.data, np.concatenate([np.zeros(later, np.float32), c['audio']])[:c['audio'].size])
         for c in clips]
    shifted.append(f'{ms} ms: {np.nanmean(r):.3f}')
  return ['', f"Held-out files' ground truth: mouth vs audio envelope r {measures['ground_truth_r']['mean']:.3f}, "
              f"envelope reader vs mouth_open r {measures['envelope_reader_r']:.3f}; with the audio moved later by "
              + ', '.join(shifted) + '.']


def main(argv):
  del argv
  files = os.path.join(_WORKDIR.value, 'files')
  if not _TABLE_ONLY.value:
    if not os.path.exists(os.path.join(files, f'talking_{_NUM_FILES.value - 1:05d}.mp4.json')):
      _run('experiments.export_dataset', f'--out={files}', f'--num={_NUM_FILES.value}')
    _run('experiments.build_dataset', f'--source={files}', f'--name={DATASET}')
    for seed in _SEEDS.value:
      run_seed(seed)
  report.emit(table(_SEEDS.value) + truth_measures(_SEEDS.value), _OUT.value)


if __name__ == '__main__':
  app.run(main)
