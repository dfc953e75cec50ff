"""Joint audio-video diffusion transformer: latents dict + per-modality times + label -> prediction dict.

    dit(x={'video': [B, T_l, H_l, W_l, C_v], 'audio': [B, T_al, F_l, C_a]}, t={'video': [B], 'audio': [B]},
        label=int32 [B], text=None | [B, L, text_embed_dim]) -> float32 dict with the shapes of x.

Each token is modulated by its own modality's conditioning vector (timestep embedding of that modality's t + label
embedding), so video and audio can sit at different noise levels. adaLN-Zero gates and zero-initialized output
layers make the prediction exactly zero at init. Fusion:
  'joint'      one sequence through shared self-attention blocks; weights shared or per modality (MM-DiT style).
  'dual_tower' a video tower and an audio tower (`depth` blocks each) with bidirectional cross-attention after
               every `cross_attention_every` blocks.
Blocks are stacked with a leading 'layers' parameter axis and run by jax.lax.scan (or an unrolled loop), so the
parameter tree is the same either way and compile time does not grow with depth under scan.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from avdiff.models import blocks, encoder as encoder_lib, layers, patching, tokens

REMAT_POLICIES = {
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # The block's projection outputs only: no matmul is recomputed, every elementwise op (norms, modulation,
    # rotary, GELU) is, so far less is written to memory in the forward pass and read back in the backward.
    'projections': jax.checkpoint_policies.save_only_these_names(
        'qkv', 'attention', 'attention_residuals', 'attention_out', 'mlp_hidden', 'mlp_out'),
}


def _stacked(n: int, make, rngs: nnx.Rngs):
  """n modules built by `make(rngs)`, parameters stacked on a leading 'layers' axis."""

  @nnx.split_rngs(splits=n)
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
  def build(r):
    return make(r)

  return build(rngs)


def _gather(state: nnx.State, shardings, leading: int) -> nnx.State:
  """Constrains one layer's (or group's) parameters to `shardings` (pure dict of one layer's NamedShardings);
  `leading` extra unsharded leading axes (layers within a group)."""
  if leading:
    shardings = jax.tree.map(lambda s: NamedSharding(s.mesh, P(*(None,) * leading, *s.spec)), shardings)
  pure = jax.tree.map(jax.lax.with_sharding_constraint, nnx.to_pure_dict(state), shardings)
  nnx.replace_by_pure_dict(state, pure)
  return state


def _run_stack(stack: nnx.Module, carry, body, *, scan: bool, remat: str, groups: int = 0, layer_shardings=None):
  """Applies `body(carry, layer_module) -> carry` for each layer of a stacked module.

  groups > 0 runs `body(carry, [modules])` over `groups` consecutive groups of layers (the dual tower); stack is a
  tuple of stacked modules then, each reshaped to [groups, layers per group, ...] (index the second axis in body).
  layer_shardings: None, or per stack the shardings of one layer's parameters, applied inside the loop: with FSDP
  each layer's weights are then gathered (and their gradients reduce-scattered) one layer at a time.
  """
  stacks = stack if isinstance(stack, tuple) else (stack,)
  splits = [nnx.split(s) for s in stacks]
  graphdefs = [g for g, _ in splits]
  states = [st for _, st in splits]
  n = jax.tree.leaves(states[0])[0].shape[0]
  if groups:
    states = [jax.tree.map(lambda x: x.reshape((groups, x.shape[0] // groups) + x.shape[1:]), st) for st in states]
    n = groups

  def step(c, sts):
    if layer_shardings is not None:
      sts = [_gather(st, sh, 1 if groups else 0) for st, sh in zip(sts, layer_shardings)]
    mods = [nnx.merge(g, st) for g, st in zip(graphdefs, sts)]
    return body(c, mods if isinstance(stack, tuple) else mods[0])

  if remat != 'none':
    step = jax.checkpoint(step, policy=REMAT_POLICIES[remat])
  if scan:
    carry, _ = jax.lax.scan(lambda c, sts: (step(c, sts), None), carry, states)
    return carry
  for i in range(n):
    carry = step(carry, [jax.tree.map(lambda x, i=i: x[i], st) for st in states])
  return carry


class FinalLayer(nnx.Module):
  """adaLN (shift, scale; zero-init) + zero-initialized linear to one modality's patch size."""

  def __init__(self, width: int, patch_dim: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, kernel_init=layers.zeros_init)
    self.ada = layers.Dense(width, (2, width), ('mlp', None, 'embed'), **kw)
    self.linear = layers.Dense(width, patch_dim, ('embed', None), **kw)

  def __call__(self, h: jax.Array, cond: jax.Array) -> jax.Array:
    m = self.ada(jax.nn.silu(cond))[:, None]
    return self.linear(layers.modulate(layers.layer_norm(h), m[:, :, 0], m[:, :, 1])).astype(jnp.float32)


class DiT(nnx.Module):
  """Joint audio-video DiT (see module docstring). Build with `build_dit(config, rngs)`."""

  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.model
    self.spec = tokens.spec_from_config(config)
    self.fusion = m.fusion
    self.modality_specific = bool(m.modality_specific_weights) and m.fusion == 'joint'
    self.depth, self.every = m.depth, m.cross_attention_every
    self.heads, self.width = m.num_heads, m.width
    self.rope_theta = m.rope_theta
    self.attention, self.remat, self.scan = m.attention, m.remat, bool(m.scan_layers)
    self.text_dim = m.text_embed_dim
    # {stack name: pure dict of one layer's parameter shardings}, set by the train step for FSDP (see _run_stack).
    self.layer_shardings = None
    dtype, pdt = layers.dtype_of(m.dtype), layers.dtype_of(m.param_dtype)
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=pdt)
    w, mlp_dim = m.width, int(m.width * m.mlp_ratio)

    self.encoder = encoder_lib.SharedAVEncoder(self.spec, w, rngs=rngs, abs_positions=m.abs_positions, **kw)
    self.t_embed = layers.TimestepEmbedder(w, rngs=rngs, **kw)
    self.label_embed = layers.LabelEmbedder(m.num_classes, w, rngs=rngs, param_dtype=pdt)
    self.text_embed = (layers.Dense(m.text_embed_dim, w, (None, 'embed'), rngs=rngs, **kw)
                       if m.text_embed_dim > 0 else None)
    n_mod = 3 if m.text_embed_dim > 0 else 2
    if m.fusion == 'joint':
      streams = n_mod if self.modality_specific else 1
      self.blocks = _stacked(m.depth, lambda r: blocks.Block(w, m.num_heads, mlp_dim, streams, rngs=r, **kw), rngs)
    elif m.fusion == 'dual_tower':
      self.video_blocks = _stacked(m.depth, lambda r: blocks.Block(w, m.num_heads, mlp_dim, 1, rngs=r, **kw), rngs)
      self.audio_blocks = _stacked(m.depth, lambda r: blocks.Block(w, m.num_heads, mlp_dim, 1, rngs=r, **kw), rngs)
      self.cross_blocks = _stacked(m.depth // m.cross_attention_every,
                                   lambda r: blocks.CrossBlock(w, m.num_heads, rngs=r, **kw), rngs)
    else:
      raise ValueError(f'model.fusion={m.fusion!r}')
    self.final_video = FinalLayer(w, self.spec.video_patch_dim, rngs=rngs, **kw)
    self.final_audio = FinalLayer(w, self.spec.audio_patch_dim, rngs=rngs, **kw)

  # --------------------------------------------------------------------------- helpers

  def _rope(self, num_text: int) -> dict:
    """Rotary (cos, sin) per sequence kind, text tokens (no position) appended with zero angle."""
    tables = encoder_lib.rotary_tables(self.spec, self.width // self.heads, self.rope_theta)
    if not num_text:
      return tables
    pad = lambda cs: (np.concatenate([cs[0], np.ones((num_text, cs[0].shape[1]), np.float32)]),
                      np.concatenate([cs[1], np.zeros((num_text, cs[1].shape[1]), np.float32)]))
    return {k: pad(v) for k, v in tables.items()}

  def _joint_context(self, num_text: int, rope: dict) -> blocks.Context:
    lay = self.encoder.layout
    n = len(lay.modality)
    modality = np.concatenate([lay.modality, np.full(num_text, tokens.TEXT)])
    cos, sin = rope.get('sequence', (None, None))
    n_mod = 3 if self.text_embed is not None else 2
    if not self.modality_specific:
      return blocks.Context(cos, sin, modality, None, None, self.attention)
    if lay.is_identity_order:
      nv = self.spec.num_video
      parts = [slice(0, nv), slice(nv, n)] + ([slice(n, n + num_text)] if n_mod == 3 else [])
      return blocks.Context(cos, sin, None, tuple(parts), None, self.attention)
    parts = [np.nonzero(modality == i)[0] for i in range(n_mod)]
    return blocks.Context(cos, sin, None, tuple(parts), np.argsort(np.concatenate(parts)), self.attention)

  def _tower_context(self, rope_key: str, rope: dict) -> blocks.Context:
    cos, sin = rope.get(rope_key, (None, None))
    return blocks.Context(cos, sin, None, None, None, self.attention)

  def _layer_shardings(self, *stacks: str):
    if not self.layer_shardings:
      return None
    return [self.layer_shardings[name] for name in stacks]

  # --------------------------------------------------------------------------- forward

  def __call__(self, x: dict, t: dict, label: jax.Array, text: Optional[jax.Array] = None) -> dict:
    s = self.spec
    cv_t = self.t_embed(t['video'])
    ca_t = self.t_embed(t['audio'])
    lab = self.label_embed(label).astype(cv_t.dtype)
    cv, ca = cv_t + lab, ca_t + lab
    v, a = self.encoder.embed(x)
    txt = None
    if self.text_embed is not None:
      if text is None:
        raise ValueError('model.text_embed_dim > 0: pass text embeddings [B, L, text_embed_dim]')
      txt = self.text_embed(text)
    elif text is not None:
      raise ValueError('text embeddings passed, but model.text_embed_dim = 0')
    num_text = 0 if txt is None else txt.shape[1]
    rope = self._rope(num_text)
    ct = lab + 0.5 * (cv_t + ca_t)  # Text tokens: label + mean noise level.

    if self.fusion == 'joint':
      h = self.encoder.to_sequence(v, a)
      conds = [cv, ca] + ([ct] if txt is not None else [])
      if txt is not None:
        h = jnp.concatenate([h, txt.astype(h.dtype)], axis=1)
      cond = jnp.stack(conds, axis=1)  # [B, M, C]
      ctx = self._joint_context(num_text, rope)
      h = _run_stack(self.blocks, h, lambda c, blk: blk(c, cond, ctx), scan=self.scan, remat=self.remat,
                     layer_shardings=self._layer_shardings('blocks'))
      v, a = self.encoder.split_sequence(h[:, :h.shape[1] - num_text])
    else:
      if txt is not None:
        v = jnp.concatenate([v, txt.astype(v.dtype)], axis=1)
        a = jnp.concatenate([a, txt.astype(a.dtype)], axis=1)
      ctx_v, ctx_a = self._tower_context('video', rope), self._tower_context('audio', rope)
      rope_v, rope_a = rope.get('video'), rope.get('audio')
      cond_v, cond_a = cv[:, None], ca[:, None]

      def group(carry, mods):
        hv, ha = carry
        vb, ab, xb = mods
        take = lambda mod, i: nnx.merge(*_index(nnx.split(mod), i))
        for i in range(self.every):
          hv = take(vb, i)(hv, cond_v, ctx_v)
          ha = take(ab, i)(ha, cond_a, ctx_a)
        return take(xb, 0)(hv, ha, cv, ca, rope_v, rope_a, self.attention)

      v, a = _run_stack((self.video_blocks, self.audio_blocks, self.cross_blocks), (v, a), group, scan=self.scan,
                        remat=self.remat, groups=self.depth // self.every,
                        layer_shardings=self._layer_shardings('video_blocks', 'audio_blocks', 'cross_blocks'))
      v, a = v[:, :s.num_video], a[:, :s.num_audio]

    out_v = patching.unpatchify_video(self.final_video(v, cv), s.video_patch, s.video_latent)
    out_a = patching.unpatchify_audio(self.final_audio(a, ca), s.audio_patch, s.audio_latent)
    return {'video': out_v, 'audio': out_a}


def _index(split, i):
  graphdef, state = split
  return graphdef, jax.tree.map(lambda x: x[i], state)


def build_dit(config, rngs: nnx.Rngs) -> DiT:
  """The configured DiT with fp32 (param_dtype) parameters carrying logical axis names."""
  return DiT(config, rngs=rngs)
