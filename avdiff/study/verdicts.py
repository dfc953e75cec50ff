"""The verdict over seeds: the outcome targets of several runs of one recipe (one column per run), read from each
run's eval/<split>.json, as the markdown table the README and benchmarks/ carry.

    python -m experiments.compare runs/tiny runs/tiny_s1 runs/tiny_s2 --seeds_table=benchmarks/main_job.md

Every table starts with the line naming the command that wrote it (`command`), so a reader can rerun it. Rows are
the verdict of `avdiff.eval.outcomes` in its order (target, threshold, one value per run, mean +- sd over runs, how
many runs meet it), then the training wall time of each run (metrics.jsonl: seconds from start to the last step).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np

from avdiff import checkpoint
from avdiff import run_dir
from avdiff.train import metrics as metrics_lib


def run_verdict(run: str, split: str = 'test') -> Optional[list[dict]]:
  """The run's verdict rows ({'name', 'what', 'op', 'threshold', 'value', 'met'}), None before its evaluation."""
  path = run_dir.RunDir(run) / 'eval' / f'{split}.json'
  if not path.exists():
    return None
  return json.loads(path.read_text()).get('outcomes', {}).get('verdict')


def _label(run: str) -> str:
  try:
    return f'seed {checkpoint.load_config(run).seed}'
  except FileNotFoundError:
    return run_dir.RunDir(run).name


def _train_minutes(run: str) -> float:
  rows = metrics_lib.read_metrics(run)  # [] when the run has no metrics.jsonl.
  walls = [r['wall_s'] for r in rows if 'wall_s' in r]
  return walls[-1] / 60.0 if walls else float('nan')


def _escape(text: str) -> str:
  return text.replace('|', '\\|')


def seeds_table(runs: Sequence[str], command: str, split: str = 'test', source: str = '') -> list[str]:
  """Markdown lines of the verdict of `runs` (finished runs only; the rest are named below the table).

  Args:
    runs: run directories (local or gs://) of one recipe, e.g. one per seed.
    command: the command line that writes this table (its first line quotes it).
    split: the evaluation split (eval/<split>.json).
    source: what the runs were evaluated on, for the first line (e.g. "held-out files of ..."); default the split.
  """
  verdicts = {run: run_verdict(run, split) for run in runs}
  done = [run for run in runs if verdicts[run]]
  lines = [f'Written by `{command}` from each run\'s eval/{split}.json ({source or f"the {split} split"}).', '']
  if not done:
    return lines + ['No run has finished its evaluation yet.']
  labels = [_label(run) for run in done]
  lines += ['| target | threshold | ' + ' | '.join(labels) + ' | mean +- sd | met |',
            '|---|---|' + '---|' * len(done) + '---|---|']
  by_name = [{row['name']: row for row in verdicts[run]} for run in done]
  for first in verdicts[done[0]]:
    rows = [v.get(first['name']) for v in by_name]
    values = np.asarray([r['value'] for r in rows if r is not None], np.float64)
    met = sum(bool(r and r['met']) for r in rows)
    count = 'all' if met == len(done) else met
    lines.append(f"| {_escape(first['what'])} | {first['op']} {first['threshold']:g} | "
                 + ' | '.join(f"{r['value']:.3f}" if r else '' for r in rows)
                 + f' | {values.mean():.3f} +- {values.std():.3f} | {count} of {len(done)} |')
  minutes = np.asarray([_train_minutes(run) for run in done])
  lines.append('| training wall time, minutes (not a target: depends on machine load) |  | '
               + ' | '.join(f'{m:.1f}' for m in minutes) + f' | {np.nanmean(minutes):.1f} +- {np.nanstd(minutes):.1f} |  |')
  missing = [run for run in runs if not verdicts[run]]
  if missing:
    lines += ['', 'Not evaluated yet: ' + ', '.join(missing) + '.']
  return lines
