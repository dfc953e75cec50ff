"""Classifier-free guidance with one scale for video and one for audio.

guided = uncond + s_m * (cond - uncond) on the raw network output of modality m. Every objective converts to
(x0, eps) by a map that is affine in the output, so guiding the raw output equals guiding the x0 / eps estimates.
The conditional and unconditional (null label) passes run as one call of `pred_fn` on a doubled batch.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def guided_pred_fn(pred_fn: Callable, null_label: int, scale_video: float, scale_audio: float,
                   force_batched: bool = False) -> Callable:
  """pred_fn with classifier-free guidance; the same signature (x: dict, t: dict [B], label [B]) -> dict.

  With both scales exactly 1 (the conditional model) the unconditional pass is skipped unless `force_batched`.
  """
  scales = {'video': float(scale_video), 'audio': float(scale_audio)}
  if all(s == 1.0 for s in scales.values()) and not force_batched:
    return pred_fn

  def guided(x: dict, t: dict, label: jax.Array) -> dict:
    batch = label.shape[0]
    double = lambda a: jnp.concatenate([a, a], axis=0)
    both = pred_fn({k: double(v) for k, v in x.items()}, {k: double(v) for k, v in t.items()},
                   jnp.concatenate([label, jnp.full_like(label, null_label)], axis=0))
    out = {}
    for k, p in both.items():
      cond, uncond = p[:batch], p[batch:]
      out[k] = uncond + scales[k] * (cond - uncond)
    return out

  return guided
