"""Sampler accuracy per model evaluation on the known-answer model, and sampling throughput with the real DiT.

    python -m benchmarks.bench_sampling [--setups=flow,eps_cosine] [--samples=131072] [--configs=tiny,base]
        [--skip_accuracy] [--skip_speed] [--base_steps=4]

1. Accuracy: jointly Gaussian video/audio data (7 coordinates, correlated, stds 0.2..1) with its exact optimal
   denoiser (`avdiff.diffusion.gaussian`). Error of a sampler's output law = max over coordinates of
   |mean - mean_ref| / std_ref and |std / std_ref - 1|, against 1000-step DDPM (the issue's reference) and against
   the exact data law. Deterministic samplers are affine maps of the initial noise here, so their output moments
   are computed exactly (from D + 1 runs); DDPM's from `--samples` Monte Carlo samples (relative standard error of
   a std ~1 / sqrt(2 samples): 0.2% at 131072). For the deterministic samplers also the RMS whitened distance to
   the exact probability-flow ODE solution. The table ends with the model evaluations (NFE) each sampler needs to
   get within 1% of 1000-step DDPM.
2. Speed: clips/s of `diffusion.sample` (joint mode) with `avdiff.models.build_dit` at the tiny and base configs,
   each sampler at the config's `num_sampling_steps`, after a compile-and-warm-up call. Base on a CPU is timed with
   `--base_steps` steps and reported per model evaluation and extrapolated to the configured steps (marked *).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avdiff import config_lib, diffusion
from avdiff.diffusion import gaussian, samplers, schedules

SETUPS = {'flow': ('flow', 'flow'), 'eps_cosine': ('eps', 'cosine'), 'v_cosine': ('v', 'cosine')}
STEPS = (5, 10, 20, 50, 100, 200, 500, 1000)
DATA = gaussian.random_gaussian(0, {'video': (2, 2, 1), 'audio': (3, 1)}, correlation=0.8)


def _stat_error(mean, std, ref_mean, ref_std) -> float:
  return float(max(np.max(np.abs(mean - ref_mean) / ref_std), np.max(np.abs(std / ref_std - 1.0))))


def accuracy_table(setup: str, num: int) -> list[str]:
  objective, schedule_name = SETUPS[setup]
  schedule = schedules.Schedule(schedule_name)
  pred_fn = DATA.pred_fn(schedule, objective, shared_t=True)
  d = DATA.mean.shape[0]
  # With the Gaussian denoiser a deterministic sampler is an affine map x1 -> M x1 + b: running it on 0 and the unit
  # vectors gives its exact output law N(b, M M^T) for x1 ~ N(0, I), without Monte Carlo noise.
  basis = DATA.unflatten(jnp.concatenate([jnp.zeros((1, d)), jnp.eye(d)]))
  noise = DATA.unflatten(jax.random.normal(jax.random.key(0), (num, d)))
  inv = np.linalg.inv(np.linalg.cholesky(DATA.cov))
  exact = np.asarray(DATA.flatten(DATA.ode_solution(basis, schedule)), np.float64)
  exact_m = exact[1:] - exact[0]

  def runner(sampler, batch):
    den = samplers.make_denoiser(pred_fn, schedule, objective, jnp.zeros((batch,), jnp.int32))
    return jax.jit(lambda x, r, n: samplers.run(sampler, den, x, r, schedule, n))

  runners = {s: runner(s, num if s == 'ddpm' else d + 1) for s in samplers.SAMPLERS}

  def moments(sampler, n):
    """(mean [D], std [D], ODE error or None) of the sampler's output."""
    x = noise if sampler == 'ddpm' else basis
    flat = np.asarray(DATA.flatten(runners[sampler](x, jax.random.key(1), jnp.int32(n))), np.float64)
    if sampler == 'ddpm':
      return flat.mean(0), flat.std(0), None
    m = flat[1:] - flat[0]  # Rows: images of the unit vectors (M^T).
    ode = float(np.sqrt(np.sum(np.square((m - exact_m) @ inv.T)) / d))
    return flat[0], np.sqrt(np.sum(m * m, axis=0)), ode

  ref_mean, ref_std, _ = moments('ddpm', 1000)
  true_std = np.sqrt(np.diag(DATA.cov))
  lines = [f'### Known-answer model, objective={objective}, schedule={schedule_name}',
           f'DDPM: {num} Monte Carlo samples (relative standard error of a std ~{100 / np.sqrt(2 * num):.2f}%); '
           'deterministic samplers: exact output moments. 1000-step DDPM vs the exact law: '
           f'{100 * _stat_error(ref_mean, ref_std, DATA.mean, true_std):.2f}%', '',
           '| sampler | steps | NFE | error vs DDPM-1000 | error vs exact law | ODE error (whitened RMS) |',
           '|---|---|---|---|---|---|']
  first, first_exact = {}, {}
  for sampler in samplers.SAMPLERS:
    for n in STEPS:
      nfe = samplers.num_evals(sampler, n)
      if nfe > 1000:
        continue
      t0 = time.perf_counter()
      mean, std, ode = moments(sampler, n)
      err_ref = _stat_error(mean, std, ref_mean, ref_std)
      err_true = _stat_error(mean, std, DATA.mean, true_std)
      if err_ref < 0.01 and sampler not in first:
        first[sampler] = nfe
      if err_true < 0.01 and sampler not in first_exact:
        first_exact[sampler] = nfe
      ode_s = '—' if ode is None else f'{ode:.2e}'
      lines.append(f'| {sampler} | {n} | {nfe} | {100 * err_ref:.2f}% | {100 * err_true:.2f}% | {ode_s} |')
      print(lines[-1], f'({time.perf_counter() - t0:.1f} s)', flush=True)
  lines += ['', '| sampler | NFE to within 1% of DDPM-1000 | NFE to within 1% of the exact law |', '|---|---|---|']
  lines += [f'| {s} | {first.get(s, "> 1000")} | {first_exact.get(s, "> 1000")} |' for s in samplers.SAMPLERS]
  return lines


