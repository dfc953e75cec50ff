"""The joint audio-video diffusion training loss with per-modality noise levels, clean-modality and label dropout.

Per example, the video and audio times are drawn independently with probability `independent_t_prob`, else one
shared time is used for both. Then, with probability `clean_video_prob` the video is left clean (t = 0, its loss
masked out), else with probability `clean_audio_prob` the audio is (the two events are exclusive). Training on
these cases is what lets one model sample jointly, audio -> video and video -> audio: at sampling time the given
modality is fed clean at t = 0, a situation the model has seen. Labels are replaced by the null label
`num_classes` with probability `label_dropout` and prompts by the null prompt with probability `text_dropout`,
independently (classifier-free guidance on each). With `sync_loss_weight` > 0 an
auxiliary InfoNCE loss (`sync_loss`) pairs the network's video and audio features of the same moment. With
`motion_loss_weight` > 0 the video error is weighted towards what moves within the clip (`motion_weights`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from avdiff.diffusion import objectives, schedules

MODALITIES = ('video', 'audio')


def bcast(v: jax.Array, x: jax.Array) -> jax.Array:
  """[B] -> [B, 1, ..., 1] with the rank of x."""
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def warp_uniform(u: jax.Array, diffusion_cfg: ml_collections.ConfigDict) -> jax.Array:
  """u ~ U(0, 1) -> the training time density of diffusion_cfg.time_sampling, still in (0, 1).

  'uniform': u itself. 'logit_normal': sigmoid(mean + std * Phi^-1(u)), i.e. logit(u') ~ N(mean, std) (SD3; Li & He
  2025 use mean 0.8 in this convention, t = 1 pure noise: more training where the x0 estimate is hardest).
  """
  if diffusion_cfg.time_sampling == 'uniform':
    return u
  if diffusion_cfg.time_sampling == 'logit_normal':
    z = jax.scipy.special.ndtri(jnp.clip(u, 1e-6, 1.0 - 1e-6))
    return jax.nn.sigmoid(diffusion_cfg.logit_normal_mean + diffusion_cfg.logit_normal_std * z)
  raise ValueError(f'diffusion.time_sampling={diffusion_cfg.time_sampling!r} is not uniform or logit_normal')


def sample_times(rng: jax.Array, batch: int, diffusion_cfg: ml_collections.ConfigDict,
                 schedule: schedules.Schedule) -> tuple[dict, dict]:
  """Per-modality training times t {'video': [B], 'audio': [B]} and loss masks (1 = noised, 0 = left clean)."""
  df = diffusion_cfg
  k_shared, k_v, k_a, k_ind, k_clean = jax.random.split(rng, 5)
  draw = lambda k: warp_uniform(jax.random.uniform(k, (batch,)), df)
  shared = draw(k_shared)
  independent = jax.random.uniform(k_ind, (batch,)) < df.independent_t_prob
  u = {'video': jnp.where(independent, draw(k_v), shared),
       'audio': jnp.where(independent, draw(k_a), shared)}
  c = jax.random.uniform(k_clean, (batch,))
  clean = {'video': c < df.clean_video_prob,
           'audio': (c >= df.clean_video_prob) & (c < df.clean_video_prob + df.clean_audio_prob)}
  t = {m: jnp.where(clean[m], 0.0, schedule.train_time(u[m])) for m in MODALITIES}
  mask = {m: (~clean[m]).astype(jnp.float32) for m in MODALITIES}
  return t, mask


def motion_weights(video: jax.Array, strength: float) -> jax.Array:
  """Per-element weights of the video loss that favour what moves: [B, T, H, W, C] clean video (or its latent) ->
  [B, T, H, W, 1] weights (1 + strength * d) / (1 + strength), where d is the mean over channels of |x - the clip's
  mean over time|, divided by its mean over the clip. Each clip's weights average 1, so the video loss keeps its
  scale; strength 0 gives all ones. In a talking face almost only the mouth moves: its few pixels are where the
  picture depends on the sound, and uniform weights leave them a few percent of the loss."""
  d = jnp.mean(jnp.abs(video - jnp.mean(video, axis=1, keepdims=True)), axis=-1, keepdims=True)
  d = d / jnp.maximum(jnp.mean(d, axis=(1, 2, 3, 4), keepdims=True), 1e-6)
  return (1.0 + strength * d) / (1.0 + strength)


def sync_loss(emb: dict, t: dict, temperature: float) -> jax.Array:
  """The auxiliary sync loss: symmetric InfoNCE between video and audio embeddings of the same clip and time step.

  Args:
    emb: unit-norm {'video': [B, T, D], 'audio': [B, T, D]}, one per token time step (the DiT's sync embeddings).
    t: the training times {'video': [B], 'audio': [B]} in [0, 1] (1 = pure noise).
    temperature: softmax temperature of the cosine-similarity logits.
  Returns:
    Scalar: cross-entropy of finding each step's partner among all B * T steps of the other modality (both
    directions, averaged), weighted per clip by 1 - t_video * t_audio: a clip with both modalities near pure noise
    carries nothing to match.
  """
  b, steps, dim = emb['video'].shape
  v = emb['video'].reshape(b * steps, dim)
  a = emb['audio'].reshape(b * steps, dim)
  logits = (v @ a.T) / temperature  # [B T, B T]: video step i against audio step j.
  target = jnp.arange(b * steps)
  ce = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, target)
              + optax.softmax_cross_entropy_with_integer_labels(logits.T, target))
  w = jnp.repeat(1.0 - t['video'] * t['audio'], steps)
  return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1e-6)


def drop_text(text, null_text, dropped: jax.Array):
  """The prompt pytree with example b replaced by null_text's where dropped[b] (bool [B]); any leaves [B, ...]."""
  return jax.tree.map(lambda a, n: jnp.where(bcast(dropped, a), n, a), text, null_text)


