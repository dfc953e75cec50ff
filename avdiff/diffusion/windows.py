"""Windows of a long clip denoised together: the state of overlapping windows made to agree after every step.

A batch of latents [B * n, T, ...] holds n consecutive windows of each of B clips (window-major per clip), window w
starting at latent frame w * hop of its clip. `fuse_overlaps` is the `fuse(x, t)` of `conditioning.sample`:
  t < 1  every frame becomes the weighted mean over the windows that hold it (MultiDiffusion, Bar-Tal et al.
         2023): with the deterministic samplers, whose state is alpha x0_hat + sigma z for a fixed z, that averages
         the windows' predictions of the shared frames. A window's weight ramps linearly across its overlaps, from
         1 / (k + 1) at its edge to 1 after k frames (`window_weights`), so a frame passes from one window to the
         next gradually instead of at the overlap's end.
  t = 1  the initial noise: the earliest window's value (a mean of independent draws would have less than unit
         variance, and the fixed z above would not be one draw on the whole clip).
Shared appearance (share_above < 1): overlaps alone tie neighbours, not the whole clip, and a window may draw the
speaker's face in a slightly other colour than its neighbour, which the next one follows, and so on (measured on the
main job, benchmarks/long_clips.md: first and last window 0.08-0.14 apart in RGB, half the distance between the two
closest speakers, and the speaker classifier disagreeing between windows in a third of the clips). While the noise
level is at least share_above, each window's video mean over time is made the mean over all windows: the coarse,
still part of the picture (decided at high noise) is one for the whole clip, while what moves (a mouth) and the fine
detail (decided below share_above) stay each window's own. A clip is then one speaker throughout, by construction.

The stochastic samplers (ddpm, ddim with eta > 0) add fresh noise per window after each step, which the mean
shrinks where windows overlap; use the deterministic ones.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def canvas_frames(num_windows: int, hop: int, window: int) -> int:
  """Frames of the clip that num_windows windows of `window` frames, `hop` apart, cover."""
  return (num_windows - 1) * hop + window


def window_weights(num_windows: int, hop: int, window: int) -> jnp.ndarray:
  """float32 [num_windows, window]: each window's weight per frame; 1 outside overlaps, (j + 1) / (k + 1) on the
  j-th frame into an overlap of k = window - hop frames (none at the clip's first and last edge)."""
  k = max(window - hop, 0)
  j = jnp.arange(window, dtype=jnp.float32)
  rise = jnp.minimum(1.0, (j + 1.0) / (k + 1.0))
  fall = rise[::-1]
  w = jnp.ones((num_windows, window), jnp.float32)
  w = w.at[1:].multiply(rise)
  return w.at[:-1].multiply(fall)


def _fuse(x: jax.Array, num_windows: int, hop: int, first: bool) -> jax.Array:
  """x [B * n, T, ...] -> the same with overlapping frames made equal (weighted mean, or the earliest window's)."""
  t = x.shape[1]
  w = x.reshape((-1, num_windows) + x.shape[1:])
  canvas = jnp.zeros((w.shape[0], canvas_frames(num_windows, hop, t)) + x.shape[2:], x.dtype)
  if first:  # Later windows first, so each frame ends up with the earliest window's value.
    for i in reversed(range(num_windows)):
      canvas = canvas.at[:, i * hop:i * hop + t].set(w[:, i])
  else:
    weights = window_weights(num_windows, hop, t).astype(x.dtype)
    shape = (1, t) + (1,) * (x.ndim - 2)
    total = jnp.zeros((canvas.shape[1],), x.dtype)
    for i in range(num_windows):
      canvas = canvas.at[:, i * hop:i * hop + t].add(w[:, i] * weights[i].reshape(shape))
      total = total.at[i * hop:i * hop + t].add(weights[i])
    canvas = canvas / total.reshape((1, -1) + (1,) * (x.ndim - 2))
  return jnp.stack([canvas[:, i * hop:i * hop + t] for i in range(num_windows)], 1).reshape(x.shape)


def _share_mean(x: jax.Array, num_windows: int) -> jax.Array:
  """x [B * n, T, ...] -> each window's mean over its frames replaced by the mean of all n windows' means."""
  w = x.reshape((-1, num_windows) + x.shape[1:])
  own = w.mean(axis=2, keepdims=True)
  return (w - own + own.mean(axis=1, keepdims=True)).reshape(x.shape)


def fuse_overlaps(num_windows: int, hop: int, share_above: float = 1.0) -> Callable:
  """fuse(x: dict of [B * num_windows, T_k, ...], t) for windows `hop` latent video frames apart; a modality with
  T_k = r * T_video frames per window has hop r * hop (one clock). share_above < 1: at 1 > t >= share_above each
  window's video mean over its frames (the still appearance: face colour, shape, background) is replaced by the mean
  over all windows of the clip, so every window draws one speaker (module docstring)."""
  if num_windows < 1 or hop < 1:
    raise ValueError(f'num_windows={num_windows} and hop={hop} must be positive')

  def fuse(x: dict, t: jax.Array) -> dict:
    t_video = x['video'].shape[1]
    if hop > t_video:
      raise ValueError(f'hop {hop} exceeds the window ({t_video} latent frames): windows would not overlap')
    out = {}
    for k, v in x.items():
      h = hop * (v.shape[1] // t_video)
      if k == 'video' and share_above < 1.0:
        v = jax.lax.cond((t >= share_above) & (t < 1.0), lambda u: _share_mean(u, num_windows), lambda u: u, v)
      # Only the branch of this time runs: the earliest window's at t = 1, the weighted mean after every step.
      out[k] = jax.lax.cond(t >= 1.0, lambda u, h=h: _fuse(u, num_windows, h, True),
                            lambda u, h=h: _fuse(u, num_windows, h, False), v)
    return out

  return fuse