def speed_table(config_names: list[str], base_steps: int) -> list[str]:
  try:
    from flax import nnx  # pylint: disable=g-import-not-at-top
    from avdiff.models import build_dit  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # The model package is built separately.
    return [f'clips/s: pending (avdiff.models.build_dit not importable: {e})']
  from configs import base, tiny  # pylint: disable=g-import-not-at-top
  lines = ['| config | batch | sampler | steps | NFE | s per model evaluation | clips/s |', '|---|---|---|---|---|---|---|']
  for name in config_names:
    config = {'tiny': tiny, 'base': base}[name].get_config()
    lay = config_lib.validate(config)
    batch = 4 if name == 'tiny' else 2
    shapes = {'video': (batch,) + tuple(lay.video_latent), 'audio': (batch,) + tuple(lay.audio_latent)}
    graphdef, state = nnx.split(build_dit(config, nnx.Rngs(0)))
    label = jnp.arange(batch, dtype=jnp.int32) % config.model.num_classes
    on_cpu = jax.default_backend() == 'cpu'
    steps = config.diffusion.num_sampling_steps
    timed_steps = base_steps if (name == 'base' and on_cpu) else steps
    for sampler in samplers.SAMPLERS:
      df = ml_collections.ConfigDict(config.diffusion.to_dict())
      df.sampler = sampler

      @jax.jit
      def run(st, rng, df=df):
        model = nnx.merge(graphdef, st)
        return diffusion.sample(lambda x, t, lab: model(x, t, lab), shapes, label, rng, df,
                                null_label=config.model.num_classes, num_steps=timed_steps)

      jax.block_until_ready(run(state, jax.random.key(0)))
      t0 = time.perf_counter()
      jax.block_until_ready(run(state, jax.random.key(1)))
      dt = time.perf_counter() - t0
      per_eval = dt / samplers.num_evals(sampler, timed_steps)
      total = per_eval * samplers.num_evals(sampler, steps)
      star = '*' if timed_steps != steps else ''
      lines.append(f'| {name} | {batch} | {sampler} | {steps} | {samplers.num_evals(sampler, steps)} | '
                   f'{per_eval:.3f} | {batch / total:.3g}{star} |')
      print(lines[-1], flush=True)
  return lines


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--setups', default='flow,eps_cosine')
  p.add_argument('--samples', type=int, default=131072)
  p.add_argument('--configs', default='tiny,base')
  p.add_argument('--base_steps', type=int, default=4)
  p.add_argument('--skip_accuracy', action='store_true')
  p.add_argument('--skip_speed', action='store_true')
  args = p.parse_args()
  print(f'backend: {jax.default_backend()}, devices: {jax.device_count()}')
  out = []
  if not args.skip_accuracy:
    for setup in args.setups.split(','):
      out += accuracy_table(setup, args.samples) + ['']
  if not args.skip_speed:
    out += speed_table(args.configs.split(','), args.base_steps)
  print('\n'.join(out))


if __name__ == '__main__':
  main()