def training_loss(pred_fn: Callable, x0: dict, label: jax.Array, rng: jax.Array,
                  diffusion_cfg: ml_collections.ConfigDict, num_classes: int, text=None,
                  null_text=None) -> tuple[jax.Array, dict]:
  """Mean-squared error of the network output against the objective's target, per modality, weighted (for the x
  objective: the error of the flow velocity it implies, see `objectives.loss_weight`).

  Args:
    pred_fn: (x_t: dict, t: dict of [B], label [B]) -> dict of raw predictions, same shapes as x_t; with
      diffusion.sync_loss_weight > 0, (that dict, sync embeddings as in `sync_loss`). With a prompt it is called
      as pred_fn(x_t, t, label, text).
    x0: clean latents {'video': [B, ...], 'audio': [B, ...]}.
    label: int32 [B] in [0, num_classes).
    rng: PRNG key.
    diffusion_cfg: config.diffusion.
    num_classes: the null label index.
    text, null_text: None, or the batch's prompts (a pytree of [B, ...] arrays, e.g. token ids [B, L]) and the null
      prompt in the same structure; each prompt is replaced by the null one with probability text_dropout.
  Returns:
    (loss, metrics). loss = sum_m w_m * sum_b mask_mb * mse_mb / B (masked examples contribute zero, so the
    gradient scale does not depend on how many were left clean). metrics: 'loss_video' / 'loss_audio' (mean MSE
    over the examples where that modality was noised), 'clean_video_frac', 'clean_audio_frac', and 'loss_sync'
    (unweighted) when the sync loss is on.
  """
  df = diffusion_cfg
  schedule = schedules.from_config(df)
  batch = label.shape[0]
  k_t, k_noise, k_label = jax.random.split(rng, 3)
  k_text = jax.random.fold_in(rng, 3)  # A fourth key without changing the first three (same draws as before).
  t, mask = sample_times(k_t, batch, df, schedule)
  drop = jax.random.uniform(k_label, (batch,)) < df.label_dropout
  label = jnp.where(drop, num_classes, label).astype(jnp.int32)

  noise_keys = dict(zip(MODALITIES, jax.random.split(k_noise, len(MODALITIES))))
  x_t, targets, loss_w = {}, {}, {}
  for m in MODALITIES:
    x = x0[m].astype(jnp.float32)
    eps = jax.random.normal(noise_keys[m], x.shape, jnp.float32)
    alpha, sigma = (bcast(a, x) for a in schedule.alpha_sigma(t[m]))
    x_t[m] = alpha * x + sigma * eps
    targets[m] = objectives.target(df.objective, x, eps, alpha, sigma)
    loss_w[m] = objectives.loss_weight(df.objective, alpha, sigma).reshape(batch)

  if text is None:
    pred = pred_fn(x_t, t, label)
  else:
    text = drop_text(text, null_text, jax.random.uniform(k_text, (batch,)) < df.text_dropout)
    pred = pred_fn(x_t, t, label, text)
  metrics = {}
  loss = 0.0
  if df.sync_loss_weight > 0:
    pred, emb = pred
    metrics['loss_sync'] = sync_loss(emb, t, df.sync_loss_temperature)
    loss = df.sync_loss_weight * metrics['loss_sync']
  weights = {'video': df.loss_weight_video, 'audio': df.loss_weight_audio}
  for m in MODALITIES:
    err = jnp.square(pred[m].astype(jnp.float32) - targets[m])
    if m == 'video' and df.motion_loss_weight > 0:
      err = err * jax.lax.stop_gradient(motion_weights(x0[m].astype(jnp.float32), df.motion_loss_weight))
    mse = loss_w[m] * jnp.mean(err.reshape(batch, -1), axis=1)  # [B]
    loss = loss + weights[m] * jnp.sum(mask[m] * mse) / batch
    metrics[f'loss_{m}'] = jnp.sum(mask[m] * mse) / jnp.maximum(jnp.sum(mask[m]), 1.0)
    metrics[f'clean_{m}_frac'] = 1.0 - jnp.mean(mask[m])
  return loss, metrics
