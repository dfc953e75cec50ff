"""Denoising gain per noise level: does the network's clean-signal estimate beat predicting the data mean?

The diagnostic of Li & He (2025) that tells at once whether a diffusion model learned: at each time t both
modalities are noised to t, the network's output is converted to an x0 estimate (any objective), and its error is
compared with the error of the best constant, the per-coordinate mean of the clips. gain = x0 error / mean error:
below 1 the model denoises; at or above 1 (typically at high noise) sampling from noise cannot reach the data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from avdiff.diffusion import objectives, schedules

TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
MODALITIES = ('video', 'audio')


def denoising_errors(pred_fn: Callable, x0: dict, label: jax.Array, rng: jax.Array,
                     diffusion_cfg: ml_collections.ConfigDict, times: Sequence[float] = TIMES) -> dict:
  """Mean-squared x0 errors of `pred_fn` and of the batch mean at each time. Pure and jittable.

  Args:
    pred_fn: (x_t dict, t dict of [B], label [B]) -> raw network outputs (config.diffusion.objective).
    x0: clean latents {'video': [B, ...], 'audio': [B, ...]} (B >= 2).
    label: int32 [B] conditioning labels.
    rng: PRNG key (the same key gives the same noise: errors are comparable across checkpoints).
    diffusion_cfg: config.diffusion.
    times: network times t in (0, 1], shared by both modalities.
  Returns:
    {'<modality>/x0_mse': [len(times)], '<modality>/mean_mse': [len(times)]} float32. The mean baseline is the
    per-coordinate mean over the B clips (it does not depend on t).
  """
  schedule = schedules.from_config(diffusion_cfg)
  batch = label.shape[0]
  mean_mse = {m: jnp.mean(jnp.square(jnp.mean(x0[m], axis=0, keepdims=True) - x0[m])) for m in MODALITIES}
  x0_mse = {m: [] for m in MODALITIES}
  for i, t in enumerate(times):
    keys = jax.random.split(jax.random.fold_in(rng, i), len(MODALITIES))
    alpha, sigma = schedule.alpha_sigma(jnp.float32(t))
    x_t = {m: alpha * x0[m] + sigma * jax.random.normal(k, x0[m].shape, jnp.float32) for m, k in zip(MODALITIES, keys)}
    pred = pred_fn(x_t, {m: jnp.full((batch,), t, jnp.float32) for m in MODALITIES}, label)
    for m in MODALITIES:
      x0_hat, _ = objectives.to_x0_eps(diffusion_cfg.objective, pred[m].astype(jnp.float32), x_t[m], alpha, sigma)
      x0_mse[m].append(jnp.mean(jnp.square(x0_hat - x0[m])))
  out = {}
  for m in MODALITIES:
    out[f'{m}/x0_mse'] = jnp.stack(x0_mse[m])
    out[f'{m}/mean_mse'] = jnp.full((len(times),), mean_mse[m])
  return out


def gains(errors: dict, times: Sequence[float] = TIMES) -> dict:
  """{'gain_<modality>_t<t>': x0 error / mean error} (scalars; jittable) from `denoising_errors` output."""
  return {f'gain_{m}_t{t:g}': errors[f'{m}/x0_mse'][i] / jnp.maximum(errors[f'{m}/mean_mse'][i], 1e-12)
          for m in MODALITIES for i, t in enumerate(times)}
