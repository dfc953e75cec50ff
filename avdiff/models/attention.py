"""Multi-head dot-product attention with a backend switch: XLA, cuDNN flash attention, or a CPU-friendly chunked form.

All take q [B, Nq, H, Dh], k / v [B, Nk, H, Dh] and return [B, Nq, H, Dh]; full (bidirectional) attention, no mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name


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


def _scores(q, k):
  """[Nq, Dh] x [Nk, Dh] -> scaled float32 logits [Nq, Nk]."""
  return jnp.dot(q, k.T, preferred_element_type=jnp.float32) * (q.shape[-1] ** -0.5)


def _forward_one(q, k, v):
  """One head: (output [Nq, Dh], log-sum-exp of the logits [Nq] in float32)."""
  s = _scores(q, k)
  m = jax.lax.stop_gradient(s.max(-1, keepdims=True))
  p = jnp.exp(s - m)
  l = p.sum(-1, keepdims=True)
  o = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32) / l
  return o.astype(v.dtype), (m + jnp.log(l))[:, 0]


@jax.custom_vjp
def _chunked_heads(q, k, v):
  """q [BH, Nq, Dh], k / v [BH, Nk, Dh] -> [BH, Nq, Dh], one head at a time through lax.map."""
  return jax.lax.map(lambda a: _forward_one(*a)[0], (q, k, v))


def _chunked_fwd(q, k, v):
  out, lse = jax.lax.map(lambda a: _forward_one(*a), (q, k, v))
  # Named so that a remat policy can keep the residuals instead of re-running this forward in the backward pass.
  res = tuple(checkpoint_name(x, 'attention_residuals') for x in (q, k, v, out, lse))
  return out, res


def _chunked_bwd(res, d_out):
  """Flash-attention style backward: recompute each head's probabilities from the saved log-sum-exp instead of
  keeping [BH, Nq, Nk] of them from the forward pass (one extra [Nq, Dh] x [Dh, Nk] product per head, no N^2
  residuals written to and read back from memory)."""
  q, k, v, out, lse = res

  def one(a):
    qi, ki, vi, oi, lse_i, do = a
    p = jnp.exp(_scores(qi, ki) - lse_i[:, None])  # [Nq, Nk] float32
    do32 = do.astype(jnp.float32)
    dv = jnp.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
    dp = jnp.dot(do, vi.T, preferred_element_type=jnp.float32)
    delta = jnp.sum(do32 * oi.astype(jnp.float32), axis=-1, keepdims=True)
    ds = (p * (dp - delta) * (qi.shape[-1] ** -0.5)).astype(qi.dtype)
    dq = jnp.dot(ds, ki, preferred_element_type=jnp.float32)
    dk = jnp.dot(ds.T, qi, preferred_element_type=jnp.float32)
    return dq.astype(qi.dtype), dk.astype(ki.dtype), dv.astype(vi.dtype)

  return jax.lax.map(one, (q, k, v, out, lse, d_out))


_chunked_heads.defvjp(_chunked_fwd, _chunked_bwd)


def _chunked(q, k, v):
  """Attention head by head (batch * heads steps of lax.map): each step's [Nq, Nk] scores stay small enough for the
  cache, and the custom backward recomputes them rather than storing all of them (memory O(N) per head, not N^2)."""
  b, nq, h, d = q.shape
  nk = k.shape[1]
  to_bh = lambda x, n: x.transpose(0, 2, 1, 3).reshape(b * h, n, d)
  out = _chunked_heads(to_bh(q, nq), to_bh(k, nk), to_bh(v, nk))
  return out.reshape(b, h, nq, d).transpose(0, 2, 1, 3)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, kind: str = 'auto') -> jax.Array:
  """Softmax attention; `kind` in 'auto' | 'xla' | 'cudnn' | 'chunked' (config.model.attention)."""
  kind = resolve(kind, q.dtype)
  if kind == 'chunked':
    return _chunked(q, k, v)
  if kind in ('xla', 'cudnn'):
    return jax.nn.dot_product_attention(q, k, v, implementation=kind)
  raise ValueError(f'model.attention={kind!r}')
