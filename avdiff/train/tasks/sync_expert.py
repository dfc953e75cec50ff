"""The sync expert (avdiff.eval.sync_expert) trained contrastively by the shared loop, in the one checkpoint format.

Batches carry each clip's `mouth_box` where the dataset has one (the built-in `talking` data), so the expert learns
on the mouth region of every clip; with config.eval.crop_box set (real clips with one known mouth region) that box
is used for every clip, and without either on whole frames. Evaluation loads it with
`avdiff.eval.scoring.load_scorer(workdir)`.
"""

from __future__ import annotations

import copy

import jax
import ml_collections
from flax import nnx

from avdiff.eval import scoring
from avdiff.eval import sync_expert as se_lib
from avdiff.train import loop
from avdiff.train import task as task_lib


class SyncExpertTask(task_lib.Task):
  """Contrastive InfoNCE loss of `avdiff.eval.sync_expert.contrastive_loss` on video / audio_mel / mouth_box."""

  batch_keys = ('video', 'audio_mel', 'mouth_box')

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> se_lib.SyncExpert:
    return se_lib.build_sync_expert(config, rngs)

  def loss(self, model: se_lib.SyncExpert, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    del rng, frozen  # Deterministic given the batch.
    return se_lib.contrastive_loss(model, batch, self.config.eval.sync_expert.temperature, self.config.eval.crop_box)


def stage_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of the config whose train section comes from eval.sync_expert (steps, batch, learning rate), with
  sampling and in-loop evaluation off."""
  cfg = copy.deepcopy(config)
  se, t = cfg.eval.sync_expert, cfg.train
  with cfg.unlocked():
    t.steps, t.global_batch_size, t.learning_rate = se.steps, se.batch_size, se.learning_rate
    t.warmup_steps = max(1, min(100, se.steps // 10))
    t.sample_every, t.eval_every, t.eval_samples, t.grad_accum_steps = 0, 0, False, 1
    t.checkpoint_every = se.steps
    t.ema_decay = min(0.99, max(0.0, 1.0 - 10.0 / se.steps))  # Short runs: EMA must not stay near the init.
    t.log_every = max(1, se.steps // 30)
  return cfg


def train_and_check(config: ml_collections.ConfigDict, workdir: str, check_clips: int = 32, **kwargs) -> dict:
  """Trains the expert of `config` in workdir (resumable, sharded and logged like every run), then shifts the audio
  of `check_clips` validation clips by known amounts: {'train': loop result, 'shift_recovery': ...} (see
  avdiff.eval.scoring.shift_recovery). kwargs: passed to `avdiff.train.loop.train`."""
  cfg = stage_config(config)
  result = loop.train(cfg, workdir, SyncExpertTask(cfg), **kwargs)
  check = scoring.shift_recovery(scoring.load_scorer(workdir, config), config, 'validation', check_clips)
  return {'train': result, 'shift_recovery': check}
