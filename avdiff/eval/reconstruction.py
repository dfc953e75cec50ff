"""Stage-1 autoencoder quality on held-out clips: video PSNR and mel error of encode -> decode, plus a figure."""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from avdiff.data import frames


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
