"""Checkpoint save and restore time of configs/tiny.py's train state: a local run directory against a bucket.

    python -m benchmarks.bench_checkpoint [--repeats=5] [--bucket=gs://BUCKET/PREFIX] [--out=FILE.md]

Without --bucket the bucket is the GCS emulator the tests use (fake-gcs-server on localhost, tests/gcs_emulator.py;
needs requirements-dev.txt): it measures the client path (Orbax -> TensorStore -> HTTP JSON API, gcsfs for the
metadata) without network latency, so a real bucket is slower by its round trips. Each save is timed to its end
(`wait_until_finished`, the async write included) through `avdiff.checkpoint.save`, the one the training loop
uses; each restore is `avdiff.checkpoint.restore` of the full state (params, EMA params, Adam moments, step, RNG)
into its shardings. Median and min over the repeats, on one CPU device.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import argparse
import shutil
import statistics
import tempfile
import time

import jax
import numpy as np

from avdiff import checkpoint
from avdiff import parallel
from avdiff.train import optim
from avdiff.train import state as state_lib
from avdiff.train import tasks
from benchmarks import report
from configs import tiny


def _state():
  """(config, abstract state, shardings, state) of configs/tiny.py's diffusion run on one device."""
  config, task = tasks.build('diffusion', tiny.get_config())
  mesh = parallel.make_mesh(config.mesh)
  tx = optim.make_optimizer(config.train)
  _, abstract, shardings, state = state_lib.create(config, task, tx, mesh)
  return config, abstract, shardings, jax.block_until_ready(state)


def _time(workdir: str, config, abstract, shardings, state, repeats: int) -> dict:
  """Seconds per save (to completion) and per full restore of `state` in workdir's checkpoints/."""
  manager = checkpoint.make_manager(workdir, config.train)
  saves, restores = [], []
  for step in range(1, repeats + 1):
    start = time.perf_counter()
    checkpoint.save(manager, step, state, b'{}', config, force=True)
    manager.wait_until_finished()
    saves.append(time.perf_counter() - start)
    start = time.perf_counter()
    restored, _, _ = checkpoint.restore(manager, step, abstract, shardings)
    jax.block_until_ready(restored)
    restores.append(time.perf_counter() - start)
  manager.close()
  return {'save': saves, 'restore': restores}


def _row(where: str, times: dict, megabytes: float) -> str:
  cell = lambda xs: f'{statistics.median(xs):.2f} (min {min(xs):.2f})'
  return (f'| {where} | {megabytes:.1f} | {cell(times["save"])} | {cell(times["restore"])} | '
          f'{megabytes / statistics.median(times["save"]):.0f} | {megabytes / statistics.median(times["restore"]):.0f} |')


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--bucket', default='', help='gs://BUCKET/PREFIX (default: the local GCS emulator)')
  parser.add_argument('--out', default='', help='Also write the table to this markdown file.')
  args = parser.parse_args()

  emulator = None
  bucket = args.bucket
  local_root = tempfile.mkdtemp(prefix='bench_checkpoint_')
  if not bucket:
    from tests import gcs_emulator  # pylint: disable=g-import-not-at-top  (test-only dependency)
    emulator = gcs_emulator.GcsEmulator(os.path.join(local_root, 'gcs'))
    emulator.start()
    gcs_emulator.use_in_process(emulator)
    bucket = emulator.create_bucket('bench')
  try:
    config, abstract, shardings, state = _state()
    megabytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state)) / 2**20
    local = _time(os.path.join(local_root, 'run'), config, abstract, shardings, state, args.repeats)
    remote = _time(f'{bucket.rstrip("/")}/bench_run', config, abstract, shardings, state, args.repeats)
  finally:
    if emulator is not None:
      emulator.stop()
    shutil.rmtree(local_root, ignore_errors=True)
  where = 'GCS emulator (localhost)' if emulator is not None else bucket
  report.emit([
      f'Checkpoint of configs/tiny.py\'s train state ({megabytes:.1f} MiB: params, EMA params, Adam moments), '
      f'seconds, median of {args.repeats} (min); {jax.device_count()} CPU device, async save timed to its end.',
      '',
      '| run directory | MiB | save s | restore s | save MiB/s | restore MiB/s |',
      '| --- | --- | --- | --- | --- | --- |',
      _row('local disk', local, megabytes),
      _row(where, remote, megabytes),
  ], args.out)


if __name__ == '__main__':
  main()
