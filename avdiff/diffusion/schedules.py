"""Noise schedules: x_t = alpha(t) x0 + sigma(t) eps for continuous diffusion time t in [0, 1] (0 = clean).

Three schedules, all exposed through one `Schedule` object:
  cosine: alpha^2 = f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) * pi / 2), s = 0.008 (improved DDPM), variance
    preserving; discrete with `num_train_timesteps` steps (network time t = step / num_train_timesteps).
  linear: the DDPM betas 1e-4 .. 0.02 over 1000 steps in their continuous form (VP SDE with beta_min = 0.1,
    beta_max = 20): alpha^2 = exp(-(0.1 t + 9.95 t^2)); discrete like cosine.
  flow: rectified flow, alpha = 1 - t, sigma = t, continuous. `shift` warps uniform time u to
    t = shift u / (1 + (shift - 1) u) (SD3): shift > 1 spends more of training and sampling at high noise, which
    larger inputs (more tokens / pixels) need to destroy the same amount of information.

Uniform time u in [0, 1] is what training draws and what sampling grids are spaced in; `network_time(u)` maps it to
the t the network sees (quantized to the training grid for the discrete schedules, shifted for flow).
Log-SNR = log(alpha^2 / sigma^2); it is clipped at -20 for the VP schedules at t = 1 (the improved-DDPM beta clip
at 0.999 gives about the same terminal value), so eps -> x0 conversions stay finite at the start of sampling.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import ml_collections

SCHEDULES = ('cosine', 'linear', 'flow')
_COSINE_S = 0.008
_LINEAR_BETA_MIN, _LINEAR_BETA_MAX = 0.1, 20.0
_MIN_LOG_SNR = -20.0


def shift_time(u, shift: float):
  """SD3 timestep shift: t = shift u / (1 + (shift - 1) u); identity for shift = 1. Any shape."""
  return shift * u / (1.0 + (shift - 1.0) * u)


def resolution_shift(num_tokens: int, base_tokens: int = 256, base_shift: float = 1.0) -> float:
  """Shift for an input of `num_tokens` tokens (or pixels) given the shift `base_shift` tuned at `base_tokens`.

  Keeps the per-token signal-to-noise ratio of the base resolution: shift scales with sqrt(n / n_base) (SD3 Sec. 5.3.2).
  """
  return base_shift * math.sqrt(num_tokens / base_tokens)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """alpha(t), sigma(t), log-SNR(t) of one schedule; t any shape, float32."""
  name: str
  num_train_timesteps: int = 1000
  shift: float = 1.0

  def __post_init__(self):
    if self.name not in SCHEDULES:
      raise ValueError(f'schedule {self.name!r} is not one of {SCHEDULES}')

  @property
  def discrete(self) -> bool:
    return self.name != 'flow'

  def alpha_sigma(self, t):
    """(alpha, sigma) at time t; alpha(0) = 1 and sigma(0) = 0 exactly."""
    t = jnp.asarray(t, jnp.float32)
    if self.name == 'flow':
      return 1.0 - t, t
    alpha2 = jnp.exp(self._log_alpha2(t))
    alpha2 = jnp.maximum(alpha2, 1.0 / (1.0 + math.exp(-_MIN_LOG_SNR)))
    return jnp.sqrt(alpha2), jnp.sqrt(1.0 - alpha2)

  def _log_alpha2(self, t):
    if self.name == 'linear':
      return -(_LINEAR_BETA_MIN * t + 0.5 * (_LINEAR_BETA_MAX - _LINEAR_BETA_MIN) * t * t)
    f = lambda x: jnp.log(jnp.maximum(jnp.cos((x + _COSINE_S) / (1 + _COSINE_S) * math.pi / 2), 1e-20) ** 2)
    return jnp.minimum(f(t) - f(jnp.zeros_like(t)), 0.0)

  def derivatives(self, t):
    """(d alpha / dt, d sigma / dt) at t > 0 (analytic, without the terminal log-SNR clip); for ODE solvers."""
    t = jnp.asarray(t, jnp.float32)
    if self.name == 'flow':
      return -jnp.ones_like(t), jnp.ones_like(t)
    alpha, sigma = self.alpha_sigma(t)
    if self.name == 'linear':
      dalpha = -0.5 * alpha * (_LINEAR_BETA_MIN + (_LINEAR_BETA_MAX - _LINEAR_BETA_MIN) * t)
    else:
      g = lambda x: (x + _COSINE_S) / (1 + _COSINE_S) * math.pi / 2
      dalpha = -jnp.sin(g(t)) * (math.pi / 2 / (1 + _COSINE_S)) / math.cos(g(0.0))
    return dalpha, -alpha * dalpha / sigma

  def log_snr(self, t):
    """log(alpha^2 / sigma^2); +inf at t = 0."""
    alpha, sigma = self.alpha_sigma(t)
    return 2.0 * (jnp.log(alpha) - jnp.log(sigma))

  def network_time(self, u):
    """Uniform time u in [0, 1] -> network time t: rounded to the step grid k / N (discrete) or shifted (flow)."""
    u = jnp.asarray(u, jnp.float32)
    if self.discrete:
      n = self.num_train_timesteps
      return jnp.round(u * n) / n
    return shift_time(u, self.shift)

  def train_time(self, u):
    """Training time from u ~ U[0, 1): steps 1..N (discrete, never the clean t = 0) or shifted u (flow)."""
    u = jnp.asarray(u, jnp.float32)
    if self.discrete:
      n = self.num_train_timesteps
      return (jnp.floor(u * n) + 1.0) / n
    return shift_time(u, self.shift)

  def grid_time(self, i, num_steps):
    """Time of sampling step i of num_steps (both may be traced): network_time(1 - i / num_steps); 1 at i = 0,
    exactly 0 at i = num_steps."""
    return self.network_time(1.0 - jnp.asarray(i, jnp.float32) / jnp.asarray(num_steps, jnp.float32))

  def sampling_grid(self, num_steps: int):
    """Decreasing times [num_steps + 1] from 1 to 0 spaced evenly in u."""
    return self.grid_time(jnp.arange(num_steps + 1), num_steps)


def from_config(diffusion_cfg: ml_collections.ConfigDict) -> Schedule:
  """The schedule named by diffusion_cfg.schedule, with its num_train_timesteps and flow_shift."""
  return Schedule(diffusion_cfg.schedule, int(diffusion_cfg.num_train_timesteps), float(diffusion_cfg.flow_shift))
