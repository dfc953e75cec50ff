"""Transformer blocks with adaLN-Zero modulation: self-attention block (shared or per-modality weights), the
bidirectional cross-attention block of the dual-tower model, and the audio-video-to-text cross-attention of
model.text.fusion='cross_attention'.

Blocks are stateless functions of their parameters: everything they need besides parameters (rotary tables, how to
split the sequence into modality parts, the attention backend) comes in a `Context`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from avdiff.models import attention as attn_lib
from avdiff.models import layers, positions


@dataclasses.dataclass(frozen=True)
class Context:
  """Static description of a token sequence [B, N, C] for a block.

  cos / sin: rotary tables [N, Dh/2] (None: no rotation).
  modality: [N] int modality index of each token, for shared weights (each token takes its modality's modulation);
    None when the block has one weight stream per modality and `parts` is used instead.
  parts: per-stream token indices (np int arrays or slices) into the sequence, for per-modality weights.
  merge_index: sequence permutation that turns concat(parts) back into sequence order (None: identity).
  attention: backend kind ('auto' | 'xla' | 'cudnn' | 'chunked').
  bias: attention logits added by time distance between modalities (None: none).
  sequence: the sequence's split over the mesh's context axes (None: no context parallelism).
  """
  cos: Optional[jax.Array]
  sin: Optional[jax.Array]
  modality: Optional[np.ndarray]
  parts: Optional[tuple]
  merge_index: Optional[np.ndarray]
  attention: str
  bias: Optional[attn_lib.TimeBias] = None
  sequence: Optional[attn_lib.SequenceParallel] = None

  def constrain(self, x: jax.Array) -> jax.Array:
    """x [B, N, C] kept split along the sequence under context parallelism; unchanged otherwise."""
    return x if self.sequence is None else self.sequence.constrain(x)

  def split(self, x: jax.Array) -> list:
    if self.parts is None:
      return [x]
    return [x[:, p] if isinstance(p, slice) else jnp.take(x, p, axis=1) for p in self.parts]

  def per_token(self, m: jax.Array) -> jax.Array:
    """Modulation [B, M, C] (one row per modality) -> [B, N, C], each token taking its modality's row.

    A select between broadcast rows rather than a [N, M] x [M, C] product: it fuses into the elementwise consumer,
    and its gradient is a masked reduction over tokens instead of a transposed matmul. [B, 1, C] passes through.
    """
    if self.modality is None or m.shape[1] == 1:
      return m
    modality = self.modality[None, :, None]  # [1, N, 1], static
    out = m[:, :1]
    for j in range(1, m.shape[1]):
      out = jnp.where(modality == j, m[:, j:j + 1], out)
    return out

  def merge(self, xs: list) -> jax.Array:
    if len(xs) == 1:
      return xs[0]
    x = jnp.concatenate(xs, axis=1)
    return x if self.merge_index is None else jnp.take(x, self.merge_index, axis=1)


class StreamWeights(nnx.Module):
  """Weights of one stream of a self-attention block: adaLN (6 x width, zero-init), QKV, output projection, MLP."""

  def __init__(self, width: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    hd = width // heads
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.ada = layers.Dense(width, (6, width), ('mlp', None, 'embed'), kernel_init=layers.zeros_init, **kw)
    self.qkv = layers.Dense(width, (3, heads, hd), ('embed', None, 'heads', 'kv'), **kw)
    self.out = layers.Dense((heads, hd), width, ('heads', 'kv', 'embed'), **kw)
    self.mlp = layers.Mlp(width, mlp_dim, **kw)


class Block(nnx.Module):
  """Self-attention over the whole sequence + MLP, each gated by adaLN-Zero; 1 stream (shared) or M (per modality).

  h [B, N, width], cond [B, M, width] (one conditioning vector per modality) -> [B, N, width]. At init the gates are
  zero, so the block is the identity.
  """

  def __init__(self, width: int, heads: int, mlp_dim: int, num_streams: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    self.streams = nnx.List([StreamWeights(width, heads, mlp_dim, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                             for _ in range(num_streams)])

  def _modulation(self, cond: jax.Array, ctx: Context) -> list:
    """Per-part modulation: six functions k -> [B, N_i or 1, width] (shift, scale, gate of attention, then MLP)."""
    c = jax.nn.silu(cond)
    if ctx.parts is None:
      mod = self.streams[0].ada(c)  # [B, M, 6, width]
      return [lambda k: ctx.per_token(mod[:, :, k])]
    mods = [s.ada(c[:, i])[:, None] for i, s in enumerate(self.streams)]  # [B, 1, 6, width] each
    return [lambda k, m=m: m[:, :, k] for m in mods]

  def __call__(self, h: jax.Array, cond: jax.Array, ctx: Context) -> jax.Array:
    mods = self._modulation(cond, ctx)
    hs = ctx.split(h)
    xs = [layers.modulate(layers.layer_norm(x), m(0), m(1)) for x, m in zip(hs, mods)]
    qkv = ctx.merge([checkpoint_name(s.qkv(x), 'qkv') for s, x in zip(self.streams, xs)])  # [B, N, 3, H, Dh]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if ctx.cos is not None:
      q, k = positions.apply_rope(q, ctx.cos, ctx.sin), positions.apply_rope(k, ctx.cos, ctx.sin)
    o = ctx.split(checkpoint_name(attn_lib.attention(q, k, v, ctx.attention, ctx.bias, ctx.sequence), 'attention'))
    hs = [x + m(2) * checkpoint_name(s.out(oi), 'attention_out') for x, m, s, oi in zip(hs, mods, self.streams, o)]
    hs = [x + m(5) * s.mlp(layers.modulate(layers.layer_norm(x), m(3), m(4)))
          for x, m, s in zip(hs, mods, self.streams)]
    return ctx.constrain(ctx.merge(hs))


class CrossWeights(nnx.Module):
  """One direction of cross-attention: adaLN (shift, scale, gate; zero-init) on the queries, Q, KV, output."""

  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    hd = width // heads
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.ada = layers.Dense(width, (3, width), ('mlp', None, 'embed'), kernel_init=layers.zeros_init, **kw)
    self.q = layers.Dense(width, (heads, hd), ('embed', 'heads', 'kv'), **kw)
    self.kv = layers.Dense(width, (2, heads, hd), ('embed', None, 'heads', 'kv'), **kw)
    self.out = layers.Dense((heads, hd), width, ('heads', 'kv', 'embed'), **kw)

  def __call__(self, hq, hkv, cond, rope_q, rope_k, kind: str, bias: Optional[attn_lib.TimeBias] = None) -> jax.Array:
    """hq [B, Nq, C] attends to hkv [B, Nk, C]; cond [B, C]; rope_* = (cos, sin) or None; bias: added logits.
    Returns updated hq."""
    m = self.ada(jax.nn.silu(cond))[:, None]  # [B, 1, 3, C]
    q = checkpoint_name(self.q(layers.modulate(layers.layer_norm(hq), m[:, :, 0], m[:, :, 1])), 'qkv')
    kv = checkpoint_name(self.kv(layers.layer_norm(hkv)), 'qkv')
    k, v = kv[:, :, 0], kv[:, :, 1]
    if rope_q is not None:
      q, k = positions.apply_rope(q, *rope_q), positions.apply_rope(k, *rope_k)
    o = checkpoint_name(attn_lib.attention(q, k, v, kind, bias), 'attention')
    return hq + m[:, :, 2] * checkpoint_name(self.out(o), 'attention_out')


class CrossBlock(nnx.Module):
  """Bidirectional cross-attention between the video and audio towers (video <- audio, audio <- video)."""

  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    self.video_from_audio = CrossWeights(width, heads, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.audio_from_video = CrossWeights(width, heads, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, hv, ha, cv, ca, rope_v, rope_a, kind: str, biases=(None, None)):
    """hv [B, N_v, C], ha [B, N_a, C], cv / ca [B, C]; biases: TimeBias of (video <- audio, audio <- video) or
    None. Both directions read the inputs of this layer."""
    nv = self.video_from_audio(hv, ha, cv, rope_v, rope_a, kind, biases[0])
    na = self.audio_from_video(ha, hv, ca, rope_a, rope_v, kind, biases[1])
    return nv, na


class TextCrossAttention(CrossWeights):
  """Audio-video tokens attend to the prompt's text tokens, gated by adaLN-Zero (the identity at init); the weights
  of `CrossWeights`, with each token modulated by its own modality's conditioning.

  h [B, N, C] (the joint sequence), txt [B, K, C], cond [B, M, C] (one conditioning vector per modality; each token
  takes its modality's shift, scale and gate through ctx.per_token) -> [B, N, C]. No rotary: text has no position
  on the clip's clock.
  """

  def __call__(self, h: jax.Array, txt: jax.Array, cond: jax.Array, ctx: Context) -> jax.Array:
    mod = self.ada(jax.nn.silu(cond))  # [B, M, 3, C]
    shift, scale, gate = (ctx.per_token(mod[:, :, k]) for k in range(3))
    q = checkpoint_name(self.q(layers.modulate(layers.layer_norm(h), shift, scale)), 'qkv')
    kv = checkpoint_name(self.kv(layers.layer_norm(txt)), 'qkv')
    o = checkpoint_name(attn_lib.attention(q, kv[:, :, 0], kv[:, :, 1], ctx.attention), 'attention')
    return h + gate * checkpoint_name(self.out(o), 'attention_out')
