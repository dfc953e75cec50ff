"""The DiT's two transformer trunks (model.fusion), as subclasses of `dit.DiT`, and `build_dit`, which picks one.

  'joint'      `JointDiT`: one sequence through shared self-attention blocks; weights shared or per modality
               (MM-DiT style, model.modality_specific_weights). The prompt's text tokens join the sequence
               (model.text.fusion='tokens') or are attended to after every block ('cross_attention',
               `text_blocks`).
  'dual_tower' `DualTowerDiT`: a video tower and an audio tower (`depth` blocks each) with bidirectional
               cross-attention after every `cross_attention_every` blocks.
The block stacks are attributes of the model itself, so parameter paths stay top-level (`blocks`, `video_blocks`,
`audio_blocks`, `cross_blocks`) next to the shared `encoder`, `t_embed`, ... of `DiT`.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from avdiff.models import blocks, dit, stacks, tokens


class JointDiT(dit.DiT):
  """Video, audio (and text) tokens in one sequence through `depth` self-attention blocks (`blocks`), each followed
  by a cross-attention to the text tokens (`text_blocks`) with model.text.fusion='cross_attention'.

  With `sequence_parallel` set (by the train step, on a mesh with a context axis) the sequence stays split over the
  context devices through every block (rotary tables, TimeBias and per-token modality are indexed by global
  sequence position, so each shard reads its own rows); with model.sequence_order='interleaved' and a context
  size dividing the video token steps, each device holds whole time steps: its video and audio tokens cover one
  time span. Per-modality weights (model.modality_specific_weights) gather tokens by modality and move them between
  devices in every block: correct, not efficient.
  """

  def _build_trunk(self, m, rngs: nnx.Rngs, kw: dict) -> None:
    self.modality_specific = bool(m.modality_specific_weights)
    n_mod = 3 if self.text_fusion == 'tokens' else 2
    streams = n_mod if self.modality_specific else 1
    mlp_dim = int(m.width * m.mlp_ratio)
    self.blocks = stacks.stacked(m.depth, lambda r: blocks.Block(m.width, m.num_heads, mlp_dim, streams, rngs=r, **kw),
                                 rngs)
    if self.text_fusion == 'cross_attention':
      self.text_blocks = stacks.stacked(m.depth, lambda r: blocks.TextCrossAttention(m.width, m.num_heads, rngs=r,
                                                                                     **kw), rngs)

  def _context(self, num_text: int, rope: dict) -> blocks.Context:
    """Attention context of the joint sequence: rotary tables, and per-token modality or per-stream token sets."""
    tok = self.encoder.token_layout
    n = len(tok.modality)
    modality = np.concatenate([tok.modality, np.full(num_text, tokens.TEXT)])
    cos, sin = rope.get('sequence', (None, None))
    n_mod = 3 if num_text else 2
    bias = self._time_bias('sequence', 'sequence', num_text)
    sp = self.sequence_parallel
    if sp is not None:
      sp.check(n + num_text, self.heads)
    if not self.modality_specific:
      return blocks.Context(cos, sin, modality, None, None, self.attention, bias, sp)
    if tok.is_identity_order:
      nv = self.layout.num_video_tokens
      parts = [slice(0, nv), slice(nv, n)] + ([slice(n, n + num_text)] if n_mod == 3 else [])
      return blocks.Context(cos, sin, None, tuple(parts), None, self.attention, bias, sp)
    parts = [np.nonzero(modality == i)[0] for i in range(n_mod)]
    return blocks.Context(cos, sin, None, tuple(parts), np.argsort(np.concatenate(parts)), self.attention, bias, sp)

  def _trunk(self, v: jax.Array, a: jax.Array, txt: Optional[jax.Array], cv: jax.Array, ca: jax.Array,
             ct: jax.Array, rope: dict) -> tuple[jax.Array, jax.Array]:
    in_sequence = txt is not None and self.text_fusion == 'tokens'
    num_text = txt.shape[1] if in_sequence else 0
    h = self.encoder.to_sequence(v, a)
    conds = [cv, ca] + ([ct] if in_sequence else [])
    if in_sequence:
      h = jnp.concatenate([h, txt.astype(h.dtype)], axis=1)
    cond = jnp.stack(conds, axis=1)  # [B, M, C]
    ctx = self._context(num_text, rope)
    h = ctx.constrain(h)
    if txt is not None and not in_sequence:  # Cross-attention to the text after every block.
      av_ctx = blocks.Context(None, None, self.encoder.token_layout.modality, None, None, self.attention)
      txt = txt.astype(h.dtype)
      body = lambda c, mods: mods[1](mods[0](c, cond, ctx), txt, cond, av_ctx)
      h = stacks.run_stack((self.blocks, self.text_blocks), h, body, scan=self.scan, remat=self.remat,
                           layer_shardings=self._layer_shardings('blocks', 'text_blocks'))
    else:
      h = stacks.run_stack(self.blocks, h, lambda c, blk: blk(c, cond, ctx), scan=self.scan, remat=self.remat,
                           layer_shardings=self._layer_shardings('blocks'))
    return self.encoder.split_sequence(h[:, :h.shape[1] - num_text])


class DualTowerDiT(dit.DiT):
  """A video tower (`video_blocks`) and an audio tower (`audio_blocks`) of `depth` blocks each, joined by
  bidirectional cross-attention (`cross_blocks`) after every `cross_attention_every` blocks."""

  def _build_trunk(self, m, rngs: nnx.Rngs, kw: dict) -> None:
    self.every = m.cross_attention_every
    mlp_dim = int(m.width * m.mlp_ratio)
    tower = lambda r: blocks.Block(m.width, m.num_heads, mlp_dim, 1, rngs=r, **kw)
    self.video_blocks = stacks.stacked(m.depth, tower, rngs)
    self.audio_blocks = stacks.stacked(m.depth, tower, rngs)
    self.cross_blocks = stacks.stacked(m.depth // m.cross_attention_every,
                                       lambda r: blocks.CrossBlock(m.width, m.num_heads, rngs=r, **kw), rngs)

  def _context(self, rope_key: str, rope: dict) -> blocks.Context:
    """Attention context of one tower: its rotary tables ('video' or 'audio'), one stream."""
    cos, sin = rope.get(rope_key, (None, None))
    return blocks.Context(cos, sin, None, None, None, self.attention)

  def _trunk(self, v: jax.Array, a: jax.Array, txt: Optional[jax.Array], cv: jax.Array, ca: jax.Array,
             ct: jax.Array, rope: dict) -> tuple[jax.Array, jax.Array]:
    del ct  # Text tokens ride in both towers under each tower's own conditioning.
    if txt is not None:
      v = jnp.concatenate([v, txt.astype(v.dtype)], axis=1)
      a = jnp.concatenate([a, txt.astype(a.dtype)], axis=1)
    ctx_v, ctx_a = self._context('video', rope), self._context('audio', rope)
    rope_v, rope_a = rope.get('video'), rope.get('audio')
    num_text = 0 if txt is None else txt.shape[1]
    biases = (self._time_bias('video', 'audio', num_text), self._time_bias('audio', 'video', num_text))
    cond_v, cond_a = cv[:, None], ca[:, None]

    def group(carry, mods):
      hv, ha = carry
      vb, ab, xb = mods
      for i in range(self.every):
        hv = stacks.layer(vb, i)(hv, cond_v, ctx_v)
        ha = stacks.layer(ab, i)(ha, cond_a, ctx_a)
      return stacks.layer(xb, 0)(hv, ha, cv, ca, rope_v, rope_a, self.attention, biases)

    v, a = stacks.run_stack((self.video_blocks, self.audio_blocks, self.cross_blocks), (v, a), group, scan=self.scan,
                            remat=self.remat, groups=self.depth // self.every,
                            layer_shardings=self._layer_shardings('video_blocks', 'audio_blocks', 'cross_blocks'))
    lay = self.layout
    return v[:, :lay.num_video_tokens], a[:, :lay.num_audio_tokens]


TRUNKS = {'joint': JointDiT, 'dual_tower': DualTowerDiT}


def build_dit(config, rngs: nnx.Rngs) -> dit.DiT:
  """The DiT of config.model.fusion with fp32 (param_dtype) parameters carrying logical axis names."""
  fusion = config.model.fusion
  if fusion not in TRUNKS:
    raise ValueError(f'model.fusion={fusion!r}')
  return TRUNKS[fusion](config, rngs=rngs)
