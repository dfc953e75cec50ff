"""Optimizer from `config.train`: AdamW (or Adam / SGD) on an optax warmup + cosine / constant schedule, with
global-norm clipping. Gradient accumulation is done by the train step (it averages micro-batch gradients), so the
optimizer always sees one update per step."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(t: ml_collections.ConfigDict) -> optax.Schedule:
  """lr(step): linear warmup from 0 over warmup_steps, then cosine to learning_rate * end_lr_fraction at `steps`
  ('warmup_cosine') or flat ('warmup_constant')."""
  warmup = max(int(t.warmup_steps), 0)
  if t.lr_schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, warmup, max(int(t.steps), warmup + 1),
                                              t.learning_rate * t.end_lr_fraction)
  if t.lr_schedule == 'warmup_constant':
    return optax.join_schedules([optax.linear_schedule(0.0, t.learning_rate, max(warmup, 1)),
                                 optax.constant_schedule(t.learning_rate)], [warmup])
  raise ValueError(f'train.lr_schedule={t.lr_schedule!r} is not one of (warmup_cosine, warmup_constant)')


def ema_decay(t: ml_collections.ConfigDict, step):
  """EMA decay applied after step `step` (int or traced int32): min(ema_decay, (1 + step) / (10 + step)) with
  `ema_warmup`, else ema_decay.

  A fixed decay of 0.999 over a 2000-step run leaves 13% of the EMA on the initial weights; the zero-initialized
  tensors of an adaLN-Zero model (gates, output layer) then sit at ~0.8x their trained norm and the EMA model's
  predictions come out ~0.8x too small. The warm-up decay averages over roughly the last tenth of the steps so far
  (weights ~ (k / n)^8), so the EMA tracks a short run and becomes the usual fixed-decay EMA once
  (1 + n) / (10 + n) exceeds ema_decay (n > ~9000 for 0.999).
  """
  decay = float(t.ema_decay)
  if not t.ema_warmup:
    return jnp.asarray(decay, jnp.float32)
  n = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def make_optimizer(t: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Clipping (if grad_clip_norm > 0) followed by the configured optimizer on `learning_rate_schedule(t)`."""
  lr = learning_rate_schedule(t)
  if t.optimizer == 'adamw':
    opt = optax.adamw(lr, b1=t.b1, b2=t.b2, weight_decay=t.weight_decay)
  elif t.optimizer == 'adam':
    opt = optax.adam(lr, b1=t.b1, b2=t.b2)
  elif t.optimizer == 'sgd':
    opt = optax.sgd(lr, momentum=t.b1)
  else:
    raise ValueError(f'train.optimizer={t.optimizer!r} is not one of (adamw, adam, sgd)')
  if t.grad_clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(t.grad_clip_norm), opt)
  return opt
