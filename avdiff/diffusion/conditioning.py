"""Conditional sampling modes of the one joint model, and the public `sample` entry point.

Modes (the network's time is per modality per clip, so a modality can be given to it clean at t = 0):
  joint:           both modalities generated.
  audio_to_video:  cond['audio'] given; fed to the network clean at t = 0 at every step (the training loss
                   leaves audio clean with probability clean_audio_prob, so the model has seen this) and returned
                   bit-exact.
  video_to_audio:  the same with the roles swapped.
  continuation:    the first `cond_frames` latent video frames and the matching cond_frames * T_al / T_l audio
                   frames of both modalities given. A time is shared by a whole modality of a clip, so the known
                   region cannot be held clean while the rest is noisy. Instead it is replaced after every step by
                   the given frames noised to the current time, alpha(t) x_known + sigma(t) z with fresh z
                   (RePaint-style replacement, Lugmayr et al. 2022): the network always sees one consistent noise
                   level per modality, and the generated frames are pulled towards agreement with the known ones.
                   The known region is returned bit-exact.
  audio_to_video / video_to_audio with cond_frames > 0: the next window of a long clip. The given modality is held
                   clean as above, and the first cond_frames latent frames of the generated one (the previous
                   window's tail, in cond) are replaced as in continuation.

Joint sampling order (diffusion.joint_order): 'together' steps both modalities down one time grid. 'audio_first'
samples the audio first, the video held at its initial pure noise and fed at t = 1 (the training loss draws the
two times independently with probability independent_t_prob, so the model has seen one modality far noisier than
the other), then the video as in audio_to_video, given that audio clean; 'video_first' the reverse. Twice the model
evaluations of 'together'. Whatever is decided first in a joint sample, the other modality can copy from it through
the correlations of the training set; sampling the leading modality before the other exists makes it take its
attributes from the condition (the prompt) alone.

`fuse(x, t) -> x`, when given, is applied to the state at t = 1 and after every step (before the mode's
constraint): windows of a long clip denoised together are made to agree where they overlap
(`avdiff.diffusion.windows`).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections

from avdiff.diffusion import guidance, samplers, schedules

MODES = ('joint', 'audio_to_video', 'video_to_audio', 'continuation')
JOINT_ORDERS = ('together', 'audio_first', 'video_first')  # diffusion.joint_order (module docstring).
_GIVEN = {'audio_to_video': ('audio',), 'video_to_audio': ('video',)}


def frame_masks(shapes: dict, cond_frames: int) -> dict:
  """Known-frame masks for continuation: {'video': bool [T_l], 'audio': bool [T_al]} (first frames True).

  shapes: {'video': (B, T_l, ...), 'audio': (B, T_al, ...)}; T_al must be a multiple of T_l (one clock).
  """
  t_v, t_a = shapes['video'][1], shapes['audio'][1]
  if t_a % t_v:
    raise ValueError(f'audio latent frames {t_a} are not a multiple of video latent frames {t_v}')
  if not 0 <= cond_frames <= t_v:
    raise ValueError(f'cond_frames={cond_frames} must lie in [0, {t_v}] (latent video frames)')
  return {'video': jnp.arange(t_v) < cond_frames, 'audio': jnp.arange(t_a) < cond_frames * (t_a // t_v)}


def _frame_mask_like(mask: jax.Array, x: jax.Array) -> jax.Array:
  """[T] -> [1, T, 1, ...] with the rank of x [B, T, ...]."""
  return mask.reshape((1, -1) + (1,) * (x.ndim - 2))


def _full_length(c: jax.Array, shape: tuple) -> jax.Array:
  """Given frames [B, k, ...] or the whole clip [B, T, ...] -> [B, T, ...] (zero-padded; the padding is unused)."""
  c = jnp.asarray(c, jnp.float32)
  if c.shape[1] == shape[1]:
    return c
  return jnp.pad(c, [(0, 0), (0, shape[1] - c.shape[1])] + [(0, 0)] * (c.ndim - 2))


def replacement_constraint(cond: dict, masks: dict, schedule: schedules.Schedule) -> Callable:
  """constrain(x, t, rng) for continuation: known frames <- alpha(t) cond + sigma(t) z, exactly cond at t = 0."""

  def constrain(x: dict, t: jax.Array, rng: jax.Array) -> dict:
    alpha, sigma = schedule.alpha_sigma(t)
    out = dict(x)
    for key, k in zip(jax.random.split(rng, len(masks)), sorted(masks)):
      z = jax.random.normal(key, x[k].shape, x[k].dtype)
      known = jnp.where(t == 0.0, cond[k], alpha * cond[k] + sigma * z)
      out[k] = jnp.where(_frame_mask_like(masks[k], x[k]), known, x[k])
    return out

  return constrain


def sample(pred_fn: Callable, shapes: dict, label: Optional[jax.Array], rng: jax.Array,
           diffusion_cfg: ml_collections.ConfigDict, mode: str = 'joint', cond: Optional[dict] = None,
           cond_frames: int = 0, *, null_label: Optional[int] = None, sampler: Optional[str] = None,
           num_steps: Optional[int] = None, text=None, null_text=None, fuse: Optional[Callable] = None) -> dict:
  """Samples latents with the configured sampler, objective, schedule and guidance. Pure and jittable.

  Args:
    pred_fn: (x: dict, t: dict of float32 [B], label int32 [B]) -> dict of raw network outputs; with `text`,
      (x, t, label, text) -> dict.
    shapes: {'video': (B, T_l, H_l, W_l, C_v), 'audio': (B, T_al, F_l, C_a)} (any [B, ...] shapes; continuation
      needs time on axis 1).
    label: int32 [B], or None for unconditional (all null labels).
    rng: PRNG key (initial noise, stochastic samplers, continuation re-noising).
    diffusion_cfg: config.diffusion (objective, schedule, sampler, num_sampling_steps, ddim_eta, guidance_*).
    mode: one of MODES (module docstring).
    cond: given latents: {'audio': [B, ...]} for audio_to_video, {'video': ...} for video_to_audio, both for
      continuation ([B, T, ...] whole clips, or [B, k, ...] just the known frames); with cond_frames > 0 in
      audio_to_video / video_to_audio also the known frames of the generated modality.
    cond_frames: number of known latent video frames k (static): continuation, or the generated modality's known
      prefix in audio_to_video / video_to_audio.
    null_label: the CFG null label (= config.model.num_classes); required when a guidance scale is not 1 or
      label is None.
    sampler, num_steps: override diffusion_cfg.sampler / num_sampling_steps.
    text, null_text: None, or the prompts (a pytree of [B, ...] arrays, e.g. token ids) and the null prompt in the
      same structure (needed when diffusion_cfg.guidance_text is not 1).
    fuse: None, or (x, t) -> x applied to the state after every step (module docstring).
  Returns:
    {'video': float32 [B, ...], 'audio': float32 [B, ...]} at t = 0; given modalities / frames equal `cond`
    bit-exactly.
  """
  df = diffusion_cfg
  if mode not in MODES:
    raise ValueError(f'sampling mode {mode!r} is not one of {MODES}')
  sampler = sampler or df.sampler
  num_steps = int(num_steps or df.num_sampling_steps)
  schedule = schedules.from_config(df)
  batch = shapes['video'][0]
  guided = float(df.guidance_video) != 1.0 or float(df.guidance_audio) != 1.0
  if (guided or label is None) and null_label is None:
    raise ValueError('sample: pass null_label=config.model.num_classes for guidance or unconditional sampling')
  if label is None:
    label = jnp.full((batch,), null_label, jnp.int32)
  net = guidance.guided_pred_fn(pred_fn, null_label, df.guidance_video, df.guidance_audio, text=text,
                                null_text=null_text, scale_text=df.get('guidance_text', 1.0))

  given = _GIVEN.get(mode, ())
  known = tuple(k for k in ('video', 'audio') if k not in given) if mode != 'joint' and cond_frames > 0 else ()
  if mode == 'continuation':
    known = ('video', 'audio')
  needed = given + known
  missing = [k for k in needed if cond is None or k not in cond]
  if missing:
    raise ValueError(f'sampling mode {mode!r} needs cond[{missing}]')
  k_init, k_con, k_run = jax.random.split(rng, 3)
  init_keys = jax.random.split(k_init, len(shapes))
  x = {k: jax.random.normal(key, tuple(shapes[k]), jnp.float32) for key, k in zip(init_keys, sorted(shapes))}
  clean = {k: jnp.asarray(cond[k], jnp.float32) for k in given}
  masks = full = None
  replace = samplers.identity_constraint
  fuse_given = fuse is not None
  fuse = fuse or (lambda x, t: x)
  if known:
    masks = {k: m for k, m in frame_masks(shapes, cond_frames).items() if k in known}
    full = {k: _full_length(cond[k], shapes[k]) for k in known}
    replace = replacement_constraint(full, masks, schedule)

  def constrain(x, t, rng):
    return {**replace(fuse(x, t), t, rng), **clean}

  x = constrain(x, jnp.float32(1.0), k_con)  # fuse, then known frames, then given modalities.
  order = df.get('joint_order', 'together')
  if mode == 'joint' and order != 'together':  # The leading modality first, the other held at pure noise.
    if order not in JOINT_ORDERS:
      raise ValueError(f'diffusion.joint_order={order!r} is not one of {JOINT_ORDERS}')
    if fuse_given:
      raise ValueError(f'diffusion.joint_order={order!r} samples one clip at a time: no fuse (windows)')
    lead = 'audio' if order == 'audio_first' else 'video'
    rest = {k: v for k, v in x.items() if k != lead}
    first = samplers.make_denoiser(net, schedule, df.objective, label, noise=rest)
    clean = samplers.run(sampler, first, {lead: x[lead]}, jax.random.fold_in(k_run, 1), schedule, num_steps,
                         float(df.ddim_eta))
    x = {**x, **clean}  # `constrain` reads `clean` when called: from here on it holds the sampled modality.
  denoise = samplers.make_denoiser(net, schedule, df.objective, label, clean)
  out = samplers.run(sampler, denoise, x, k_run, schedule, num_steps, float(df.ddim_eta), constrain)
  out = {**out, **clean}
  if masks is not None:
    out = {k: jnp.where(_frame_mask_like(masks[k], v), full[k], v) if k in masks else v for k, v in out.items()}
  return out
