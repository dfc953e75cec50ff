"""Model samples for evaluation: restore EMA params of a run, sample latents, decode to playable clips.

Modes: 'joint' (conditioned on the held-out clips' labels; generated video + generated audio) and
'audio_to_video' (conditioned on the held-out audio; generated video paired with the real held-out waveform).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from avdiff import config_lib


def to_uint8(video: np.ndarray) -> np.ndarray:
  """Video float in [-1, 1] -> uint8 0..255."""
  return np.clip(np.round((np.asarray(video, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def restore_models(workdir: str, config: ml_collections.ConfigDict):
  """(dit with EMA params, autoencoder or None) of the run in workdir."""
  from avdiff import models  # pylint: disable=g-import-not-at-top
  from avdiff.train import checkpoint  # pylint: disable=g-import-not-at-top
  dit = checkpoint.restore_params(workdir, config, ema=True)
  ae = None
  if config.model.encoder != 'patch':
    ae = models.build_autoencoder(config, nnx.Rngs(0))
    ae = checkpoint.restore_params(config.model.autoencoder_workdir, config, model=ae, ema=False)
  return dit, ae


def encode(ae, video_u8: np.ndarray, mel: np.ndarray) -> dict:
  """Clips -> latents dict: identity for the patch encoder (video in [-1, 1], mel[..., None])."""
  video = jnp.asarray(video_u8, jnp.float32) / 127.5 - 1.0
  if ae is None:
    return {'video': video, 'audio': jnp.asarray(mel)[..., None]}
  return ae.encode(video, jnp.asarray(mel))


def decode(ae, latents: dict) -> tuple[np.ndarray, np.ndarray]:
  """Latents -> (video uint8 [B, T, H, W, 3], normalized mel [B, T_a, n_mels])."""
  if ae is None:
    return to_uint8(latents['video']), np.asarray(latents['audio'])[..., 0]
  video, mel = ae.decode(latents)
  return to_uint8(video), np.asarray(mel)


def generate(workdir: str, config: ml_collections.ConfigDict, clips: list[dict], mode: str, seed: int,
             batch_size: int = 8, dit=None, ae=None) -> list[dict]:
  """Samples one clip per held-out clip (labels / audio taken from it), decoded to video uint8 + waveform."""
  from avdiff import diffusion  # pylint: disable=g-import-not-at-top
  from avdiff.data import audio as audio_lib  # pylint: disable=g-import-not-at-top
  if dit is None:
    dit, ae = restore_models(workdir, config)
  lay = config_lib.layout(config)
  graphdef, state = nnx.split(dit)

  def pred_fn_for(st):
    model = nnx.merge(graphdef, st)
    return lambda x, t, label: model(x, t, label)

  @jax.jit
  def sample(st, label, rng, cond):
    shapes = {'video': (label.shape[0], *lay.video_latent), 'audio': (label.shape[0], *lay.audio_latent)}
    return diffusion.sample(pred_fn_for(st), shapes, label, rng, config.diffusion, mode=mode, cond=cond)

  out = []
  rng = jax.random.key(seed)
  for s in range(0, len(clips), batch_size):
    chunk = clips[s:s + batch_size]
    label = jnp.asarray([c['label'] for c in chunk], jnp.int32)
    cond = None
    if mode == 'audio_to_video':
      mel = np.stack([c['audio_mel'] if 'audio_mel' in c else audio_lib.log_mel(c['audio'], config.data)
                      for c in chunk])
      video = np.stack([c['video'] for c in chunk])
      cond = {'audio': encode(ae, video, mel)['audio']}
    latents = sample(state, label, jax.random.fold_in(rng, s), cond)
    video, mel = decode(ae, jax.device_get(latents))
    for i, c in enumerate(chunk):
      audio = c['audio'] if mode == 'audio_to_video' else audio_lib.mel_to_waveform(mel[i], config.data)
      gen = {'video': video[i], 'audio': np.asarray(audio, np.float32), 'label': c['label']}
      if 'mouth_box' in c:
        gen['mouth_box'] = c['mouth_box']  # The generator is trained to draw the speaker's face in place.
      out.append(gen)
  return out
