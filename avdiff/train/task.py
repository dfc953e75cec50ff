"""What the training loop trains: a `Task` builds the model, defines the loss and answers the loop's hooks.

Subclasses implement `build_model` and `loss`; every other hook has a default here, and the loop calls each one
unconditionally. The tasks of this package are in `avdiff.train.tasks`: diffusion (the DiT), autoencoder (stage 1)
and sync_expert (the contrastive lip-sync network used by evaluation).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import ml_collections
from flax import nnx

from avdiff.data import pipeline


class Task:
  """Base class of everything the loop trains.

  batch_keys: the host batch keys the step needs on device, e.g. ('video', 'audio_mel', 'label'); keys a dataset
    does not have are left out (so a task can ask for optional ground truth such as 'mouth_box').
  """

  batch_keys: tuple[str, ...] = ('video', 'audio_mel', 'label')

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    raise NotImplementedError

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen: Optional[Any] = None
           ) -> tuple[jax.Array, dict]:
    """(scalar loss, dict of scalar metrics) on a device batch (video float [B, T, H, W, 3] in [-1, 1], ...)."""
    raise NotImplementedError

  def input_pipeline(self, config: ml_collections.ConfigDict, split: str, **kwargs) -> pipeline.InputPipeline:
    """The batches of `split` the loop trains (split 'train') or measures the held-out loss (split 'validation') on;
    kwargs: `pipeline.InputPipeline`'s. Default: the dataset's clips."""
    return pipeline.InputPipeline(config, split, **kwargs)

  def frozen_params(self) -> Optional[Any]:
    """Pytree of arrays the loss needs but does not train (e.g. a stage-1 autoencoder), or None. Handed to the
    jitted step as an argument (`frozen`), never closed over, so it is not baked into the executable."""
    return None

  def eval_loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen: Optional[Any] = None
                ) -> tuple[jax.Array, dict]:
    """Loss and metrics on held-out batches; default the training loss (tasks add diagnostics here)."""
    return self.loss(model, batch, rng, frozen)

  def model_flops_per_clip(self, config: ml_collections.ConfigDict) -> Optional[float]:
    """Training FLOPs of one clip (MFU); None: the loop uses XLA's cost analysis of the compiled step."""
    return None

  def tokens_per_clip(self, config: ml_collections.ConfigDict) -> int:
    """Tokens the model sees per clip (tokens/s); 0 when the notion does not apply."""
    return 0

  def write_samples(self, model_def, params, step: int, out_dir: str, mesh: jax.sharding.Mesh,
                    write: bool = True) -> list[str]:
    """Writes periodic samples of `params` (the EMA params) to out_dir; returns their paths. Default: none."""
    return []

  def score_samples(self, model_def, params, step: int, mesh: Optional[jax.sharding.Mesh] = None) -> dict[str, float]:
    """Metrics of samples of `params` on held-out clips (in-loop evaluation). Default: none."""
    return {}
