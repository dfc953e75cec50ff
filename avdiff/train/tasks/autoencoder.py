"""Stage-1 task: the configured latent autoencoder trained with `avdiff.models.ae_loss` by the shared loop."""

from __future__ import annotations

import copy
import json
import os
import time

import jax
import ml_collections
from absl import logging
from flax import nnx

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import config_lib
from avdiff import models
from avdiff import parallel
from avdiff import run_dir
from avdiff.data import pipeline
from avdiff.eval import reconstruction
from avdiff.train import loop
from avdiff.train import task as task_lib


# The optimizer of stage 1, whatever the train section says: the DiT's own training must not change the
# autoencoder it shares with other runs (avdiff.autoencoders.fields covers model.ae.*, not train.*).
STAGE1_RECIPE = dict(optimizer='adamw', lr_schedule='warmup_cosine', end_lr_fraction=0.1, weight_decay=0.0, b1=0.9,
               b2=0.999, grad_clip_norm=1.0, ema_warmup=True, grad_accum_steps=1)


def stage_config(config: ml_collections.ConfigDict, section: str = 'ae') -> ml_collections.ConfigDict:
  """A copy of the config that trains the stage-1 model of model.<section> ('ae': the autoencoder; 'vocoder'): seed,
  steps, learning rate, warmup, EMA decay and batch size from that section, the rest of the optimizer fixed
  (`STAGE1_RECIPE`), the training data shuffled and repeated, sampling off (periodic samples and in-loop sample
  scoring). Everything that shapes the trained weights is therefore a field of `avdiff.autoencoders.fields`
  (`avdiff.vocoders.fields`)."""
  config = copy.deepcopy(config)
  stage = config.model[section]
  with config.unlocked():
    config.seed = stage.seed
    config.data.shuffle = True
    config.data.num_epochs = -1
    config.train.steps = stage.steps
    config.train.learning_rate = stage.learning_rate
    config.train.global_batch_size = stage.batch_size
    config.train.warmup_steps = stage.warmup_steps
    config.train.ema_decay = stage.ema_decay
    config.train.update(STAGE1_RECIPE)
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
                       eval_clips: int = 32, train: bool = True, progress: bool = True) -> dict:
  """Trains stage 1 in workdir (unless train=False), then measures its reconstruction on `eval_clips` clips of
  `split` with the raw and the EMA params; writes W/ae_eval.json and W/ae_reconstruction.png, after training the
  completion marker W/stage1.json (`avdiff.autoencoders`: the fields it was trained for), and returns the
  metrics (avdiff.eval.reconstruction) with 'step' (the checkpoint evaluated) and 'stopped' ('done', or
  'preempted': saved, not evaluated; rerun to continue)."""
  started = time.perf_counter()
  config = stage_config(config)
  results = {'encoder': config.model.encoder, 'split': split, 'stopped': 'done'}
  if train:
    result = loop.train(config, workdir, AutoencoderTask(config), progress=progress)
    logging.info('Stage 1 finished at step %d (%s).', result['step'], result['stopped'])
    if result['stopped'] != 'done':
      return dict(results, stopped=result['stopped'], step=result['step'])
  results['step'] = checkpoint.latest_step(workdir)
  batch = min(8, eval_clips)
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
  # Training plus this evaluation, in this process (a resumed stage 1 counts from its restart).
  results['seconds'] = time.perf_counter() - started
  run_dir.RunDir(workdir).write_text('ae_eval.json', json.dumps(results, indent=1))
  if train and parallel.is_primary():  # Last: the directory now holds a finished autoencoder of these fields.
    autoencoders.write_marker(workdir, config, step=results['step'], seconds=results['seconds'],
                              eval={k: results[k] for k in ('params', 'ema')})
  return results
