"""Classifier-free guidance with one label scale for video, one for audio, and one for the prompt.

Label guidance: guided = uncond + s_m * (cond - uncond) on the raw network output of modality m (uncond: the null
label). Prompt guidance (text models) adds (s_text - 1) * (cond - cond without the prompt), the prompt replaced by
the null prompt and the label kept, so the two scales act separately (as Ovi and LTX-2 separate text guidance from
their other guidance). Every objective converts to (x0, eps) by a map that is affine in the output, so guiding the
raw output equals guiding the x0 / eps estimates. All the passes needed run as one call of `pred_fn` on a batch of
the variants stacked.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def guided_pred_fn(pred_fn: Callable, null_label: int, scale_video: float, scale_audio: float,
                   force_batched: bool = False, *, text=None, null_text=None, scale_text: float = 1.0) -> Callable:
  """A network (x: dict, t: dict [B], label [B]) -> dict with classifier-free guidance.

  pred_fn: (x, t, label) -> dict, or with `text` (x, t, label, text) -> dict.
  text, null_text: None, or the prompts of the batch (a pytree of [B, ...] arrays) and the null prompt in the same
    structure (`avdiff.models.text.null_like`); they are bound into the returned function.
  With every scale exactly 1 (the conditional model) no extra pass runs unless `force_batched`.
  """
  scales = {'video': float(scale_video), 'audio': float(scale_audio)}
  label_guided = any(s != 1.0 for s in scales.values()) or force_batched
  text_guided = text is not None and float(scale_text) != 1.0
  if text_guided and null_text is None:
    raise ValueError('prompt guidance needs null_text (avdiff.models.text.null_like(text))')
  call = (lambda x, t, label, txt: pred_fn(x, t, label)) if text is None else pred_fn
  if not label_guided and not text_guided:
    return pred_fn if text is None else (lambda x, t, label: pred_fn(x, t, label, text))

  def guided(x: dict, t: dict, label: jax.Array) -> dict:
    batch = label.shape[0]
    variants = [(label, text)]  # Conditional, then the null label, then the null prompt.
    if label_guided:
      variants.append((jnp.full_like(label, null_label), text))
    if text_guided:
      variants.append((label, null_text))
    n = len(variants)
    tile = lambda a: jnp.concatenate([a] * n, axis=0)
    labels = jnp.concatenate([v[0] for v in variants], axis=0)
    texts = None if text is None else jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *[v[1] for v in variants])
    out_all = call({k: tile(v) for k, v in x.items()}, {k: tile(v) for k, v in t.items()}, labels, texts)
    out = {}
    for k, p in out_all.items():
      cond = p[:batch]
      guided_k = cond
      if label_guided:
        uncond = p[batch:2 * batch]
        guided_k = uncond + scales[k] * (cond - uncond)
      if text_guided:
        guided_k = guided_k + (float(scale_text) - 1.0) * (cond - p[(n - 1) * batch:])
      out[k] = guided_k
    return out

  return guided

