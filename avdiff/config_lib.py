"""Derived quantities of a config, and `validate`, which runs before anything compiles.

Everything that follows from the config (frames per clip, mel hop, latent shapes, token counts, audio tokens per
latent video frame) is computed here, in one place, from the fields it depends on. Nothing is typed in twice.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import ml_collections

ENCODERS = ('patch', 'separate_ae', 'joint_ae')
FUSIONS = ('joint', 'dual_tower')
POSITIONS = ('rope_shared', 'rope_separate', 'learned')
ORDERS = ('blocks', 'interleaved')
OBJECTIVES = ('x', 'eps', 'v', 'flow')  # = avdiff.diffusion.objectives.OBJECTIVES (config_lib imports no library).
SCHEDULES = ('cosine', 'linear', 'flow')
SAMPLERS = ('ddpm', 'ddim', 'dpmpp_2m', 'euler', 'heun')
JOINT_ORDERS = ('together', 'audio_first', 'video_first')  # = avdiff.diffusion.conditioning.JOINT_ORDERS.
ATTENTIONS = ('auto', 'xla', 'cudnn', 'chunked')
REMATS = ('none', 'full', 'dots', 'projections')
DTYPES = ('float32', 'bfloat16', 'float16')


class ConfigError(ValueError):
  """A config field has a value avdiff cannot run with. The message names the field."""


def _exact_int(value: float, field: str, what: str) -> int:
  rounded = round(value)
  if abs(value - rounded) > 1e-6 or rounded <= 0:
    raise ConfigError(f'{field}: {what} must be a positive integer, got {value:g}')
  return int(rounded)


# ----------------------------------------------------------------------------- data clock

def num_frames(data: ml_collections.ConfigDict) -> int:
  """Video frames per clip: fps * clip_seconds."""
  return _exact_int(data.fps * data.clip_seconds, 'data.clip_seconds', 'fps * clip_seconds (frames per clip)')


def mel_hop(data: ml_collections.ConfigDict) -> int:
  """Mel hop in samples: sample_rate / (fps * mel_frames_per_video_frame), so mel and video share one clock."""
  return _exact_int(data.sample_rate / (data.fps * data.mel_frames_per_video_frame), 'data.mel_frames_per_video_frame',
                    'sample_rate / (fps * mel_frames_per_video_frame) (mel hop in samples)')


def num_mel_frames(data: ml_collections.ConfigDict) -> int:
  """Mel frames per clip, T_a = T * mel_frames_per_video_frame."""
  return num_frames(data) * data.mel_frames_per_video_frame


def num_samples(data: ml_collections.ConfigDict) -> int:
  """Waveform samples per clip: T_a * hop (= sample_rate * clip_seconds)."""
  return num_mel_frames(data) * mel_hop(data)


# ----------------------------------------------------------------------------- latent and token layout

@dataclasses.dataclass(frozen=True)
class Layout:
  """Shapes and token layout of one clip at every stage, all derived from the config.

  Hashable (tuples, floats, strings only): models keep it as static data and `tokens.token_layout` caches on it.
  video_latent: [T_l, H_l, W_l, C_v] what the diffusion model denoises for video.
  audio_latent: [T_al, F_l, C_a] what it denoises for audio (mel frames x mel bins x channels).
  video_patch: (pt, ph, pw) latent frames x rows x columns per video token; audio_patch: (pt, pf) latent mel
    frames x mel bins per audio token.
  video_token_seconds / audio_token_seconds: time spanned by one token step of each modality; their ratio is the
    number of audio token steps per video token step (an integer, checked by `layout`).
  order: token sequence order, 'blocks' | 'interleaved' (model.sequence_order).
  positions: 'rope_shared' | 'rope_separate' | 'learned' (model.positions).
  """
  video_latent: tuple
  audio_latent: tuple
  video_patch: tuple
  audio_patch: tuple
  video_token_seconds: float  # Duration covered by one video token row (temporal patch), seconds.
  audio_token_seconds: float  # Duration covered by one audio token column, seconds.
  order: str
  positions: str

  @property
  def video_grid(self) -> tuple:
    """(t, h, w) video tokens along each axis."""
    return tuple(s // p for s, p in zip(self.video_latent[:3], self.video_patch))

  @property
  def audio_grid(self) -> tuple:
    """(t, f) audio tokens along each axis."""
    return tuple(s // p for s, p in zip(self.audio_latent[:2], self.audio_patch))

  @property
  def num_video_tokens(self) -> int:
    return math.prod(self.video_grid)

  @property
  def num_audio_tokens(self) -> int:
    return math.prod(self.audio_grid)

  @property
  def num_tokens(self) -> int:
    return self.num_video_tokens + self.num_audio_tokens

  @property
  def video_patch_dim(self) -> int:
    """Values per video token: pt * ph * pw * C_v."""
    return math.prod(self.video_patch) * self.video_latent[3]

  @property
  def audio_patch_dim(self) -> int:
    """Values per audio token: pt * pf * C_a."""
    return math.prod(self.audio_patch) * self.audio_latent[2]

  @property
  def audio_steps_per_video_step(self) -> int:
    """Audio token time steps per video token time step (an integer >= 1; `layout` checks it)."""
    return int(round(self.video_token_seconds / self.audio_token_seconds))


def latent_compression(config: ml_collections.ConfigDict) -> tuple[int, int, int, int, int, int]:
  """(video_t, video_s, video_channels, audio_t, audio_f, audio_channels) of the encoder kind."""
  m = config.model
  if m.encoder == 'patch':
    return 1, 1, 3, 1, 1, 1
  ae = m.ae
  return (ae.video_temporal_down, ae.video_spatial_down, ae.video_channels, ae.audio_time_down,
          ae.audio_freq_down, ae.audio_channels)


def layout(config: ml_collections.ConfigDict) -> Layout:
  """Latent shapes, patches and token clock of one clip.

  Raises ConfigError when sizes do not divide, or when video and audio tokens do not land on one clock (a video
  token step must span a whole number >= 1 of audio token steps).
  """
  d, m = config.data, config.model
  vt, vs, vc, at, af, ac = latent_compression(config)
  frames, mels = num_frames(d), num_mel_frames(d)
  where = 'model.ae' if m.encoder != 'patch' else 'data'
  for size, factor, field in ((frames, vt, 'video_temporal_down'), (d.resolution, vs, 'video_spatial_down'),
                              (mels, at, 'audio_time_down'), (d.n_mels, af, 'audio_freq_down')):
    if size % factor:
      raise ConfigError(f'{where}.{field}={factor} does not divide the clip size {size}')
  video_latent = (frames // vt, d.resolution // vs, d.resolution // vs, vc)
  audio_latent = (mels // at, d.n_mels // af, ac)
  pt, ph, pw = m.video_patch
  pa_t, pa_f = m.audio_patch
  checks = ((video_latent[0], pt, 'model.video_patch[0] (frames)'),
            (video_latent[1], ph, 'model.video_patch[1] (height)'),
            (video_latent[2], pw, 'model.video_patch[2] (width)'),
            (audio_latent[0], pa_t, 'model.audio_patch[0] (mel frames)'),
            (audio_latent[1], pa_f, 'model.audio_patch[1] (mel bins)'))
  for size, patch, field in checks:
    if patch <= 0 or size % patch:
      raise ConfigError(f'{field}={patch} does not divide the latent size {size} (latent shapes: video '
                        f'{video_latent}, audio {audio_latent})')
  video_token_seconds = pt * vt / d.fps
  audio_token_seconds = pa_t * at * mel_hop(d) / d.sample_rate
  _exact_int(video_token_seconds / audio_token_seconds, 'model.audio_patch[0]',
             f'video token duration ({video_token_seconds:g} s) / audio token duration ({audio_token_seconds:g} s)')
  return Layout(video_latent, audio_latent, (int(pt), int(ph), int(pw)), (int(pa_t), int(pa_f)),
                float(video_token_seconds), float(audio_token_seconds), m.sequence_order, m.positions)


def audio_tokens_per_video_token_time(config: ml_collections.ConfigDict) -> int:
  """Audio token time steps per video token time step (both on one clock). Raises if not an integer >= 1."""
  return layout(config).audio_steps_per_video_step


# ----------------------------------------------------------------------------- validation

def _choice(value, allowed, field):
  if value not in allowed:
    raise ConfigError(f'{field}={value!r} is not one of {allowed}')


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> dict[str, int]:
  """Mesh axis sizes with the one -1 axis resolved. Raises ConfigError naming `mesh.shape` on mismatch."""
  shape = dict(mesh_cfg.shape.items())
  free = [k for k, v in shape.items() if v == -1]
  if len(free) > 1:
    raise ConfigError(f'mesh.shape: at most one axis may be -1, got {shape}')
  if any(v == 0 or v < -1 for v in shape.values()):
    raise ConfigError(f'mesh.shape: sizes must be positive or -1, got {shape}')
  fixed = math.prod(v for v in shape.values() if v != -1)
  if free:
    if num_devices % fixed:
      raise ConfigError(f'mesh.shape={shape}: fixed axes ({fixed} devices) do not divide the {num_devices} devices')
    shape[free[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ConfigError(f'mesh.shape={shape} needs {fixed} devices, but there are {num_devices}')
  return shape


def data_parallel_size(config: ml_collections.ConfigDict, num_devices: int) -> int:
  shape = mesh_shape(config.mesh, num_devices)
  for axis in config.mesh.data_axes:
    if axis not in shape:
      raise ConfigError(f'mesh.data_axes names {axis!r}, which is not an axis of mesh.shape {dict(shape)}')
  return math.prod(shape[a] for a in config.mesh.data_axes)


LATENT_NORMS = ('none', 'channel')


def latent_norm(config: ml_collections.ConfigDict) -> str:
  """model.latent_norm: 'none' for runs saved before the field existed (their DiTs saw raw latents)."""
  return config.model.get('latent_norm', 'none')


def text_encoder(config: ml_collections.ConfigDict) -> str:
  """model.text.encoder: '' for a model without text, including runs saved before the text section existed."""
  text = config.model.get('text')
  return text.encoder if text is not None else ''


def validate(config: ml_collections.ConfigDict, num_devices: Optional[int] = None,
             num_processes: int = 1) -> Layout:
  """Checks a config before anything compiles; raises ConfigError naming the offending field.

  Args:
    config: a full avdiff config.
    num_devices: devices the mesh must cover (None: skip the mesh checks).
    num_processes: JAX processes; the global batch must split evenly among them.
  Returns:
    The clip's Layout (latent shapes, patches, token grids and clock).
  """
  d, m, df, t = config.data, config.model, config.diffusion, config.train
  for field in ('resolution', 'fps', 'sample_rate', 'n_fft', 'n_mels', 'mel_frames_per_video_frame'):
    if d[field] <= 0:
      raise ConfigError(f'data.{field} must be positive, got {d[field]}')
  if not 0 <= d.fmin < d.fmax <= d.sample_rate / 2:
    raise ConfigError(f'data.fmax={d.fmax} must lie in (fmin, sample_rate / 2 = {d.sample_rate / 2}]')
  hop = mel_hop(d)
  if d.n_fft < hop:
    raise ConfigError(f'data.n_fft={d.n_fft} is shorter than the mel hop {hop}: samples would be skipped')
  num_frames(d)

  _choice(m.encoder, ENCODERS, 'model.encoder')
  _choice(m.fusion, FUSIONS, 'model.fusion')
  _choice(m.positions, POSITIONS, 'model.positions')
  _choice(m.sequence_order, ORDERS, 'model.sequence_order')
  _choice(m.attention, ATTENTIONS, 'model.attention')
  _choice(m.remat, REMATS, 'model.remat')
  _choice(m.dtype, DTYPES, 'model.dtype')
  _choice(m.param_dtype, DTYPES, 'model.param_dtype')
  if m.av_time_bias < 0:
    raise ConfigError(f'model.av_time_bias={m.av_time_bias} is negative: it is a penalty (logits per second)')
  if m.width % m.num_heads:
    raise ConfigError(f'model.width={m.width} is not divisible by model.num_heads={m.num_heads}')
  head_dim = m.width // m.num_heads
  if m.positions != 'learned' and head_dim % 2:
    raise ConfigError(f'model.num_heads: head dim {head_dim} must be even for rotary positions')
  if m.depth <= 0:
    raise ConfigError(f'model.depth must be positive, got {m.depth}')
  if text_encoder(config):
    _choice(m.text.encoder, ('bytes', 'pieces', 'precomputed'), 'model.text.encoder')
    _choice(m.text.fusion, ('tokens', 'cross_attention'), 'model.text.fusion')
    if m.text.fusion == 'cross_attention' and m.fusion != 'joint':
      raise ConfigError("model.text.fusion='cross_attention' needs model.fusion='joint' (the dual tower takes the "
                        "text as tokens in each tower: model.text.fusion='tokens')")
    for field in ('max_bytes', 'width', 'num_heads', 'num_tokens', 'ngram', 'vocab_size'):
      if m.text[field] <= 0:
        raise ConfigError(f'model.text.{field} must be positive, got {m.text[field]}')
    if m.text.depth < 0:
      raise ConfigError(f'model.text.depth must be >= 0 (0: no transformer layer), got {m.text.depth}')
    if m.text.get('bag') and m.text.encoder == 'precomputed':
      raise ConfigError("model.text.bag needs token ids (model.text.encoder='bytes' or 'pieces'), not 'precomputed'")
    if m.text.width % m.text.num_heads:
      raise ConfigError(f'model.text.width={m.text.width} is not divisible by model.text.num_heads={m.text.num_heads}')
    if m.text.encoder == 'precomputed' and (m.text.embed_dim <= 0 or m.text.embed_len <= 0
                                            or not m.text.get('embeddings')):
      raise ConfigError("model.text.encoder='precomputed' needs model.text.embeddings, embed_dim and embed_len (the "
                        'stored table and its shape: the flags experiments.embed_text prints)')
  if m.fusion == 'dual_tower' and (m.cross_attention_every <= 0 or m.depth % m.cross_attention_every):
    raise ConfigError(f'model.cross_attention_every={m.cross_attention_every} must divide model.depth={m.depth}')
  if m.encoder != 'patch':
    for field in ('video_spatial_down', 'video_temporal_down', 'audio_time_down', 'audio_freq_down'):
      factor = m.ae[field]
      if factor <= 0 or factor & (factor - 1):
        raise ConfigError(f'model.ae.{field}={factor} must be a power of two (stride-2 conv stages)')
    _choice(m.ae.video_stem, ('conv', 'patch'), 'model.ae.video_stem')
    if m.ae.video_temporal_down != m.ae.audio_time_down:
      raise ConfigError(f'model.ae.audio_time_down={m.ae.audio_time_down} must equal model.ae.video_temporal_down='
                        f'{m.ae.video_temporal_down}: latent video and audio frames share one clock')
  _choice(latent_norm(config), LATENT_NORMS, 'model.latent_norm')
  if m.encoder == 'patch' and latent_norm(config) != 'none':
    raise ConfigError(f"model.latent_norm={m.latent_norm!r} needs an autoencoder (model.encoder='separate_ae' or "
                      "'joint_ae'); the patch encoder's frames and mel are used as they are")
  lay = layout(config)  # Also checks that latent video and audio tokens land on one clock.

  _choice(df.objective, OBJECTIVES, 'diffusion.objective')
  _choice(config.eval.params, ('ema', 'raw'), 'eval.params')
  _choice(df.schedule, SCHEDULES, 'diffusion.schedule')
  _choice(df.time_sampling, ('uniform', 'logit_normal'), 'diffusion.time_sampling')
  if df.logit_normal_std <= 0:
    raise ConfigError(f'diffusion.logit_normal_std={df.logit_normal_std} must be positive')
  _choice(df.sampler, SAMPLERS, 'diffusion.sampler')
  if df.objective != 'x' and (df.objective == 'flow') != (df.schedule == 'flow'):
    raise ConfigError(f'diffusion.schedule={df.schedule!r} does not fit diffusion.objective={df.objective!r}: '
                      'flow matching uses the flow schedule, eps/v use cosine or linear (x fits any)')
  for field in ('independent_t_prob', 'clean_video_prob', 'clean_audio_prob', 'label_dropout', 'text_dropout',
                'word_dropout'):
    if not 0.0 <= df.get(field, 0.0) <= 1.0:
      raise ConfigError(f'diffusion.{field}={df[field]} is not a probability')
  if df.get('word_dropout', 0.0) > 0 and text_encoder(config) == 'precomputed':
    raise ConfigError("diffusion.word_dropout rewrites training captions, which 'precomputed' embeddings cannot "
                      "follow (they are stored per caption): use model.text.encoder='pieces' or 'bytes', or 0")
  if df.clean_video_prob + df.clean_audio_prob > 1.0:
    raise ConfigError('diffusion.clean_video_prob + clean_audio_prob must be <= 1')
  if df.motion_loss_weight < 0:
    raise ConfigError(f'diffusion.motion_loss_weight={df.motion_loss_weight} must be >= 0 (0: uniform weights)')
  if df.sync_loss_weight < 0 or df.sync_loss_temperature <= 0:
    raise ConfigError(f'diffusion.sync_loss_weight={df.sync_loss_weight} must be >= 0 and '
                      f'diffusion.sync_loss_temperature={df.sync_loss_temperature} positive')
  if df.num_sampling_steps <= 0:
    raise ConfigError(f'diffusion.num_sampling_steps must be positive, got {df.num_sampling_steps}')
  if df.get('joint_order', 'together') not in JOINT_ORDERS:
    raise ConfigError(f'diffusion.joint_order={df.joint_order!r} is not one of {JOINT_ORDERS}')

  if t.global_batch_size <= 0 or t.grad_accum_steps <= 0:
    raise ConfigError('train.global_batch_size and train.grad_accum_steps must be positive')
  if t.global_batch_size % t.grad_accum_steps:
    raise ConfigError(f'train.global_batch_size={t.global_batch_size} is not divisible by '
                      f'train.grad_accum_steps={t.grad_accum_steps}')
  if t.global_batch_size % num_processes:
    raise ConfigError(f'train.global_batch_size={t.global_batch_size} is not divisible by the '
                      f'{num_processes} processes')
  if not 0.0 <= t.ema_decay < 1.0:
    raise ConfigError(f'train.ema_decay={t.ema_decay} must lie in [0, 1)')
  for field in ('steps', 'log_every', 'checkpoint_every', 'keep_checkpoints', 'lease_timeout_s'):
    if t[field] <= 0:
      raise ConfigError(f'train.{field} must be positive, got {t[field]}')
  if t.keep_best_by and not t.keep_best_by.startswith('val_'):
    raise ConfigError(f"train.keep_best_by={t.keep_best_by!r} must name a validation metric ('val_loss', ...)")
  if t.keep_best_by and t.eval_every <= 0:
    raise ConfigError(f'train.keep_best_by={t.keep_best_by!r} needs train.eval_every > 0 (validation metrics)')
  if t.eval_samples and t.eval_every <= 0:
    raise ConfigError(f'train.eval_samples needs train.eval_every > 0 (eval_every={t.eval_every})')
  if num_devices is not None:
    dp = data_parallel_size(config, num_devices)
    micro = t.global_batch_size // t.grad_accum_steps
    if micro % dp:
      raise ConfigError(f'train.global_batch_size={t.global_batch_size} (micro-batch {micro}) is not divisible by '
                        f'the data-parallel size {dp} (mesh axes {tuple(config.mesh.data_axes)})')
    shape = mesh_shape(config.mesh, num_devices)
    tp = shape.get('tensor', 1)
    if m.num_heads % tp:
      raise ConfigError(f'model.num_heads={m.num_heads} is not divisible by mesh.shape.tensor={tp}')
    check_context_parallel(config, shape)
  return lay


def rule_axes(rules, logical: str, shape) -> tuple:
  """Mesh axes of the first of `rules` (config.mesh.axis_rules) for `logical` whose axes are in `shape` (mesh axis
  -> size), restricted to those axes; () when none is. For activations, whose sizes are checked up front
  (`check_context_parallel`) rather than falling back to replication per array as parameters do."""
  for name, axes in rules:
    axes = tuple(a for a in ((axes,) if isinstance(axes, str) else tuple(axes or ())) if a in shape)
    if name == logical and axes:
      return axes
  return ()


def sequence_length(config: ml_collections.ConfigDict) -> int:
  """Tokens in the joint trunk's sequence: video + audio tokens of a clip, plus the prompt's text tokens when they
  join the sequence (model.text.fusion='tokens')."""
  n = layout(config).num_tokens
  if text_encoder(config) and config.model.text.fusion == 'tokens':
    n += config.model.text.num_tokens
  return n


def check_context_parallel(config: ml_collections.ConfigDict, shape: dict) -> int:
  """Checks that the mesh axes of the 'length' rule (mesh.shape.context) can split this model's sequence; returns
  their size (1: no context parallelism). Raises ConfigError naming the fields, so a bad combination fails before
  anything compiles rather than deep in the partitioner."""
  axes = rule_axes(config.mesh.axis_rules, 'length', shape)
  size = math.prod(shape[a] for a in axes)
  if size == 1:
    return 1
  m = config.model
  where = f'mesh.shape.{"*".join(axes)}={size}'
  if m.fusion != 'joint' or (text_encoder(config) and m.text.fusion != 'tokens'):
    raise ConfigError(f"{where} (context parallelism) needs model.fusion='joint' with text, if any, in the sequence "
                      f"(model.text.fusion='tokens'); got model.fusion={m.fusion!r}")
  n = sequence_length(config)
  if n % size:
    raise ConfigError(f'{where} does not divide the {n} tokens of the sequence (video + audio + text tokens of a '
                      'clip: data.clip_seconds, data.resolution, model.video_patch, model.audio_patch)')
  heads = math.prod(shape[a] for a in rule_axes(config.mesh.axis_rules, 'heads', shape) if a not in axes)
  if m.num_heads % (heads * size):
    raise ConfigError(f'model.num_heads={m.num_heads} is not divisible by {where} times the {heads}-way split of '
                      'heads (mesh.shape.tensor): attention splits each device\'s heads over the context devices')
  steps = layout(config).video_grid[0]
  if m.sequence_order == 'interleaved' and steps % size:
    raise ConfigError(f"{where} does not divide the {steps} video token steps, so with "
                      "model.sequence_order='interleaved' a device's audio and video tokens would cover different "
                      "times; choose a context size that divides them")
  return size
