"""SharedAVEncoder: video and audio latents -> ONE token sequence [B, N, width], plus the per-token metadata.

Video latents are cut into (pt, ph, pw) patches, audio latents into (pt, pf) patches; each modality has its own
linear patch embedding and a learned modality vector; absolute positions are added per token: the fixed sin-cos
table of the token's (time, row, column) coordinates (`model.abs_positions='sincos'`, with either rotary variant)
or a learned table ('learned' positions).
Tokens are then arranged in the configured order ('blocks' or 'interleaved' per latent frame). The per-token
rotary tables come from `rotary_tables`; `split_sequence` undoes the arrangement.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from avdiff import config_lib
from avdiff.models import layers, patching, positions, tokens


class SharedAVEncoder(nnx.Module):
  """Latents {'video': [B, T_l, H_l, W_l, C_v], 'audio': [B, T_al, F_l, C_a]} -> tokens [B, N_v + N_a, width]."""

  def __init__(self, layout: config_lib.Layout, width: int, *, rngs: nnx.Rngs, dtype=jnp.float32,
               param_dtype=jnp.float32, abs_positions: str = 'none'):
    self.layout = layout
    if abs_positions not in ('none', 'sincos'):
      raise ValueError(f'model.abs_positions={abs_positions!r} is not one of (none, sincos)')
    self.sincos = abs_positions == 'sincos' and layout.positions != 'learned'
    self.width = width
    self.video_embed = layers.Dense(layout.video_patch_dim, width, (None, 'embed'), rngs=rngs, dtype=dtype,
                                    param_dtype=param_dtype)
    self.audio_embed = layers.Dense(layout.audio_patch_dim, width, (None, 'embed'), rngs=rngs, dtype=dtype,
                                    param_dtype=param_dtype)
    init = nnx.initializers.normal(0.02)
    self.modality_embed = layers.param(rngs, init, (2, width), (None, 'embed'), param_dtype)
    self.pos_embed = (layers.param(rngs, init, (layout.num_tokens, width), ('length', 'embed'), param_dtype)
                      if layout.positions == 'learned' else None)

  @property
  def token_layout(self) -> tokens.TokenLayout:
    return tokens.token_layout(self.layout)

  def embed(self, latents: dict) -> tuple[jax.Array, jax.Array]:
    """Per-modality tokens (raster order): video [B, N_v, width], audio [B, N_a, width]."""
    lay = self.layout
    v = self.video_embed(patching.patchify_video(latents['video'], lay.video_patch))
    a = self.audio_embed(patching.patchify_audio(latents['audio'], lay.audio_patch))
    emb = self.modality_embed[...].astype(v.dtype)
    v, a = v + emb[0], a + emb[1]
    if self.pos_embed is not None:
      pos = self.pos_embed[...].astype(v.dtype)
      v, a = v + pos[:lay.num_video_tokens], a + pos[lay.num_video_tokens:]
    if self.sincos:
      tok, sep = self.token_layout, lay.positions == 'rope_separate'
      v = v + jnp.asarray(positions.sincos_embedding(tok.video_pos, self.width, sep), v.dtype)
      a = a + jnp.asarray(positions.sincos_embedding(tok.audio_pos, self.width, sep), a.dtype)
    return v, a

  def to_sequence(self, v: jax.Array, a: jax.Array) -> jax.Array:
    """Video [B, N_v, C] and audio [B, N_a, C] tokens -> one sequence [B, N, C] in the configured order."""
    seq = jnp.concatenate([v, a], axis=1)
    tok = self.token_layout
    return seq if tok.is_identity_order else jnp.take(seq, tok.perm, axis=1)

  def split_sequence(self, seq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inverse of `to_sequence`: [B, N, C] -> (video [B, N_v, C], audio [B, N_a, C]) in raster order."""
    tok = self.token_layout
    if not tok.is_identity_order:
      seq = jnp.take(seq, tok.inv_perm, axis=1)
    nv = self.layout.num_video_tokens
    return seq[:, :nv], seq[:, nv:]

  def __call__(self, latents: dict) -> jax.Array:
    return self.to_sequence(*self.embed(latents))


def rotary_tables(layout: config_lib.Layout, head_dim: int, theta: float) -> dict:
  """numpy cos / sin tables [N, head_dim / 2] for 'sequence' (configured order), 'video' and 'audio' (raster).

  Empty dict for learned positions (no rotation).
  """
  if layout.positions == 'learned':
    return {}
  tok = tokens.token_layout(layout)
  sep = layout.positions == 'rope_separate'
  ang_v = positions.rope_angles(tok.video_pos, head_dim, theta, sep)
  ang_a = positions.rope_angles(tok.audio_pos, head_dim, theta, sep)
  ang_s = np.concatenate([ang_v, ang_a])[tok.perm]
  return {k: (np.cos(x), np.sin(x)) for k, x in (('sequence', ang_s), ('video', ang_v), ('audio', ang_a))}
