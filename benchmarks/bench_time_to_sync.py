"""Time to sync: audio_to_video lip-sync r of the main job against training wall-clock minutes, and its step time.

    python -m benchmarks.bench_time_to_sync --workdir=runs/tiny            # read a finished run's metrics.jsonl
    python -m benchmarks.bench_time_to_sync --workdir=/tmp/tts --train     # train configs/tiny.py there first
        [--config=configs/tiny.py] [--seeds=0,1,2]

The main config logs, at every eval step (train.eval_every, train.eval_samples), the mean Pearson r between the
mouth opening of audio_to_video samples of its EMA params and the conditioning audio's envelope on
train.eval_clips held-out clips (eval/a2v_r), the same against another clip's audio (eval/a2v_shuffled_r), and the
wall-clock seconds since the run started (wall_s, compilation and evaluation included). This prints that curve as
a markdown table, one column pair per seed, plus the median train step time between logs (steps / s of the
logging windows, evaluation excluded). The loss curve has no knee where the coupling switches on: only a sync
measure shows it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def curve(workdir: str) -> tuple[list[dict], float]:
  """([{'step', 'minutes', 'a2v_r', 'a2v_shuffled_r', 'gain_video_t0.9'}], median seconds per train step)."""
  from avdiff.train import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  rows = metrics_lib.read_metrics(workdir)
  points = [{'step': r['step'], 'minutes': r['wall_s'] / 60.0, 'a2v_r': r['eval/a2v_r'],
             'a2v_shuffled_r': r.get('eval/a2v_shuffled_r', float('nan')),
             'gain_video_t0.9': r.get('val_ema_gain_video_t0.9', float('nan'))}
            for r in rows if 'eval/a2v_r' in r and 'wall_s' in r]
  rates = [r['steps_per_s'] for r in rows if r.get('steps_per_s')]
  return points, (1.0 / float(np.median(rates)) if rates else float('nan'))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--workdir', required=True, help='Run directory (per seed: <workdir>/seed<S> with --seeds).')
  p.add_argument('--config', default='configs/tiny.py')
  p.add_argument('--seeds', default='', help='Comma-separated seeds: one run per seed under <workdir>/seed<S>.')
  p.add_argument('--train', action='store_true', help='Train first (resumes if the run exists).')
  args = p.parse_args()
  seeds = [int(s) for s in args.seeds.split(',') if s]
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
