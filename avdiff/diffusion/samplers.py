"""Samplers: DDPM ancestral, DDIM (eta), DPM-Solver++(2M), Euler and Heun, as pure functions under jit.

All samplers step a dict state x {'video': [B, ...], 'audio': [B, ...]} down a time grid 1 = t_0 > ... > t_n = 0
(`Schedule.grid_time`), with one `jax.lax.fori_loop` over the steps (the number of steps may be a traced value, so
one compiled sampler serves every step count), and see the model only through
`denoise(x, t) -> (x0_hat, eps_hat)` (dicts; t a scalar): `make_denoiser` builds it from any pred_fn and
objective. `constrain(x, t, rng) -> x` is applied after every update (conditioning: keeping a given modality or
region fixed); the identity for joint sampling.

Model evaluations (NFE) for n steps: n for ddpm / ddim / dpmpp_2m / euler, 2n - 1 for heun (its last step, into
t = 0, is an Euler step: the ODE's sigma'(t) is unbounded at t = 0 for the VP schedules).
  ddpm:     ancestral sampling from the Gaussian posterior q(x_next | x, x0_hat) (Ho et al. 2020), for any alpha, sigma.
  ddim:     x_next = alpha' x0 + sqrt(sigma'^2 - s^2) eps + s z, s^2 = eta^2 sigma'^2 (1 - SNR / SNR')
            (Song et al. 2021); eta = 1 is DDPM, eta = 0 is deterministic.
  dpmpp_2m: multistep second-order solver in log-SNR on x0 predictions (Lu et al. 2022), first order for the
            first and the last step.
  euler, heun: first / second order solvers of the probability-flow ODE dx/dt = alpha'(t) x0 + sigma'(t) eps in t;
            on the flow schedule these are the rectified-flow Euler / Heun samplers.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from avdiff.diffusion import objectives, schedules

SAMPLERS = ('ddpm', 'ddim', 'dpmpp_2m', 'euler', 'heun')


def num_evals(sampler: str, num_steps: int) -> int:
  """Model evaluations (NFE) of `sampler` with `num_steps` steps (without guidance's doubled batch)."""
  return 2 * num_steps - 1 if sampler == 'heun' else num_steps


def make_denoiser(pred_fn: Callable, schedule: schedules.Schedule, objective: str, label: jax.Array,
                  clean: Optional[dict] = None, noise: Optional[dict] = None) -> Callable:
  """denoise(x: dict, t: scalar) -> (x0_hat: dict, eps_hat: dict) from a network `pred_fn(x, t: dict [B], label)`.

  clean: {modality: value [B, ...]} given modalities, fed to the network clean at t = 0 instead of the state;
    their estimates are the given value (x0) and zeros (eps).
  noise: {modality: value [B, ...]} modalities not yet sampled: fed to the network as this pure noise at t = 1 and
    absent from the state x and from the estimates (the other modality sampled first, `conditioning.sample`).
  """
  clean, noise = clean or {}, noise or {}

  def denoise(x: dict, t: jax.Array):
    batch = next(iter(x.values())).shape[0]
    x_in = {**noise, **{k: clean.get(k, v) for k, v in x.items()}}
    t_in = {k: jnp.full((batch,), 0.0 if k in clean else t, jnp.float32) for k in x}
    t_in.update({k: jnp.ones((batch,), jnp.float32) for k in noise})
    pred = pred_fn(x_in, t_in, label)
    x0, eps = {}, {}
    for k in x:
      if k in clean:
        x0[k], eps[k] = clean[k], jnp.zeros_like(clean[k])
        continue
      alpha, sigma = schedule.alpha_sigma(t)
      x0[k], eps[k] = objectives.to_x0_eps(objective, pred[k].astype(jnp.float32), x_in[k], alpha, sigma)
    return x0, eps

  return denoise


def identity_constraint(x, t, rng):
  """No conditioning: joint sampling."""
  del t, rng
  return x


def _normal_like(rng: jax.Array, x: dict) -> dict:
  keys = jax.random.split(rng, len(x))
  return {k: jax.random.normal(key, v.shape, v.dtype) for key, (k, v) in zip(keys, sorted(x.items()))}


def _map(fn, *dicts):
  return {k: fn(*(d[k] for d in dicts)) for k in dicts[0]}


class _Grid:
  """grid[i] = time of step i of num_steps (a Python int or a traced int32 scalar)."""

  def __init__(self, schedule, num_steps):
    self.schedule, self.num_steps = schedule, num_steps

  def __getitem__(self, i):
    return self.schedule.grid_time(i, self.num_steps)


def _loop(step, x, grid, rng, constrain, start=0, stop=None, carry=()):
  """fori_loop of `step(i, x, carry, key) -> (x, carry)` over grid intervals [start, stop), constraining after each."""
  stop = grid.num_steps if stop is None else stop

  def body(i, state):
    x, carry = state
    k_step, k_con = jax.random.split(jax.random.fold_in(rng, i))
    x, carry = step(i, x, carry, k_step)
    return constrain(x, grid[i + 1], k_con), carry

  return jax.lax.fori_loop(start, stop, body, (x, carry))


def ddim(denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int, eta: float = 0.0,
         constrain: Callable = identity_constraint) -> dict:
  """DDIM; x: initial state at t = 1 (already constrained). Returns x at t = 0."""
  grid = _Grid(schedule, num_steps)

  def step(i, x, carry, key):
    (ac, sc), (an, sn) = schedule.alpha_sigma(grid[i]), schedule.alpha_sigma(grid[i + 1])
    x0, eps = denoise(x, grid[i])
    ratio = ac * sn / (sc * an)  # sqrt(SNR_cur / SNR_next) <= 1.
    s2 = jnp.clip(eta * eta * sn * sn * (1.0 - ratio * ratio), 0.0, sn * sn)
    z = _normal_like(key, x)
    new = _map(lambda a, e, n: an * a + jnp.sqrt(sn * sn - s2) * e + jnp.sqrt(s2) * n, x0, eps, z)
    return new, carry

  return _loop(step, x, grid, rng, constrain)[0]


def ddpm(denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int,
         constrain: Callable = identity_constraint) -> dict:
  """DDPM ancestral sampling: x_next ~ q(x_next | x, x0_hat), a Gaussian with
  mean (v alpha' x0 + a sigma'^2 x) / sigma^2 and variance sigma'^2 v / sigma^2, where a = alpha / alpha' and
  v = sigma^2 - a^2 sigma'^2 is the variance of the forward step from t' to t."""
  grid = _Grid(schedule, num_steps)

  def step(i, x, carry, key):
    (ac, sc), (an, sn) = schedule.alpha_sigma(grid[i]), schedule.alpha_sigma(grid[i + 1])
    x0, _ = denoise(x, grid[i])
    a = ac / an
    v = jnp.maximum(sc * sc - a * a * sn * sn, 0.0)
    std = jnp.sqrt(sn * sn * v) / sc
    z = _normal_like(key, x)
    return _map(lambda xc, d, n: (v * an * d + a * sn * sn * xc) / (sc * sc) + std * n, x, x0, z), carry

  return _loop(step, x, grid, rng, constrain)[0]


def _half_lambda(alpha, sigma):
  """log(alpha / sigma), finite at alpha = 0 or sigma = 0 (clipped to +-30)."""
  return jnp.clip(jnp.log(jnp.maximum(alpha, 1e-30)) - jnp.log(jnp.maximum(sigma, 1e-30)), -30.0, 30.0)


def dpmpp_2m(denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int,
             constrain: Callable = identity_constraint) -> dict:
  """DPM-Solver++(2M): x' = (sigma'/sigma) x + (alpha' - alpha sigma'/sigma) D, D = x0 + (x0 - x0_prev) / (2 r),
  r = h_prev / h, h = lambda' - lambda (lambda = log(alpha / sigma)); D = x0 on the first and the last step."""
  grid = _Grid(schedule, num_steps)

  def step(i, x, carry, key):
    del key
    x0_prev, lam_prev = carry
    (ac, sc), (an, sn) = schedule.alpha_sigma(grid[i]), schedule.alpha_sigma(grid[i + 1])
    lam_c, lam_n = _half_lambda(ac, sc), _half_lambda(an, sn)
    x0, _ = denoise(x, grid[i])
    r = (lam_c - lam_prev) / (lam_n - lam_c)
    second = (i > 0) & (i < num_steps - 1)
    d = _map(lambda a, b: jnp.where(second, a + (a - b) / (2.0 * r), a), x0, x0_prev)
    new = _map(lambda xc, dd: (sn / sc) * xc + (an - ac * sn / sc) * dd, x, d)
    return new, (x0, lam_c)

  carry = (_map(jnp.zeros_like, x), jnp.zeros((), jnp.float32))
  return _loop(step, x, grid, rng, constrain, carry=carry)[0]


def _velocity(schedule, x0, eps, t):
  da, ds = schedule.derivatives(t)
  return _map(lambda a, e: da * a + ds * e, x0, eps)


def euler(denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int,
          constrain: Callable = identity_constraint) -> dict:
  """Euler on the probability-flow ODE: x' = x + (t' - t) (alpha'(t) x0 + sigma'(t) eps)."""
  grid = _Grid(schedule, num_steps)

  def step(i, x, carry, key):
    del key
    x0, eps = denoise(x, grid[i])
    d = _velocity(schedule, x0, eps, grid[i])
    return _map(lambda xc, dd: xc + (grid[i + 1] - grid[i]) * dd, x, d), carry

  return _loop(step, x, grid, rng, constrain)[0]


def heun(denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int,
         constrain: Callable = identity_constraint) -> dict:
  """Heun (explicit trapezoid) on the probability-flow ODE; the final step into t = 0 is an Euler step."""
  grid = _Grid(schedule, num_steps)

  def step(i, x, carry, key):
    h = grid[i + 1] - grid[i]
    x0, eps = denoise(x, grid[i])
    d1 = _velocity(schedule, x0, eps, grid[i])
    x_e = constrain(_map(lambda xc, dd: xc + h * dd, x, d1), grid[i + 1], key)
    x0e, epse = denoise(x_e, grid[i + 1])
    d2 = _velocity(schedule, x0e, epse, grid[i + 1])
    return _map(lambda xc, a, b: xc + 0.5 * h * (a + b), x, d1, d2), carry

  x = _loop(step, x, grid, rng, constrain, stop=num_steps - 1)[0]

  def last(i, x, carry, key):
    del key
    x0, eps = denoise(x, grid[i])
    d = _velocity(schedule, x0, eps, grid[i])
    return _map(lambda xc, dd: xc + (grid[i + 1] - grid[i]) * dd, x, d), carry

  return _loop(last, x, grid, rng, constrain, start=num_steps - 1)[0]


def run(sampler: str, denoise: Callable, x: dict, rng: jax.Array, schedule: schedules.Schedule, num_steps: int,
        eta: float = 0.0, constrain: Callable = identity_constraint) -> dict:
  """Dispatches to the named sampler (eta is used by 'ddim' only)."""
  if sampler not in SAMPLERS:
    raise ValueError(f'sampler {sampler!r} is not one of {SAMPLERS}')
  if isinstance(num_steps, int) and num_steps <= 0:
    raise ValueError(f'num_steps must be positive, got {num_steps}')
  if sampler == 'ddim':
    return ddim(denoise, x, rng, schedule, num_steps, eta, constrain)
  fn = {'ddpm': ddpm, 'dpmpp_2m': dpmpp_2m, 'euler': euler, 'heun': heun}[sampler]
  return fn(denoise, x, rng, schedule, num_steps, constrain)
