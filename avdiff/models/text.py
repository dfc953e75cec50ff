"""Text conditioning: the encoder that turns a tokenized prompt into the DiT's text tokens.

    ids = tokenizer.tokenize(['a blue round face, high voice, four syllables'], max_bytes=96)  # int32 [B, L]
    tokens, pooled = encoder(ids)   # [B, K, width] text tokens, [B, width] pooled conditioning vector

Prompts are tokenized on the host (`avdiff.data.text_inputs`: bytes or SentencePiece pieces, `avdiff.data.tokenizer`
says why each); the empty prompt (BOS alone) is the null text of classifier-free guidance.

Encoders (model.text.encoder), one interface:
  'bytes'        byte embeddings + learned positions, a byte n-gram layer (each position sees its
                 model.text.ngram neighbours, so a word is one feature before any attention has been learned), then
                 `depth` pre-LN transformer layers (padding masked); trained with the DiT from scratch.
  'pieces'       the same over SentencePiece ids (a BPE vocabulary fitted to the training captions,
                 `avdiff.data.text_inputs`): a caption word is one token, with an embedding row of its own.
  'precomputed'  the per-token embeddings [B, L, D] + mask [B, L] of a frozen pretrained encoder, stored in the
                 dataset once by `python -m experiments.embed_text`; a linear map to the text width.
All end in the same resampler: K = model.text.num_tokens learned queries attend to the encoder outputs and to one
learned register (so an all-masked input, the null text of 'precomputed', is well defined), giving K tokens of the
DiT's width whatever the prompt length: the DiT needs no padding mask. The mean of the K tokens, projected to the
DiT's width, is added to every modality's conditioning vector (as SD3 adds its pooled text embedding): a learned,
selective pooling (a plain mean over the bytes of a caption is dominated by the words every caption shares).
model.text.bag adds a projected mean of the token embeddings to it (with pieces, a bag of words).
"""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from avdiff.data.tokenizer import BOS, OFFSET, PAD, VOCAB
from avdiff.models import layers

ENCODERS = ('bytes', 'pieces', 'precomputed')
FUSIONS = ('tokens', 'cross_attention')

# A prompt for the model: token ids int32 [B, L] ('bytes', 'pieces'), or {'embeddings': float32 [B, L, D],
# 'mask': bool [B, L]} ('precomputed').
Text = Union[jax.Array, dict]


def null_like(text: Text) -> Text:
  """The null text (classifier-free guidance) in the structure and batch shape of `text`: BOS alone for token ids,
  an all-False mask for precomputed embeddings. Jittable."""
  if isinstance(text, dict):
    return {**text, 'mask': jnp.zeros_like(text['mask'])}
  return jnp.zeros_like(text).at[:, 0].set(BOS)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """q [B, Nq, H, Dh], k / v [B, Nk, H, Dh], mask bool [B, Nk] (False: ignored) -> [B, Nq, H, Dh]."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / np.sqrt(q.shape[-1])
  logits = jnp.where(mask[:, None, None, :], logits, -1e30)
  return jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, axis=-1).astype(v.dtype), v)


def _neighbours(h: jax.Array, n: int) -> jax.Array:
  """[B, L, C] -> [B, L, n, C]: at each position the n positions centred on it (zeros past the ends): a 1-D
  convolution's window, contracted by the next Dense."""
  left = (n - 1) // 2
  padded = jnp.pad(h, ((0, 0), (left, n - 1 - left), (0, 0)))
  return jnp.stack([padded[:, i:i + h.shape[1]] for i in range(n)], axis=2)


class _Layer(nnx.Module):
  """Pre-LN transformer layer over the byte tokens (padding keys masked)."""

  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, **kw):
    hd = width // heads
    self.qkv = layers.Dense(width, (3, heads, hd), ('embed', None, 'heads', 'kv'), rngs=rngs, **kw)
    self.out = layers.Dense((heads, hd), width, ('heads', 'kv', 'embed'), rngs=rngs, **kw)
    self.mlp = layers.Mlp(width, 4 * width, rngs=rngs, **kw)

  def __call__(self, h: jax.Array, mask: jax.Array) -> jax.Array:
    qkv = self.qkv(layers.layer_norm(h))
    h = h + self.out(_attend(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask))
    return h + self.mlp(layers.layer_norm(h))


