"""Stage-1 autoencoder quality on held-out clips: video PSNR and mel error of encode -> decode, plus a figure; and
what the outcome readers see through the autoencoder (`readers`): the mouth, the speaker and the audio envelope."""

from __future__ import annotations

from typing import Sequence

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from avdiff.data import audio as audio_lib
from avdiff.data import builders
from avdiff.data import frames
from avdiff.eval import outcomes
from avdiff.eval import stats


def reconstruct(ae: nnx.Module, clips: Sequence[builders.Clip], batch_size: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
  """encode -> decode of clips with 'video' uint8 [T, H, W, 3] and 'audio_mel' [T_a, n_mels]: (video uint8
  [N, T, H, W, 3], mel float32 [N, T_a, n_mels])."""
  graphdef, state = nnx.split(ae)

  @jax.jit
  def run(state, video, mel):
    model = nnx.merge(graphdef, state)
    return model.decode(model.encode(frames.to_float(video), mel))

  videos, mels = [], []
  for start in range(0, len(clips), batch_size):
    chunk = clips[start:start + batch_size]
    v, m = run(state, np.stack([c['video'] for c in chunk]), np.stack([c['audio_mel'] for c in chunk]))
    videos.append(frames.to_uint8(np.asarray(v)))
    mels.append(np.asarray(m, np.float32))
  return np.concatenate(videos), np.concatenate(mels)


def readers(clips: Sequence[builders.Clip], video_hat: np.ndarray, mel_hat: np.ndarray,
            data_cfg: ml_collections.ConfigDict, classifier: outcomes.SpeakerClassifier) -> dict:
  """The outcome readers on reconstructions of held-out `talking` clips (with 'mouth_open' and 'audio_mel'), each
  beside its value on the originals ('*_truth'): what a latent run's outcomes can see at best.

    mouth_reader_r     the mouth reader on video_hat uint8 [N, T, H, W, 3] against the dataset's mouth_open
                       (`outcomes.reader_validation`; the main job holds the reader to >= 0.95 on ground truth)
    speaker_accuracy   the face-colour speaker classifier on video_hat
    envelope_r         the envelope of mel_hat [N, T_a, n_mels] turned into sound (Griffin-Lim, as sampled audio
                       is) against the envelope of the original mel turned into sound the same way: 1 when the
                       autoencoder keeps the syllables the sync targets read
  """
  recon = [dict(c, video=v) for c, v in zip(clips, video_hat)]
  num_frames = len(clips[0]['video'])
  envelope = lambda mel: outcomes.audio_envelope(audio_lib.mel_to_waveform(mel, data_cfg), num_frames, data_cfg.fps,
                                                 data_cfg.sample_rate)
  env_r = [stats.pearson(envelope(m), envelope(c['audio_mel'])) for c, m in zip(clips, mel_hat)]
  return {'mouth_reader_r': outcomes.reader_validation(recon, data_cfg)['mouth_reader_r'],
          'mouth_reader_r_truth': outcomes.reader_validation(clips, data_cfg)['mouth_reader_r'],
          'speaker_accuracy': classifier.accuracy(recon), 'speaker_accuracy_truth': classifier.accuracy(clips),
          'envelope_r': float(np.nanmean(env_r))}


def reconstruction_metrics(ae: nnx.Module, batches) -> tuple[dict, tuple]:
  """Mean video PSNR (dB; frames in [-1, 1], peak-to-peak 2) and mel MAE / RMSE (normalized log-mel units) over
  host batches {'video' uint8 [B, T, H, W, 3], 'audio_mel' [B, T_a, n_mels]}; plus the first clip's
  (video, reconstruction, mel, reconstruction) for `save_figure`."""
  graphdef, state = nnx.split(ae)

  @jax.jit
  def run(state, video, mel):
    model = nnx.merge(graphdef, state)
    video = frames.to_float(video)
    v_hat, m_hat = model.decode(model.encode(video, mel))
    mse = jnp.mean(jnp.square(jnp.clip(v_hat, -1, 1) - video), axis=(1, 2, 3, 4))
    return (10.0 * jnp.log10(4.0 / mse), jnp.mean(jnp.abs(m_hat - mel), (1, 2)),
            jnp.mean(jnp.square(m_hat - mel), (1, 2)), v_hat, m_hat)

  psnr, mae, mse = [], [], []
  example = None
  for b in batches:
    p, a, s, v_hat, m_hat = run(state, b['video'], b['audio_mel'])
    psnr.append(np.asarray(p))
    mae.append(np.asarray(a))
    mse.append(np.asarray(s))
    if example is None:
      example = (b['video'][0], np.asarray(v_hat[0]), b['audio_mel'][0], np.asarray(m_hat[0]))
  psnr, mae, mse = map(np.concatenate, (psnr, mae, mse))
  return {'clips': int(len(psnr)), 'video_psnr_db': float(psnr.mean()), 'mel_mae': float(mae.mean()),
          'mel_rmse': float(np.sqrt(mse.mean()))}, example


def save_figure(example: tuple, path: str, num_frames: int = 6) -> None:
  """PNG: top row original frames, second row reconstructions, then original / reconstructed mel (time on x)."""
  video, v_hat, mel, m_hat = example
  idx = np.linspace(0, len(video) - 1, num_frames).round().astype(int)
  row = lambda v: np.concatenate(list(v[idx]), axis=1)
  top = np.concatenate([row(video), row(frames.to_uint8(v_hat))], axis=0)
  width = top.shape[1]
  mel_img = lambda m: cv2.resize(frames.to_uint8(m.T[::-1]), (width, top.shape[0] // 2),
                                 interpolation=cv2.INTER_NEAREST)
  mels = np.concatenate([mel_img(mel), mel_img(m_hat)], axis=0)
  image = np.concatenate([top, np.repeat(mels[..., None], 3, axis=-1)], axis=0)
  cv2.imwrite(path, cv2.cvtColor(cv2.resize(image, (width * 4, image.shape[0] * 4),
                                            interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR))
