"""Training throughput on CPU and per-device memory of the pod config, for planning a run before paying for one.

    python -m benchmarks.bench_train                      # both parts
    python -m benchmarks.bench_train --part=cpu --configs=tiny,base --steps=5
    python -m benchmarks.bench_train --part=memory --devices=8,64
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m benchmarks.bench_train --part=cpu   # as the Makefile runs jobs

cpu: the full jitted train step (loss, grads, AdamW, EMA; synthetic batches, no input pipeline) of each config on
  one CPU device (all cores), in float32 (bf16 matmuls are emulated on most CPUs): step time, clips/s, tokens/s,
  model TFLOP/s and MFU against the float32 matmul rate measured in the same process (around every timed step;
  medians over the steps). Model FLOPs per step =
  3 x forward FLOPs x global batch, forward FLOPs from `avdiff.train.flops.dit_forward_flops` (its docstring has
  the formula; matmuls + attention only, no credit for remat).
memory: compiles the train step of configs/pod_1b.py (FSDP over all devices, frozen AE encoder included) on 8 and
  64 fake CPU devices, each in a child process (the device count is fixed when JAX starts), and reports
  `compiled.memory_analysis()` per device: arguments (state + batch), outputs, temporaries (activations,
  gradients), and the total. Nothing is executed, so no memory is allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name: str):
  import importlib  # pylint: disable=g-import-not-at-top
  return importlib.import_module(f'configs.{name}').get_config()


def _synthetic_batch(config, batch_size: int):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from avdiff import config_lib  # pylint: disable=g-import-not-at-top
  d = config.data
  rng = np.random.default_rng(0)
  t, ta = config_lib.num_frames(d), config_lib.num_mel_frames(d)
  return {'video': rng.uniform(-1, 1, (batch_size, t, d.resolution, d.resolution, 3)).astype(np.float32),
          'audio_mel': rng.uniform(-1, 1, (batch_size, ta, d.n_mels)).astype(np.float32),
          'label': (np.arange(batch_size) % config.model.num_classes).astype(np.int32)}


def bench_cpu(name: str, steps: int, batch_size: int = 0, overrides: str = '') -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  from avdiff import config_lib, parallel  # pylint: disable=g-import-not-at-top
  from avdiff.train import flops, optim, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  from avdiff.train.tasks import DiffusionTask  # pylint: disable=g-import-not-at-top
  config = _override(_config(name), overrides)
  config.model.dtype = 'float32'
  config.mesh.shape = ml_collections.ConfigDict({'data': 1, 'fsdp': 1, 'tensor': 1})
  if batch_size:
    config.train.global_batch_size = batch_size
  lay = config_lib.validate(config, 1)
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  task = DiffusionTask(config)
  tx = optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings)
  batch_size = config.train.global_batch_size
  batch = jax.device_put(_synthetic_batch(config, batch_size), parallel.batch_sharding(mesh, config.mesh.data_axes))
  start = time.perf_counter()
  compiled = fn.lower(state, batch, None).compile()
  compile_s = time.perf_counter() - start
  for _ in range(2):
    state, m = compiled(state, batch, None)
  jax.block_until_ready(m)
  # The host is shared and its deliverable rate drifts between minutes: each timed step is bracketed by matmul-rate
  # measurements, and its MFU uses the mean of the two; the median over steps is reported.
  model_flops = flops.train_flops_per_clip(config) * batch_size
  times, rates = [], []
  before = flops.measure_matmul_flops(n=2048)
  for _ in range(steps):
    start = time.perf_counter()
    state, m = compiled(state, batch, None)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - start)
    after = flops.measure_matmul_flops(n=2048)
    rates.append((before + after) / 2)
    before = after
  mfus = [model_flops / t / r for t, r in zip(times, rates)]
  med = lambda xs: float(np.median(xs))
  step_s = med(times)
  return {'config': name, 'overrides': overrides, 'params_M': round(model.num_params / 1e6, 2), 'batch': batch_size,
          'tokens_per_clip': lay.num_tokens, 'compile_s': round(compile_s, 1), 'step_s': round(step_s, 4),
          'clips_per_s': round(batch_size / step_s, 2), 'tokens_per_s': round(batch_size * lay.num_tokens / step_s),
          'model_gflop_per_step': round(model_flops / 1e9, 2), 'achieved_gflops': round(model_flops / step_s / 1e9, 2),
          'matmul_gflops': round(med(rates) / 1e9, 2), 'mfu': round(med(mfus), 3),
          'mfu_per_step': [round(x, 3) for x in mfus], 'step_s_per_step': [round(x, 2) for x in times],
          'glibc_tunables': os.environ.get('GLIBC_TUNABLES', '')}  # the Makefile sets glibc.malloc.hugetlb=1


def _override(config, overrides: str):
  """'model.remat=full;train.global_batch_size=64' -> assigns (values parsed as Python literals when possible)."""
  import ast  # pylint: disable=g-import-not-at-top
  for item in filter(None, overrides.split(';')):
    key, value = item.split('=', 1)
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    *path, name = key.split('.')
    node = config
    for part in path:
      node = node[part]
    node[name] = value
  return config


def bench_memory_child(config_name: str, overrides: str = '') -> dict:
  """Runs inside a child process started with N fake devices."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from avdiff import config_lib, models, parallel  # pylint: disable=g-import-not-at-top
  from avdiff import checkpoint  # pylint: disable=g-import-not-at-top
  from avdiff.train import optim  # pylint: disable=g-import-not-at-top
  from avdiff.train import state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  from avdiff.train.tasks import DiffusionTask  # pylint: disable=g-import-not-at-top
  config = _override(_config(config_name), overrides)
  n = jax.device_count()
  lay = config_lib.validate(config, n)
  mesh = parallel.make_mesh(config.mesh)
  ae = nnx.eval_shape(lambda: models.build_autoencoder(config, nnx.Rngs(0)))
  task = DiffusionTask(config, autoencoder=ae)
  tx = optim.make_optimizer(config.train)
  model, abstract, shardings, _ = state_lib.create(config, task, tx, mesh, materialize=False)
  frozen = task.frozen_params()
  frozen_sh = jax.tree.map(lambda _: parallel.replicated(mesh), frozen)
  fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings, frozen_sh)
  d, b = config.data, config.train.global_batch_size
  bsh = parallel.batch_sharding(mesh, config.mesh.data_axes)
  batch = {'video': jax.ShapeDtypeStruct((b, config_lib.num_frames(d), d.resolution, d.resolution, 3), jnp.float32,
                                         sharding=bsh),
           'audio_mel': jax.ShapeDtypeStruct((b, config_lib.num_mel_frames(d), d.n_mels), jnp.float32, sharding=bsh),
           'label': jax.ShapeDtypeStruct((b,), jnp.int32, sharding=bsh)}
  start = time.perf_counter()
  compiled = fn.lower(checkpoint.with_shardings(abstract, shardings), batch,
                      checkpoint.with_shardings(frozen, frozen_sh)).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  gib = 2 ** 30
  args, out, temp = mem.argument_size_in_bytes, mem.output_size_in_bytes, mem.temp_size_in_bytes
  alias = getattr(mem, 'alias_size_in_bytes', 0)
  params = model.num_params
  return {'config': config_name, 'overrides': overrides, 'devices': n, 'mesh': dict(mesh.shape),
          'params_B': round(params / 1e9, 3),
          'tokens_per_clip': lay.num_tokens, 'global_batch': b, 'clips_per_device': b // n,
          'state_gib_per_device_expected': round(16 * params / n / gib, 2),
          'arguments_gib': round(args / gib, 2), 'outputs_gib': round(out / gib, 2),
          'aliased_gib': round(alias / gib, 2), 'temp_gib': round(temp / gib, 2),
          'total_gib': round((args + out - alias + temp) / gib, 2), 'compile_s': round(compile_s, 1)}