class TextEncoder(nnx.Module):
  """Prompt -> (text tokens [B, K, out_width], pooled [B, out_width]); see the module docstring.

  text_cfg: config.model.text (encoder, max_bytes, vocab_size, width, depth, num_heads, num_tokens, embed_dim).
  out_width: the DiT's width.
  """

  def __init__(self, text_cfg, out_width: int, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    c = text_cfg
    self.kind = c.encoder
    if self.kind not in ENCODERS:
      raise ValueError(f'model.text.encoder={self.kind!r} is not one of {ENCODERS}')
    w, heads = int(c.width), int(c.num_heads)
    self.heads = heads
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    init = nnx.initializers.normal(0.02)
    if self.kind in ('bytes', 'pieces'):
      vocab = VOCAB if self.kind == 'bytes' else OFFSET + int(c.vocab_size)
      self.embed = layers.param(rngs, init, (vocab, w), ('vocab', 'embed'), param_dtype)
      self.positions = layers.param(rngs, init, (int(c.max_bytes) + 1, w), (None, 'embed'), param_dtype)
      self.ngram = int(c.ngram)
      self.ngram_proj = layers.Dense((self.ngram, w), w, (None, None, 'embed'), rngs=rngs, **kw)
      self.layers = nnx.List([_Layer(w, heads, rngs=rngs, **kw) for _ in range(int(c.depth))])
    else:
      self.project = layers.Dense(int(c.embed_dim), w, (None, 'embed'), rngs=rngs, **kw)
    self.queries = layers.param(rngs, init, (int(c.num_tokens), w), (None, 'embed'), param_dtype)
    self.register = layers.param(rngs, init, (1, w), (None, 'embed'), param_dtype)
    self.q = layers.Dense(w, (heads, w // heads), ('embed', 'heads', 'kv'), rngs=rngs, **kw)
    self.kv = layers.Dense(w, (2, heads, w // heads), ('embed', None, 'heads', 'kv'), rngs=rngs, **kw)
    self.o = layers.Dense((heads, w // heads), w, ('heads', 'kv', 'embed'), rngs=rngs, **kw)
    self.to_tokens = layers.Dense(w, out_width, ('mlp', 'embed'), rngs=rngs, **kw)
    self.to_pooled = layers.Dense(w, out_width, ('mlp', 'embed'), rngs=rngs, **kw)
    bag = c.get('bag') and self.kind in ('bytes', 'pieces')
    self.to_bag = layers.Dense(w, out_width, ('mlp', 'embed'), rngs=rngs, **kw) if bag else None

  def _encode(self, text: Text) -> tuple[jax.Array, jax.Array]:
    """-> (per-token features [B, L, w], mask bool [B, L])."""
    if self.kind in ('bytes', 'pieces'):
      if isinstance(text, dict):
        raise ValueError(f'model.text.encoder={self.kind!r} takes token ids [B, L], got precomputed embeddings')
      ids = jnp.asarray(text, jnp.int32)
      mask = ids != PAD
      h = jnp.take(self.embed[...], ids, axis=0) + self.positions[...][None, :ids.shape[1]]
      h = h + self.ngram_proj(_neighbours(h * mask[..., None], self.ngram))
      for layer in self.layers:
        h = layer(h, mask)
      return layers.layer_norm(h), mask
    if not isinstance(text, dict):
      raise ValueError("model.text.encoder='precomputed' takes {'embeddings': [B, L, D], 'mask': [B, L]}")
    return layers.layer_norm(self.project(text['embeddings'])), jnp.asarray(text['mask'], bool)

  def _bag(self, text: Text) -> jax.Array:
    """[B, w]: mean of the prompt's token embeddings, BOS and padding left out (zeros for the null prompt)."""
    ids = jnp.asarray(text, jnp.int32)
    words = (ids != PAD) & (ids != BOS)
    e = jnp.take(self.embed[...], ids, axis=0) * words[..., None]
    return e.sum(1) / jnp.maximum(words.sum(1, keepdims=True), 1)

  def __call__(self, text: Text) -> tuple[jax.Array, jax.Array]:
    h, mask = self._encode(text)
    b = h.shape[0]
    keys = jnp.concatenate([jnp.broadcast_to(self.register[...].astype(h.dtype), (b, 1, h.shape[-1])), h], axis=1)
    keys_mask = jnp.concatenate([jnp.ones((b, 1), bool), mask], axis=1)
    q = self.q(jnp.broadcast_to(self.queries[...].astype(h.dtype), (b,) + self.queries.shape))
    kv = self.kv(keys)
    resampled = self.o(_attend(q, kv[:, :, 0], kv[:, :, 1], keys_mask))  # [B, K, w]
    pooled = self.to_pooled(jnp.mean(resampled, axis=1))
    if self.to_bag is not None:
      pooled = pooled + self.to_bag(self._bag(text))
    return self.to_tokens(resampled), pooled
