"""Audio-video diffusion transformer, shared part: latents dict + per-modality times + label -> prediction dict.

    dit(x={'video': [B, T_l, H_l, W_l, C_v], 'audio': [B, T_al, F_l, C_a]}, t={'video': [B], 'audio': [B]},
        label=int32 [B], text=None | prompt (`avdiff.models.text.Text`: token ids int32 [B, L] or precomputed
        embeddings)) -> float32 dict with the shapes of x.
    dit(..., sync_embeddings=True) -> (that dict, {'video': [B, T, 64], 'audio': [B, T, 64]}): per video token step,
        unit-norm embeddings of the trunk's output for the auxiliary sync loss (diffusion.sync_loss_weight > 0).

`DiT` holds what every fusion shares: the conditioning (timestep, label and text encoder), the token I/O (shared
AV encoder in, one zero-initialized final layer per modality out) and the rotary tables. Each token is modulated by
its own modality's conditioning vector (timestep embedding of that modality's t + label embedding + pooled text),
so video and audio can sit at different noise levels. With model.text.encoder set the prompt's K text tokens enter
the trunk (model.text.fusion: in the sequence, or by cross-attention). adaLN-Zero gates and zero-initialized output layers make the prediction
exactly zero at init. The transformer trunk between input and output tokens is a subclass's (`avdiff.models.trunks`:
'joint' or 'dual_tower'); build the model with `trunks.build_dit(config, rngs)`, exported as
`avdiff.models.build_dit`. Trunk blocks are layer stacks (`avdiff.models.stacks`).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from avdiff import config_lib
from avdiff.models import attention as attn_lib, encoder as encoder_lib, layers, patching, text as text_lib, tokens


SYNC_DIM = 64  # Width of the sync loss embeddings.


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
  """Conditioning and token I/O of the audio-video DiT (see module docstring); subclasses add the trunk.

  A subclass implements `_build_trunk` (creates its block stacks as attributes, so parameter paths are
  `blocks`, `video_blocks`, ... at the top level) and `_trunk` (runs them). Build with `build_dit(config, rngs)`.
  """

  def __init__(self, config, *, rngs: nnx.Rngs):
    m = config.model
    self.layout = config_lib.layout(config)
    self.fusion = m.fusion
    self.modality_specific = False  # Per-modality block weights; a joint trunk may set it.
    self.depth = m.depth
    self.heads, self.width = m.num_heads, m.width
    self.rope_theta = m.rope_theta
    self.av_time_bias = float(m.av_time_bias)
    self.attention, self.remat, self.scan = m.attention, m.remat, bool(m.scan_layers)
    self.text_fusion = m.text.fusion if config_lib.text_encoder(config) else ''
    # {stack name: pure dict of one layer's parameter shardings}, set by the train step for FSDP (see
    # stacks.run_stack); its presence tells the train state that this model takes them.
    self.layer_shardings = None
    # attention.SequenceParallel, set by the train step on a mesh with a context axis (None: the sequence is whole
    # on every device).
    self.sequence_parallel = None
    dtype, pdt = layers.dtype_of(m.dtype), layers.dtype_of(m.param_dtype)
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=pdt)
    w = m.width

    # Creation order fixes which random numbers each parameter draws from `rngs`: keep it (same seed, same init).
    self.encoder = encoder_lib.SharedAVEncoder(self.layout, w, rngs=rngs, abs_positions=m.abs_positions, **kw)
    self.t_embed = layers.TimestepEmbedder(w, rngs=rngs, **kw)
    self.label_embed = layers.LabelEmbedder(m.num_classes, w, rngs=rngs, param_dtype=pdt)
    self.text_encoder = text_lib.TextEncoder(m.text, w, rngs=rngs, **kw) if self.text_fusion else None
    self._build_trunk(m, rngs, kw)
    self.final_video = FinalLayer(w, self.layout.video_patch_dim, rngs=rngs, **kw)
    self.final_audio = FinalLayer(w, self.layout.audio_patch_dim, rngs=rngs, **kw)
    # Heads of the auxiliary sync loss (diffusion.sync_loss_weight); created last, so that turning the loss on
    # leaves the initial values of every other parameter unchanged.
    self.sync_heads = config.diffusion.sync_loss_weight > 0
    if self.sync_heads:
      self.sync_video = layers.Dense(w, SYNC_DIM, ('embed', None), rngs=rngs, **kw)
      self.sync_audio = layers.Dense(w, SYNC_DIM, ('embed', None), rngs=rngs, **kw)

  # --------------------------------------------------------------------------- trunk (subclasses)

  def _build_trunk(self, m, rngs: nnx.Rngs, kw: dict) -> None:
    """Creates the trunk's block stacks as attributes of self. m: config.model; kw: dtype, param_dtype of blocks."""
    raise NotImplementedError(f'{type(self).__name__} has no trunk: build the model with build_dit(config, rngs)')

  def _trunk(self, v: jax.Array, a: jax.Array, txt: Optional[jax.Array], cv: jax.Array, ca: jax.Array,
             ct: jax.Array, rope: dict) -> tuple[jax.Array, jax.Array]:
    """Transformer blocks over the embedded tokens.

    v [B, N_v, width], a [B, N_a, width]: video and audio tokens in raster order. txt: None or text tokens
    [B, K, width] (in the sequence or attended to, by self.text_fusion). cv, ca, ct [B, width]: conditioning vectors
    of video, audio and text tokens. rope: `_rope(K)` ('tokens') or `_rope(0)`.
    Returns (video [B, N_v, width], audio [B, N_a, width]) in raster order, text tokens dropped.
    """
    raise NotImplementedError

  # --------------------------------------------------------------------------- helpers

  def _rope(self, num_text: int) -> dict:
    """Rotary (cos, sin) per sequence kind, text tokens (no position) appended with zero angle."""
    tables = encoder_lib.rotary_tables(self.layout, self.width // self.heads, self.rope_theta)
    if not num_text:
      return tables
    pad = lambda cs: (np.concatenate([cs[0], np.ones((num_text, cs[0].shape[1]), np.float32)]),
                      np.concatenate([cs[1], np.zeros((num_text, cs[1].shape[1]), np.float32)]))
    return {k: pad(v) for k, v in tables.items()}

  def _time_bias(self, query: str, key: str, num_text: int) -> Optional[attn_lib.TimeBias]:
    """The cross-modal TimeBias between token sets 'sequence' (configured order), 'video' or 'audio', each with
    num_text text tokens appended (no time: no bias); None when model.av_time_bias is 0."""
    if not self.av_time_bias:
      return None
    tok = self.encoder.token_layout
    sets = {'video': (tok.video_time, np.full(len(tok.video_time), tokens.VIDEO)),
            'audio': (tok.audio_time, np.full(len(tok.audio_time), tokens.AUDIO)),
            'sequence': (np.concatenate([tok.video_time, tok.audio_time])[tok.perm], tok.modality)}
    pad = lambda tg: (np.concatenate([tg[0], np.full(num_text, np.nan)]),
                      np.concatenate([tg[1], np.full(num_text, tokens.TEXT)]))
    (tq, gq), (tk, gk) = pad(sets[query]), pad(sets[key])
    return attn_lib.TimeBias(attn_lib.alibi_slopes(self.heads, self.av_time_bias), tq, tk, gq, gk)

  def _layer_shardings(self, *stacks: str):
    """Per named stack, one layer's parameter shardings (None unless the train step set `layer_shardings`)."""
    if not self.layer_shardings:
      return None
    return [self.layer_shardings[name] for name in stacks]

  def _sync_embeddings(self, v: jax.Array, a: jax.Array) -> dict:
    """Trunk output tokens v [B, N_v, width], a [B, N_a, width] (raster order) -> unit-norm float32 embeddings
    {'video': [B, T, SYNC_DIM], 'audio': [B, T, SYNC_DIM]}, one per video token step (T = video_grid[0]): the mean
    of the step's tokens, audio over the audio token steps in the same span."""
    b = v.shape[0]
    steps = self.layout.video_grid[0]
    pooled = {'video': v.reshape(b, steps, -1, v.shape[-1]).mean(2),
              'audio': a.reshape(b, steps, -1, a.shape[-1]).mean(2)}
    heads = {'video': self.sync_video, 'audio': self.sync_audio}
    out = {}
    for m, h in pooled.items():
      e = heads[m](layers.layer_norm(h)).astype(jnp.float32)
      out[m] = e * jax.lax.rsqrt(jnp.sum(jnp.square(e), -1, keepdims=True) + 1e-12)
    return out

  # --------------------------------------------------------------------------- forward

  def __call__(self, x: dict, t: dict, label: jax.Array, text: Optional[text_lib.Text] = None,
               sync_embeddings: bool = False):
    lay = self.layout
    cv_t = self.t_embed(t['video'])
    ca_t = self.t_embed(t['audio'])
    lab = self.label_embed(label).astype(cv_t.dtype)
    v, a = self.encoder.embed(x)
    txt = None
    if self.text_encoder is not None:
      if text is None:
        raise ValueError('model.text.encoder is set: pass a prompt (avdiff.models.text.tokenize; the empty prompt '
                         'is the null text)')
      txt, pooled = self.text_encoder(text)
      lab = lab + pooled.astype(lab.dtype)
    elif text is not None:
      raise ValueError('a prompt was passed, but the model has no text encoder (model.text.encoder is empty)')
    cv, ca = cv_t + lab, ca_t + lab
    num_text = txt.shape[1] if self.text_fusion == 'tokens' else 0  # Text tokens in the sequence.
    rope = self._rope(num_text)
    ct = lab + 0.5 * (cv_t + ca_t)  # Text tokens: label and prompt + mean noise level.
    v, a = self._trunk(v, a, txt, cv, ca, ct, rope)
    out_v = patching.unpatchify_video(self.final_video(v, cv), lay.video_patch, lay.video_latent)
    out_a = patching.unpatchify_audio(self.final_audio(a, ca), lay.audio_patch, lay.audio_latent)
    pred = {'video': out_v, 'audio': out_a}
    if not sync_embeddings:
      return pred
    if not self.sync_heads:
      raise ValueError('sync embeddings asked for, but diffusion.sync_loss_weight = 0 (the model has no sync heads)')
    return pred, self._sync_embeddings(v, a)
