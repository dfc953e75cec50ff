"""Diagnostics along the noise axis: what the network achieves at each time t, and what the noisy input gives away.

`denoising_errors` / `gains` -- denoising gain per noise level: does the network's clean-signal estimate beat
predicting the data mean? The diagnostic of Li & He (2025) that tells at once whether a diffusion model learned: at
each time t both modalities are noised to t, the network's output is converted to an x0 estimate (any objective),
and its error is compared with the error of the best constant, the per-coordinate mean of the clips.
gain = x0 error / mean error: below 1 the model denoises; at or above 1 (typically at high noise) sampling from
noise cannot reach the data.

`given_modality_errors` -- does the network use the modality it is given? The generated modality's x0 error beside
each clip's own clean given modality and beside another clip's, per t (benchmarks/given_modality.md).

`evidence_in_noise` / `training_share_above` -- where a condition is the only source of an attribute. A denoiser
takes what it can from its noisy input; a condition (label, prompt) is needed, and so mostly learned, at times
where the input no longer tells the attribute. A face's mean colour averages over hundreds of pixels and survives
noise almost to t = 1, so with training times concentrated at mid noise the prompt's colour word gets almost no
gradient (benchmarks/prompt_evidence.md).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from avdiff.diffusion import loss, objectives, schedules

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


def given_modality_errors(pred_fn: Callable, x0: dict, label: jax.Array, rng: jax.Array,
                          diffusion_cfg: ml_collections.ConfigDict, generated: str,
                          times: Sequence[float] = TIMES) -> dict:
  """How much the network uses the clean modality when it generates the other one (audio_to_video, video_to_audio).
  Pure and jittable.

  At each time t the generated modality is noised to t and the given one is left clean (t = 0, as in conditional
  sampling and in the training examples left clean by diffusion.clean_*_prob). The x0 error of the generated
  modality is measured twice with the same noise: beside each clip's own given modality, and beside another clip's
  (the batch rolled by one). other / own near 1 means the network ignores what it is given at that t; the sampler's
  first steps (high t) decide the coarse timing, so a model that ignores the given modality there generates the
  other one out of step with it.

  Args:
    pred_fn, x0, label, rng, diffusion_cfg: as `denoising_errors` (B >= 2, clips of different content).
    generated: 'audio' (video given) or 'video' (audio given).
  Returns:
    {'own': [len(times)], 'other': [len(times)]} float32 mean-squared x0 errors of the generated modality.
  """
  if generated not in MODALITIES:
    raise ValueError(f'generated={generated!r} is not one of {MODALITIES}')
  given = 'video' if generated == 'audio' else 'audio'
  schedule = schedules.from_config(diffusion_cfg)
  batch = label.shape[0]
  out = {'own': [], 'other': []}
  for i, t in enumerate(times):
    alpha, sigma = schedule.alpha_sigma(jnp.float32(t))
    x = x0[generated]
    x_t = alpha * x + sigma * jax.random.normal(jax.random.fold_in(rng, i), x.shape, jnp.float32)
    time = {generated: jnp.full((batch,), t, jnp.float32), given: jnp.zeros((batch,), jnp.float32)}
    for name, cond in (('own', x0[given]), ('other', jnp.roll(x0[given], 1, axis=0))):
      pred = pred_fn({generated: x_t, given: cond}, time, label)
      x0_hat, _ = objectives.to_x0_eps(diffusion_cfg.objective, pred[generated].astype(jnp.float32), x_t, alpha,
                                       sigma)
      out[name].append(jnp.mean(jnp.square(x0_hat - x)))
  return {k: jnp.stack(v) for k, v in out.items()}


def _centred_time_mean(x: np.ndarray) -> np.ndarray:
  """[N, T, ...] -> [N, ...]: each clip's mean over time less the mean of all its values."""
  m = x.mean(axis=1)
  return m - m.mean(axis=tuple(range(1, m.ndim)), keepdims=True)


def evidence_in_noise(x0: np.ndarray, classes: np.ndarray, times: Sequence[float],
                      diffusion_cfg: ml_collections.ConfigDict, seed: int = 0, repeats: int = 3) -> np.ndarray:
  """How well an attribute can be read from the noisy input alone, per time: accuracy [len(times)] in [0, 1].

  The reader is the nearest class template: the time mean of x_t = alpha x0 + sigma noise, less its own mean over
  all its values (so a clip's loudness or brightness does not hide the profile, e.g. where a voice's energy sits
  across the mel bands), against alpha times each class's mean of the same statistic of the clean clips (templates
  fitted on the same clips; a linear reader: a network may do better with non-linear features). Accuracy near 1
  means the input tells the attribute at that t, and near chance that only a condition can.

  Args:
    x0: float32 [N, T, ...] clean clips in diffusion space (video in [-1, 1], normalized log-mel), one class each.
    classes: int [N] attribute value index of each clip.
    times: network times t in [0, 1].
    diffusion_cfg: config.diffusion (its schedule's alpha, sigma).
    seed: noise seed; repeats: noise draws averaged per time.
  """
  x0 = np.asarray(x0, np.float32)
  classes = np.asarray(classes)
  values = np.unique(classes)
  clean = _centred_time_mean(x0)
  templates = np.stack([clean[classes == v].mean(0) for v in values])  # [K, ...]
  schedule = schedules.from_config(diffusion_cfg)
  rng = np.random.default_rng(seed)
  out = []
  for t in times:
    alpha, sigma = (float(a) for a in schedule.alpha_sigma(jnp.float32(t)))
    hits = 0.0
    for _ in range(repeats):
      noisy = _centred_time_mean(alpha * x0 + sigma * rng.standard_normal(x0.shape, np.float32))
      d = np.square(noisy[:, None] - alpha * templates[None]).reshape(len(x0), len(values), -1).sum(-1)
      hits += np.mean(values[d.argmin(1)] == classes)
    out.append(hits / repeats)
  return np.asarray(out)


def training_share_above(diffusion_cfg: ml_collections.ConfigDict, thresholds: Sequence[float],
                         samples: int = 200_000, seed: int = 0) -> np.ndarray:
  """Share [len(thresholds)] of noised training examples whose time t exceeds each threshold, under the config's
  time density and schedule (diffusion.time_sampling, logit_normal_*, flow_shift); Monte Carlo."""
  schedule = schedules.from_config(diffusion_cfg)
  u = jax.random.uniform(jax.random.PRNGKey(seed), (samples,))
  t = np.asarray(schedule.train_time(loss.warp_uniform(u, diffusion_cfg)))
  return np.asarray([np.mean(t > th) for th in thresholds])
