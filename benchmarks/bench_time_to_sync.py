"""Time to sync: audio_to_video lip-sync r of the main job against training steps and minutes, per seed and lever.

    python -m benchmarks.bench_time_to_sync --workdir=runs/tiny            # the curve of a finished run
    python -m benchmarks.bench_time_to_sync --workdir=runs/tts --train --seeds=0,1,2 --until_step=1000 \
        --levers='baseline:;time_bias_20:model.av_time_bias=20' --out=benchmarks/time_to_sync.md

The main config logs, at every eval step (train.eval_every, train.eval_samples), the mean Pearson r between the
mouth opening of audio_to_video samples of its EMA params and the conditioning audio's envelope on
train.eval_clips validation clips (eval/a2v_r), the same against another clip's audio (eval/a2v_shuffled_r), and
the wall-clock seconds since the run started (wall_s). The loss curve has no knee where the coupling switches on:
only a sync measure shows it.

With --levers, each lever (name: comma-separated config overrides, e.g. `model.av_time_bias=20`) trains
configs/tiny.py once per seed in <workdir>/<lever>/seed<S> with in-loop evaluation every --eval_every steps and the
main job's own schedule, stopped (SIGTERM: saved, resumable) once it has logged --until_step. The table gives per
lever the time to sync (first step with a2v r >= --threshold; '>N' when not reached), its median and worst over
seeds, and a2v r and shuffled r at --until_step; --out also gets the curves as a PNG next to it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def curve(workdir: str) -> tuple[list[dict], float]:
  """([{'step', 'minutes', 'a2v_r', 'a2v_shuffled_r', 'gain_video_t0.9'}], median seconds per train step)."""
  from avdiff.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  rows = metrics_lib.read_metrics(workdir) if os.path.exists(os.path.join(workdir, 'metrics.jsonl')) else []
  points = [{'step': r['step'], 'minutes': r['wall_s'] / 60.0, 'a2v_r': r['eval/a2v_r'],
             'a2v_shuffled_r': r.get('eval/a2v_shuffled_r', float('nan')),
             'gain_video_t0.9': r.get('val_ema_gain_video_t0.9', float('nan'))}
            for r in rows if 'eval/a2v_r' in r and 'wall_s' in r]
  rates = [r['steps_per_s'] for r in rows if r.get('steps_per_s')]
  return points, (1.0 / float(np.median(rates)) if rates else float('nan'))


def train(workdir: str, config: str, seed: int, overrides: list[str], eval_every: int, until_step: int) -> None:
  """Trains (resuming) until metrics.jsonl holds the eval row of until_step, then stops the trainer with SIGTERM."""
  if any(p['step'] >= until_step for p in curve(workdir)[0]):
    return
  cmd = [sys.executable, '-m', 'experiments.train', f'--config={config}', f'--workdir={workdir}',
         f'--config.seed={seed}', f'--config.train.eval_every={eval_every}'] + [f'--config.{o}' for o in overrides]
  print('+', ' '.join(cmd[1:]), flush=True)
  proc = subprocess.Popen(cmd, cwd=REPO)
  while proc.poll() is None:
    time.sleep(5)
    if any(p['step'] >= until_step for p in curve(workdir)[0]):
      proc.send_signal(signal.SIGTERM)
      proc.wait()
      return
  if proc.returncode:
    raise SystemExit(f'training {workdir} failed with exit code {proc.returncode}')


def lever_rows(levers: dict[str, list[str]], workdir: str, seeds: list[int], until_step: int,
               threshold: float) -> tuple[list[str], dict]:
  """Markdown rows (one per lever) and {lever: [per-seed curve points up to until_step]}."""
  rows, curves = [], {}
  for name, overrides in levers.items():
    onsets, finals, shuffled, curves[name] = [], [], [], []
    for s in seeds:
      points = [p for p in curve(os.path.join(workdir, name, f'seed{s}'))[0] if p['step'] <= until_step]
      curves[name].append(points)
      hit = [p['step'] for p in points if p['a2v_r'] >= threshold]
      last = points[-1] if points and points[-1]['step'] == until_step else None
      onsets.append(np.nan if last is None and not hit else hit[0] if hit else np.inf)  # NaN: not run that far.
      finals.append(last['a2v_r'] if last else np.nan)
      shuffled.append(last['a2v_shuffled_r'] if last else np.nan)
    done = [v for v in onsets if not np.isnan(v)]
    fmt = lambda v: '-' if np.isnan(v) else f'>{until_step}' if np.isinf(v) else f'{v:.0f}'
    num = lambda v, spec: '-' if np.isnan(v) else format(v, spec)
    rows.append(f"| {name} | {', '.join(overrides) or '(main job)'} | {' / '.join(fmt(v) for v in onsets)} | "
                f"{fmt(np.median(done)) if done else '-'} | {fmt(max(done)) if done else '-'} | "
                f"{' / '.join(num(v, '.2f') for v in finals)} | {' / '.join(num(v, '+.2f') for v in shuffled)} |")
  return rows, curves


def plot(curves: dict, seeds: list[int], until_step: int, path: str, threshold: float) -> None:
  """a2v r against step, one panel per lever, one line per seed."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  cols = min(3, len(curves))
  rows = -(-len(curves) // cols)
  fig = Figure(figsize=(4 * cols, 3 * rows), dpi=100)
  for i, (name, runs) in enumerate(curves.items()):
    ax = fig.add_subplot(rows, cols, i + 1)
    for seed, points in zip(seeds, runs):
      if not points:
        continue
      ax.plot([p['step'] for p in points], [p['a2v_r'] for p in points], marker='.', label=f'seed {seed}')
    ax.axhline(threshold, color='grey', lw=0.8, ls='--')
    ax.set(title=name, xlabel='step', ylabel='eval/a2v_r', xlim=(0, until_step), ylim=(-0.2, 1.0))
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True, help='Run directory (per seed: <workdir>/seed<S> with --seeds).')
  p.add_argument('--config', default='configs/tiny.py')
  p.add_argument('--seeds', default='', help='Comma-separated seeds: one run per seed under <workdir>/seed<S>.')
  p.add_argument('--train', action='store_true', help='Train first (resumes if the run exists).')
  p.add_argument('--levers', default='', help="'name:override,override;name:...' ('baseline:' = no override).")
  p.add_argument('--until_step', type=int, default=1000, help='With --levers: stop each run after this step.')
  p.add_argument('--eval_every', type=int, default=100, help='With --levers: in-loop evaluation every N steps.')
  p.add_argument('--threshold', type=float, default=0.5, help='a2v r that counts as in sync.')
  p.add_argument('--out', default='', help='With --levers: markdown file for the table (and <out>.png).')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',') if s]
  if args.levers:
    levers = {}
    for item in args.levers.split(';'):
      name, _, overrides = item.partition(':')
      levers[name.strip()] = [o.strip() for o in overrides.split(',') if o.strip()]
    if args.train:
      for s in seeds:  # Seed by seed, so a stopped study still compares every lever.
        for name, overrides in levers.items():
          train(os.path.join(args.workdir, name, f'seed{s}'), args.config, s, overrides, args.eval_every,
                args.until_step)
    rows, curves = lever_rows(levers, args.workdir, seeds, args.until_step, args.threshold)
    command = ('python -m benchmarks.bench_time_to_sync ' +
               ' '.join(a if "'" not in a and ';' not in a else repr(a) for a in sys.argv[1:]))
    lines = [f'Written by `{command}` (configs/tiny.py, in-loop eval on 16 validation clips every '
             f'{args.eval_every} steps).', '',
             f'| lever | overrides | time to sync (a2v r >= {args.threshold:g}), per seed | median | worst | '
             f'a2v r at step {args.until_step} | shuffled r |', '|---|---|---|---|---|---|---|'] + rows
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
      with open(args.out, 'w') as f:
        f.write(text)
      plot(curves, seeds, args.until_step, os.path.splitext(args.out)[0] + '.png', args.threshold)
    return
  workdirs = [os.path.join(args.workdir, f'seed{s}') for s in seeds] or [args.workdir]
  if args.train:
    for s, w in zip(seeds or [None], workdirs):
      cmd = [sys.executable, '-m', 'experiments.train', f'--config={args.config}', f'--workdir={w}']
      if s is not None:
        cmd.append(f'--config.seed={s}')
      subprocess.run(cmd, cwd=REPO, check=True)
  print('| run | step | minutes | a2v_r | a2v_shuffled_r | EMA video gain at t=0.9 |')
  print('|---|---|---|---|---|---|')
  for w in workdirs:
    points, step_s = curve(w)
    for q in points:
      print(f"| {os.path.basename(w)} | {q['step']} | {q['minutes']:.1f} | {q['a2v_r']:.3f} | "
            f"{q['a2v_shuffled_r']:.3f} | {q['gain_video_t0.9']:.3f} |")
    print(f'| {os.path.basename(w)} | median train step: {step_s * 1000:.0f} ms | | | | |')


if __name__ == '__main__':
  main()
