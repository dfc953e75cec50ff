"""Input pipeline throughput next to what one training step consumes.

    python -m benchmarks.bench_data [--configs=tiny,base] [--dataset=talking] [--batches=30] [--skip_train]

Per config: clips/s of the procedural generator, of the one-off TFDS build, of the host pipeline (grain over the
ArrayRecord source: read, decode, batch), and of pipeline + `to_device` (global arrays on the local mesh, video
converted to float on device). The last column is the clips/s one jitted training step of the diffusion model
consumes on the same machine (global batch / step time, after compilation), or 'n/a' when the training code is
not available. The pipeline should deliver >= 5x that so training never waits on data.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from avdiff import config_lib
from avdiff.data import audio as audio_lib
from avdiff.data import builders, pipeline, synthetic
from configs import base, tiny

_CONFIGS = {'tiny': tiny.get_config, 'base': base.get_config}


def _rate(fn, clips: int) -> float:
  start = time.perf_counter()
  fn()
  return clips / (time.perf_counter() - start)


def generator_rate(config, n: int = 40) -> float:
  synthetic.make_clip(config.data.dataset, 0, config.data)
  return _rate(lambda: [synthetic.make_clip(config.data.dataset, s, config.data) for s in range(n)], n)


def build_rate(config) -> float:
  d = config.data
  audio_lib.log_mel(np.zeros(config_lib.num_samples(d), np.float32), d)  # librosa's one-off start-up.
  total = d.num_train + d.num_validation + d.num_test
  return _rate(lambda: builders.prepare(config), total)


def pipeline_rate(config, batches: int, device: bool) -> float:
  pipe = pipeline.InputPipeline(config, 'train')
  mesh = jax.make_mesh((jax.device_count(),), ('data',))

  def step():
    batch = next(pipe)
    if device:
      arrays = pipeline.to_device(batch, mesh, ('data',))
      jax.block_until_ready(arrays)

  for _ in range(2):  # Warm-up: thread start-up, jit of the video conversion.
    step()
  rate = _rate(lambda: [step() for _ in range(batches)], batches * pipe.global_batch_size)
  pipe.close()
  return rate


def train_step_rate(config, steps: int = 5) -> str:
  """Clips/s one diffusion train step consumes (global batch / step time), or 'n/a (why)'."""
  try:
    from avdiff import parallel  # pylint: disable=g-import-not-at-top
    from avdiff.train import optim  # pylint: disable=g-import-not-at-top
    from avdiff.train import state as state_lib  # pylint: disable=g-import-not-at-top
    from avdiff.train import step as step_lib  # pylint: disable=g-import-not-at-top
    from avdiff.train.tasks import DiffusionTask  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    return f'n/a ({e.name} not importable)'
  try:
    mesh = parallel.make_mesh(config.mesh)
    task = DiffusionTask(config)
    tx = optim.make_optimizer(config.train)
    model, _, shardings, state = state_lib.create(config, task, tx, mesh)
    train_step = step_lib.make_train_step(config, task, model, tx, mesh, shardings)
    frozen = task.frozen_params()
    pipe = pipeline.InputPipeline(config, 'train')
    batch = pipeline.to_device(next(pipe), mesh, tuple(config.mesh.data_axes))
    pipe.close()
    state, metrics = train_step(state, batch, frozen)  # Compile.
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = train_step(state, batch, frozen)
    jax.block_until_ready(metrics)
    return f'{steps * config.train.global_batch_size / (time.perf_counter() - start):.1f}'
  except Exception as e:  # pylint: disable=broad-except  # Report, do not hide, a training stack still in progress.
    return f'n/a ({type(e).__name__}: {str(e)[:80]})'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default='tiny,base')
  parser.add_argument('--dataset', default='talking', choices=synthetic.DATASETS)
  parser.add_argument('--batches', type=int, default=30)
  parser.add_argument('--data_dir', default='', help='TFDS dir (default: a fresh temporary dir, so builds are timed)')
  parser.add_argument('--skip_train', action='store_true')
  parser.add_argument('--json', default='', help='Also write the results here.')
  args = parser.parse_args()

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.configs.split(','):
      config = _CONFIGS[name]()
      config.data.dataset = args.dataset
      config.data.data_dir = args.data_dir or os.path.join(tmp, name)
      row = {'config': name, 'dataset': args.dataset, 'batch': config.train.global_batch_size,
             'generator': generator_rate(config), 'build': build_rate(config),
             'pipeline': pipeline_rate(config, args.batches, device=False),
             'to_device': pipeline_rate(config, args.batches, device=True),
             'train_step': 'skipped' if args.skip_train else train_step_rate(config)}
      rows.append(row)
      print(json.dumps(row), flush=True)

  print(f'\n{jax.device_count()} {jax.devices()[0].platform} device(s), {os.cpu_count()} CPU cores\n')
  print('| config | dataset | global batch | generator clips/s | TFDS build clips/s | pipeline clips/s | '
        'pipeline + to_device clips/s | train step consumes clips/s |')
  print('|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["config"]} | {r["dataset"]} | {r["batch"]} | {r["generator"]:.0f} | {r["build"]:.0f} | '
          f'{r["pipeline"]:.0f} | {r["to_device"]:.0f} | {r["train_step"]} |')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  np.set_printoptions(precision=3)
  main()
