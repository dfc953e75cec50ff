"""Stage-1 task: the configured latent autoencoder trained with `avdiff.models.ae_loss` by the shared loop."""

from __future__ import annotations

import jax
import ml_collections
from flax import nnx


def stage1_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with the train section set from model.ae (steps, learning rate, batch size), sampling off (periodic
  samples and in-loop sample scoring)."""
  with config.unlocked():
    config.train.steps = config.model.ae.steps
    config.train.learning_rate = config.model.ae.learning_rate
    config.train.global_batch_size = config.model.ae.batch_size
    config.train.sample_every = 0
    config.train.eval_samples = False  # Sampling-based sync scores are the diffusion task's.
  return config


class AutoencoderTask:
  """Trains `avdiff.models.build_autoencoder` (model.encoder 'separate_ae' or 'joint_ae')."""

  def __init__(self, config: ml_collections.ConfigDict):
    if config.model.encoder == 'patch':
      raise ValueError("model.encoder='patch' has no autoencoder to train; set --config.model.encoder=separate_ae "
                       'or joint_ae')
    self.config = config

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    from avdiff import models  # pylint: disable=g-import-not-at-top
    return models.build_autoencoder(config, rngs)

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    from avdiff import models  # pylint: disable=g-import-not-at-top
    return models.ae_loss(model, batch, rng, self.config.model.ae.kl_weight)

  def tokens_per_clip(self, config: ml_collections.ConfigDict) -> int:
    from avdiff import config_lib  # pylint: disable=g-import-not-at-top
    return config_lib.layout(config).num_tokens
