"""Model samples for evaluation: restore EMA params of a run, sample latents, decode to playable clips.

Modes: 'joint' (conditioned on the held-out clips' labels; generated video + generated audio),
'audio_to_video' (conditioned on the held-out audio; generated video paired with the real held-out waveform) and
'video_to_audio' (conditioned on the held-out video; the real frames paired with the generated audio).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx


def to_uint8(video: np.ndarray) -> np.ndarray:
  """Video float in [-1, 1] -> uint8 0..255."""
  return np.clip(np.round((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


MODES = ('joint', 'audio_to_video', 'video_to_audio')


def restore_models(workdir: str, config: ml_collections.ConfigDict):
  """(DiT with the params of the run in workdir named by config.eval.params, 'ema' or 'raw'; stage-1 autoencoder
  or None for the patch encoder)."""
  from avdiff import models  # pylint: disable=g-import-not-at-top
  from avdiff.train import checkpoint  # pylint: disable=g-import-not-at-top
  if config.eval.params not in ('ema', 'raw'):
    raise ValueError(f"eval.params={config.eval.params!r} is not 'ema' or 'raw'")
  dit = checkpoint.restore_params(workdir, config, ema=config.eval.params == 'ema')
  ae = None
  if config.model.encoder != 'patch':  # As DiffusionTask: the AE's EMA params from its own workdir.
    ae = checkpoint.restore_params(config.model.autoencoder_workdir, config,
                                   model=models.build_autoencoder(config, nnx.Rngs(0)), ema=True)
  return dit, ae


_SAMPLERS: dict = {}  # (graphdef, ae graphdef, mode, config JSON) -> jitted sampler.
_MAX_SAMPLERS = 8


def sampler(config: ml_collections.ConfigDict, graphdef, ae_def, mode: str):
  """jitted (dit state, ae state, label [B], rng, cond video [B, T, H, W, 3], cond mel [B, T_a, n_mels]) ->
  (video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels]).

  Built once per (model structure, config, mode) and kept: evaluation samples each condition, and the training loop
  scores samples at every eval step, with the same structure, so none of them compiles the sampler again.
  """
  from avdiff.train import diffusion_task  # pylint: disable=g-import-not-at-top
  key = (graphdef, ae_def, mode, config.to_json_best_effort(sort_keys=True))
  if key in _SAMPLERS:
    return _SAMPLERS[key]

  def run(st, ae_st, label, rng, cond_video, cond_mel):
    auto = nnx.merge(ae_def, ae_st) if ae_def is not None else None
    cond = None
    if mode == 'audio_to_video':
      cond = {'audio': diffusion_task.to_latents(config, auto, cond_video, cond_mel)['audio']}
    elif mode == 'video_to_audio':
      cond = {'video': diffusion_task.to_latents(config, auto, cond_video, cond_mel)['video']}
    return diffusion_task.sample_clips(config, nnx.merge(graphdef, st), auto, label, rng, mode, cond)

  if len(_SAMPLERS) >= _MAX_SAMPLERS:
    _SAMPLERS.pop(next(iter(_SAMPLERS)))
  _SAMPLERS[key] = jax.jit(run)
  return _SAMPLERS[key]


def generate(workdir: str, config: ml_collections.ConfigDict, clips: list[dict], mode: str, seed: int,
             batch_size: int = 8, dit=None, ae=None) -> list[dict]:
  """One sample per held-out clip (its label; for audio_to_video its audio), as video uint8 + waveform clips.

  dit / ae: already restored models (e.g. the training loop's current EMA model); default: restored from workdir.
  """
  from avdiff.data import audio as audio_lib  # pylint: disable=g-import-not-at-top
  if mode not in MODES:
    raise ValueError(f'evaluation sampling mode {mode!r} is not one of {MODES}')
  if dit is None:
    dit, ae = restore_models(workdir, config)
  graphdef, state = nnx.split(dit)
  ae_def, ae_state = nnx.split(ae) if ae is not None else (None, None)
  run = sampler(config, graphdef, ae_def, mode)

  out = []
  rng = jax.random.key(seed)
  for s in range(0, len(clips), batch_size):
    chunk = clips[s:s + batch_size]
    label = jnp.asarray([c['label'] for c in chunk], jnp.int32)
    mel = np.stack([c['audio_mel'] if 'audio_mel' in c else audio_lib.log_mel(c['audio'], config.data)
                    for c in chunk]).astype(np.float32)
    real_video = np.stack([c['video'] for c in chunk]).astype(np.float32) / 127.5 - 1.0
    video, gen_mel = run(state, ae_state, label, jax.random.fold_in(rng, s), real_video, mel)
    video, gen_mel = to_uint8(jax.device_get(video)), np.asarray(jax.device_get(gen_mel))
    for i, c in enumerate(chunk):
      audio = c['audio'] if mode == 'audio_to_video' else audio_lib.mel_to_waveform(gen_mel[i], config.data)
      frames = c['video'] if mode == 'video_to_audio' else video[i]
      gen = {'video': frames, 'audio': np.asarray(audio, np.float32), 'label': c['label']}
      if 'mouth_box' in c:
        gen['mouth_box'] = c['mouth_box']  # The model draws each speaker's face where the data does.
      out.append(gen)
  return out
