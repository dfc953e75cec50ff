"""Stage-1 task: the configured latent autoencoder trained with `avdiff.models.ae_loss` by the shared loop."""

from __future__ import annotations

import copy
import json
import os

import jax
import ml_collections
from absl import logging
from flax import nnx

from avdiff import checkpoint
from avdiff import config_lib
from avdiff import models
from avdiff import run_dir
from avdiff.data import pipeline
from avdiff.eval import reconstruction
from avdiff.train import loop
from avdiff.train import task as task_lib


def stage_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of the config with the train section set from model.ae (steps, learning rate, batch size), sampling
  off (periodic samples and in-loop sample scoring)."""
  config = copy.deepcopy(config)
  with config.unlocked():
    config.train.steps = config.model.ae.steps
    config.train.learning_rate = config.model.ae.learning_rate
    config.train.global_batch_size = config.model.ae.batch_size
    config.train.sample_every = 0
    config.train.eval_samples = False  # Sampling-based sync scores are the diffusion task's.
  return config


class AutoencoderTask(task_lib.Task):
  """Trains `avdiff.models.build_autoencoder` (model.encoder 'separate_ae' or 'joint_ae')."""

  def __init__(self, config: ml_collections.ConfigDict):
    if config.model.encoder == 'patch':
      raise config_lib.ConfigError("model.encoder='patch' has no autoencoder to train; set "
                                   '--config.model.encoder=separate_ae or joint_ae')
    super().__init__(config)

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    return models.build_autoencoder(config, rngs)

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    del frozen
    return models.ae_loss(model, batch, rng, self.config.model.ae.kl_weight)

  def tokens_per_clip(self, config: ml_collections.ConfigDict) -> int:
    return config_lib.layout(config).num_tokens


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, split: str = 'validation',
                       eval_clips: int = 32, train: bool = True) -> dict:
  """Trains stage 1 in workdir (unless train=False), then measures its reconstruction on `eval_clips` clips of
  `split` with the raw and the EMA params; writes W/ae_eval.json and W/ae_reconstruction.png and returns the
  metrics (avdiff.eval.reconstruction)."""
  config = stage_config(config)
  if train:
    result = loop.train(config, workdir, AutoencoderTask(config))
    logging.info('Stage 1 finished at step %d (%s).', result['step'], result['stopped'])
  batch = min(8, eval_clips)
  results = {'encoder': config.model.encoder, 'split': split}
  for ema in (False, True):
    ae = checkpoint.restore_params(workdir, models.build_autoencoder(config, nnx.Rngs(0)), ema=ema)
    source = pipeline.InputPipeline(config, split, shuffle=False, num_epochs=1, batch_size=batch)
    batches = [b for _, b in zip(range(max(1, eval_clips // batch)), source)]
    metrics, example = reconstruction.reconstruction_metrics(ae, batches)
    results['ema' if ema else 'params'] = metrics
    if not ema:
      with run_dir.staged(workdir) as local:  # cv2 writes local files; a bucket workdir gets a copy.
        reconstruction.save_figure(example, os.path.join(local, 'ae_reconstruction.png'))
    logging.info('%s %s: %s', config.model.encoder, 'EMA' if ema else 'params', metrics)
  run_dir.RunDir(workdir).write_text('ae_eval.json', json.dumps(results, indent=1))
  return results
