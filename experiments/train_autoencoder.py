"""Stage 1: trains the latent autoencoder of config.model.encoder with the shared loop, then measures its
reconstruction on held-out clips and writes `ae_eval.json` and `ae_reconstruction.png` in the workdir.

    python -m experiments.train_autoencoder --config=configs/tiny.py --workdir=runs/ae_sep \
        --config.model.encoder=separate_ae [--config.model.ae.steps=300]
    # then the diffusion stage on its latents:
    python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny_sep \
        --config.model.encoder=separate_ae --config.model.autoencoder_workdir=runs/ae_sep

Training uses config.model.ae.{steps, learning_rate, batch_size} in place of the train section's values (as
`experiments.train --task=autoencoder` does). Rerunning resumes. The evaluation reports, per parameter set
(raw params and EMA params): video PSNR (dB, frames in [-1, 1], peak-to-peak 2) and mel mean absolute error /
RMSE (normalized log-mel units, roughly [-1, 1]).
"""

import json
import os

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from avdiff import parallel

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_SPLIT = flags.DEFINE_string('split', 'validation', 'Held-out split for the reconstruction metrics.')
_EVAL_CLIPS = flags.DEFINE_integer('eval_clips', 32, 'Clips scored.')
_EVAL_ONLY = flags.DEFINE_bool('eval_only', False, 'Skip training; evaluate the latest checkpoint.')


def reconstruction_metrics(ae: nnx.Module, batches) -> dict:
  """Mean video PSNR (dB) and mel MAE / RMSE over host batches {'video' uint8, 'audio_mel'}."""
  graphdef, state = nnx.split(ae)

  @jax.jit
  def run(state, video, mel):
    model = nnx.merge(graphdef, state)
    video = video.astype(jnp.float32) / 127.5 - 1.0
    v_hat, m_hat = model.decode(model.encode(video, mel))
    mse = jnp.mean(jnp.square(jnp.clip(v_hat, -1, 1) - video), axis=(1, 2, 3, 4))
    return 10.0 * jnp.log10(4.0 / mse), jnp.mean(jnp.abs(m_hat - mel), (1, 2)), jnp.mean(jnp.square(m_hat - mel),
                                                                                            (1, 2)), v_hat, m_hat

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


def save_figure(example, path: str, frames: int = 6):
  """PNG: top row original frames, second row reconstructions, then original / reconstructed mel (time on x)."""
  import cv2  # pylint: disable=g-import-not-at-top
  video, v_hat, mel, m_hat = example
  idx = np.linspace(0, len(video) - 1, frames).round().astype(int)
  to_u8 = lambda x: ((np.clip(x, -1, 1) + 1) * 127.5).round().astype(np.uint8)
  row = lambda v: np.concatenate(list(v[idx]), axis=1)
  top = np.concatenate([row(video), row(to_u8(v_hat))], axis=0)
  width = top.shape[1]
  mel_img = lambda m: cv2.resize(to_u8(m.T[::-1]), (width, top.shape[0] // 2), interpolation=cv2.INTER_NEAREST)
  mels = np.concatenate([mel_img(mel), mel_img(m_hat)], axis=0)
  image = np.concatenate([top, np.repeat(mels[..., None], 3, axis=-1)], axis=0)
  cv2.imwrite(path, cv2.cvtColor(cv2.resize(image, (width * 4, image.shape[0] * 4),
                                            interpolation=cv2.INTER_NEAREST), cv2.COLOR_RGB2BGR))


def main(argv):
  del argv
  parallel.initialize('', 1, 0)
  from avdiff import models  # pylint: disable=g-import-not-at-top
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  from avdiff.train import checkpoint, loop  # pylint: disable=g-import-not-at-top
  from avdiff.train.autoencoder_task import AutoencoderTask, stage1_config  # pylint: disable=g-import-not-at-top
  config = stage1_config(_CONFIG.value)
  workdir = _WORKDIR.value
  if not _EVAL_ONLY.value:
    result = loop.train(config, workdir, AutoencoderTask(config))
    logging.info('Stage 1 finished at step %d (%s).', result['step'], result['stopped'])
  batch = min(8, _EVAL_CLIPS.value)
  results = {'encoder': config.model.encoder, 'split': _SPLIT.value}
  for ema in (False, True):
    ae = checkpoint.restore_params(workdir, config, model=models.build_autoencoder(config, nnx.Rngs(0)), ema=ema)
    source = pipeline.InputPipeline(config, _SPLIT.value, shuffle=False, num_epochs=1, batch_size=batch)
    batches = [b for _, b in zip(range(max(1, _EVAL_CLIPS.value // batch)), source)]
    metrics, example = reconstruction_metrics(ae, batches)
    results['ema' if ema else 'params'] = metrics
    if not ema:
      save_figure(example, os.path.join(workdir, 'ae_reconstruction.png'))
    logging.info('%s %s: %s', config.model.encoder, 'EMA' if ema else 'params', metrics)
  with open(os.path.join(workdir, 'ae_eval.json'), 'w') as f:
    json.dump(results, f, indent=1)
  print(json.dumps(results))


if __name__ == '__main__':
  app.run(main)
