"""The verdict over seeds: the outcome targets of several runs of one recipe (one column per run), read from each
run's eval/<split>.json, as the markdown table the README and benchmarks/ carry; and recipes side by side (one
column per recipe, over its seeds), with what each costs once (stage 1) and per run (the DiT).

    python -m experiments.compare runs/tiny runs/tiny_s1 runs/tiny_s2 --seeds_table=benchmarks/main_job.md
    python -m experiments.compare pixel=runs/p/seed0,runs/p/seed1 latent=runs/l/seed0,runs/l/seed1 \
        --recipes_table=benchmarks/latent_main_job.md

Every table starts with the line naming the command that wrote it (`command`), so a reader can rerun it. Rows are
the verdict of `avdiff.eval.outcomes` in its order (target, threshold, one value per run, mean +- sd over runs, how
many runs meet it), then the training wall time of each run (metrics.jsonl: seconds from start to the last step).
"""

from __future__ import annotations

import json
from typing import Optional, Sequence

import numpy as np

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import console
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


def _one_time_minutes(run: str) -> dict:
  """{'train', 'cache'} minutes stage 1 cost the run's autoencoder once; {} for a pixel run."""
  config = checkpoint.load_config(run)
  if config.model.encoder == 'patch' or not config.model.autoencoder_workdir:
    return {}
  return {k: v / 60.0 for k, v in autoencoders.one_time_seconds(autoencoders.trained_dir(config)).items()}


# The sampling modes whose FVD (I3D, `avdiff.eval.fvd`) the evaluation records against the held-out clips.
FVD_MODES = ('joint', 'audio_to_video')


def _fvd(run: str, split: str, mode: str) -> float:
  path = run_dir.RunDir(run) / 'eval' / f'{split}.json'
  metrics = json.loads(path.read_text()).get('conditions', {}).get(f'model_{mode}', {}).get('metrics', {})
  return float(metrics.get('fvd', {}).get('mean', 'nan'))


def _mean_sd(values, digits: int = 3) -> str:
  values = np.asarray(values, np.float64)
  if not np.isfinite(values).any():
    return ''
  return f'{np.nanmean(values):.{digits}f} +- {np.nanstd(values):.{digits}f}'


def parse_recipes(args: Sequence[str]) -> dict[str, list[str]]:
  """['pixel=runs/a,runs/b', 'latent=runs/c'] -> {'pixel': ['runs/a', 'runs/b'], 'latent': ['runs/c']}."""
  recipes = {}
  for arg in args:
    label, sep, runs = arg.partition('=')
    if not sep or not label or not runs:
      raise console.UserError(f'{arg!r}: each recipe is LABEL=RUN[,RUN...]')
    recipes[label] = runs.split(',')
  return recipes


def recipes_table(recipes: dict[str, Sequence[str]], command: str, split: str = 'test') -> list[str]:
  """Markdown lines of the verdict of several recipes side by side: per recipe the mean +- sd of each target over
  its finished runs and how many meet it, then FVD per sampling mode (not a target), the DiT's training wall time
  per run, what stage 1 cost a latent recipe once (the autoencoder's training + evaluation and the latent cache,
  read from its directory: `autoencoders.one_time_seconds`) and the whole pipeline from scratch (stage 1 + cache +
  one DiT run).

  Args:
    recipes: {label: run directories of that recipe (its seeds)}, in column order.
    command: the command line that writes this table (its first line quotes it).
    split: the evaluation split (eval/<split>.json).
  """
  verdicts = {label: {run: run_verdict(run, split) for run in runs} for label, runs in recipes.items()}
  done = {label: [run for run, v in vs.items() if v] for label, vs in verdicts.items()}
  lines = [f'Written by `{command}` from each run\'s eval/{split}.json (the {split} split).', '']
  if not any(done.values()):
    return lines + ['No run has finished its evaluation yet.']
  labels = list(recipes)
  seeds = lambda n: f'{n} seed' + ('s' if n != 1 else '')
  lines += ['| target | threshold | ' + ' | '.join(f'{label} ({seeds(len(done[label]))}) | met' for label in labels)
            + ' |', '|---|---|' + '---|---|' * len(labels)]
  first = next(verdicts[label][done[label][0]] for label in labels if done[label])
  for target in first:
    cells = []
    for label in labels:
      rows = [{r['name']: r for r in verdicts[label][run]}.get(target['name']) for run in done[label]]
      rows = [r for r in rows if r is not None]
      met = sum(bool(r['met']) for r in rows)
      cells += [_mean_sd([r['value'] for r in rows]),
                ('all' if met == len(rows) else str(met)) + f' of {len(rows)}' if rows else '']
    lines.append(f"| {_escape(target['what'])} | {target['op']} {target['threshold']:g} | " + ' | '.join(cells) + ' |')
  minutes = {label: [_train_minutes(run) for run in done[label]] for label in labels}
  once = {label: (_one_time_minutes(done[label][0]) if done[label] else {}) for label in labels}

  def row(what: str, value) -> str:  # A value per recipe, its 'met' cell empty.
    return f'| {what} |  | ' + ' | '.join(f'{value(label)} | ' for label in labels) + ' |'

  fmt = lambda m: f'{m:.1f}' if m == m else 'not recorded'
  for mode in FVD_MODES:
    lines.append(row(f'{mode}: FVD against the held-out clips (not a target; lower is better)',
                     lambda label, mode=mode: _mean_sd([_fvd(run, split, mode) for run in done[label]], digits=0)))
  lines.append(row('DiT training wall time per run, minutes (not a target: depends on machine load)',
                   lambda label: _mean_sd(minutes[label], digits=1)))
  lines.append(row('stage 1 once: autoencoder training + evaluation, minutes',
                   lambda label: fmt(once[label]['train']) if once[label] else 'none'))
  lines.append(row('stage 1 once: latent cache of train + validation, minutes',
                   lambda label: fmt(once[label]['cache']) if once[label] else 'none'))
  lines.append(row('from scratch: stage 1 + latent cache + one DiT run, minutes',
                   lambda label: fmt(sum(once[label].values(), 0.0) + float(np.nanmean(minutes[label])))
                   if minutes[label] else ''))
  missing = [run for label in labels for run in recipes[label] if not verdicts[label][run]]
  if missing:
    lines += ['', 'Not evaluated yet: ' + ', '.join(missing) + '.']
  return lines
