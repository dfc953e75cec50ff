"""Multi-head dot-product attention with a backend switch: XLA, cuDNN flash attention, or a CPU-friendly chunked form.

All take q [B, Nq, H, Dh], k / v [B, Nk, H, Dh] and return [B, Nq, H, Dh]; full (bidirectional) attention, no mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def resolve(kind: str, dtype) -> str:
  """'auto' -> 'cudnn' on GPU for half-precision inputs, 'chunked' on CPU, else 'xla'."""
  if kind != 'auto':
    return kind
  platform = jax.default_backend()
  if platform == 'gpu' and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return 'cudnn'
  if platform == 'cpu':
    return 'chunked'
  return 'xla'


def _chunked(q, k, v):
  """One (query, key) block per batch*head through lax.map: small per-step working set, no 5D softmax temporaries."""
  b, nq, h, d = q.shape
  nk = k.shape[1]
  scale = d ** -0.5
  to_bh = lambda x, n: x.transpose(0, 2, 1, 3).reshape(b * h, n, d)

  def one(args):
    qi, ki, vi = args
    s = jnp.dot(qi, ki.T, preferred_element_type=jnp.float32) * scale
    p = jax.nn.softmax(s, axis=-1).astype(vi.dtype)
    return jnp.dot(p, vi)

  out = jax.lax.map(one, (to_bh(q, nq), to_bh(k, nk), to_bh(v, nk)))
  return out.reshape(b, h, nq, d).transpose(0, 2, 1, 3)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, kind: str = 'auto') -> jax.Array:
  """Softmax attention; `kind` in 'auto' | 'xla' | 'cudnn' | 'chunked' (config.model.attention)."""
  kind = resolve(kind, q.dtype)
  if kind == 'chunked':
    return _chunked(q, k, v)
  if kind in ('xla', 'cudnn'):
    return jax.nn.dot_product_attention(q, k, v, implementation=kind)
  raise ValueError(f'model.attention={kind!r}')