def bench_memory(config_name: str, devices: int, overrides: str = '') -> dict:
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  out = subprocess.run([sys.executable, '-m', 'benchmarks.bench_train', '--part=memory_child',
                        f'--memory_config={config_name}', f'--memory_overrides={overrides}'],
                       cwd=REPO, env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(out.stderr[-3000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_table(rows: list[dict], command: str) -> list[str]:
  """Markdown of the cpu rows: per config its step time, the ratio to the first row's and the MFU."""
  first = rows[0]['step_s']
  lines = [f'Written by `{command}` (median over the timed steps, one process, synthetic batches).', '',
           '| config | params (M) | step (s) | step / first row\'s | model GFLOP/s | matmul GFLOP/s | MFU |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['config']} | {r['params_M']} | {r['step_s']:.3f} | {r['step_s'] / first:.2f} | "
                 f"{r['achieved_gflops']} | {r['matmul_gflops']} | {r['mfu']} |")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--part', default='all', choices=['all', 'cpu', 'memory', 'memory_child'])
  parser.add_argument('--configs', default='tiny,base')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--batch', type=int, default=0, help='Global batch of the cpu part (0 = the config value).')
  parser.add_argument('--cpu_overrides', default='',
                      help="Config overrides for the cpu part, e.g. 'train.grad_accum_steps=4'.")
  parser.add_argument('--memory_config', default='pod_1b')
  parser.add_argument('--devices', default='8,64')
  parser.add_argument('--memory_overrides', default='',
                      help="Config overrides for the memory part, e.g. 'model.remat=full;train.global_batch_size=64'.")
  parser.add_argument('--out', default='', help='Markdown file for the cpu rows (step time relative to the first '
                      'config, MFU against the same-run matmul rate).')
  args = parser.parse_args()
  if args.part == 'memory_child':
    print(json.dumps(bench_memory_child(args.memory_config, args.memory_overrides)))
    return
  rows = []
  if args.part in ('all', 'cpu'):
    os.environ.setdefault('JAX_PLATFORMS', 'cpu')
    for name in args.configs.split(','):
      rows.append(bench_cpu(name, args.steps, args.batch, args.cpu_overrides))
      print(json.dumps(rows[-1]), flush=True)
  if args.out and rows:
    report.emit(cpu_table(rows, 'python -m benchmarks.bench_train ' + ' '.join(sys.argv[1:])), args.out)
  if args.part in ('all', 'memory'):
    for n in (int(x) for x in args.devices.split(',')):
      rows.append(bench_memory(args.memory_config, n, args.memory_overrides))
      print(json.dumps(rows[-1]), flush=True)


if __name__ == '__main__':
  main()
