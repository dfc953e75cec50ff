"""What the shared training loop trains: a `Task` builds the model and defines the loss on a device batch.

A task is any object with
  build_model(config, rngs: nnx.Rngs) -> nnx.Module
  loss(model, batch: dict[str, jax.Array], rng) -> (scalar loss, dict of scalar metrics)
and optionally
  frozen_params() -> pytree of arrays (e.g. a pretrained encoder) handed to the jitted step as an ARGUMENT
      (never closed over, so it is not baked into the executable as constants); loss is then called as
      loss(model, batch, rng, frozen=...).
  model_flops_per_clip(config) -> forward FLOPs of the trained model for one clip (MFU; None = XLA's estimate).
  tokens_per_clip(config) -> int (tokens/s).
  eval_loss(model, batch, rng[, frozen]) -> (loss, metrics) on held-out batches (default: `loss`), e.g. with
      diagnostics such as the diffusion task's denoising gain per noise level.
  write_samples(model, step, out_dir, rng) -> list of written paths (periodic samples from EMA params).
`avdiff.eval.sync_train.SyncExpertTask` (contrastive sync expert) is such a task; `DiffusionTask` and
`AutoencoderTask` are the two here.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable

import jax
import ml_collections
from flax import nnx


@runtime_checkable
class Task(Protocol):
  """Structural type of a task (see the module docstring for the optional hooks)."""

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    ...

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    ...


def frozen_params(task) -> Optional[Any]:
  fn = getattr(task, 'frozen_params', None)
  return fn() if fn is not None else None


def call_loss(task, model, batch, rng, frozen):
  if frozen is None:
    return task.loss(model, batch, rng)
  return task.loss(model, batch, rng, frozen=frozen)
