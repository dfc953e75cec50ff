"""The joint audio-video diffusion task: (frozen autoencoder ->) latents -> avdiff.diffusion.training_loss on the
DiT; periodic samples and in-loop sync scores through avdiff.sampling and avdiff.eval.in_loop."""

from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import ml_collections
from flax import nnx

from avdiff import config_lib
from avdiff import diffusion
from avdiff import models
from avdiff import sampling
from avdiff.data import pipeline
from avdiff.data import text_inputs
from avdiff.diffusion import diagnostics
from avdiff.eval import in_loop
from avdiff.eval import workdir as eval_workdir
from avdiff.models import text as text_lib
from avdiff.train import flops
from avdiff.train import task as task_lib


class DiffusionTask(task_lib.Task):
  """Trains `avdiff.models.build_dit` with `avdiff.diffusion.training_loss`.

  For encoder != 'patch' the stage-1 autoencoder (EMA params) is frozen. With cached latents of the train and
  validation splits (`avdiff.train.stage1`) the loop's batches hold `video_latent` / `audio_latent` and the steps
  never run it: it only decodes samples. Without them it encodes every batch, and its params are the task's
  `frozen_params` (a jit argument of the train step, not a compile-time constant).
  """

  batch_keys = ('video', 'audio_mel', 'video_latent', 'audio_latent', 'label', 'text', 'text_embeddings',
                'text_mask')

  def __init__(self, config: ml_collections.ConfigDict, autoencoder: Optional[nnx.Module] = None,
               latents: Optional[dict[str, Any]] = None):
    """autoencoder: the stage-1 model to use (e.g. an abstract one for compile-only benchmarks); default: restored
    by `sampling.load_autoencoder` when model.encoder != 'patch'. latents: {split: random-access source of the
    split's cached latents (`avdiff.data.latents`)}, read by `input_pipeline` in place of the pixel clips."""
    super().__init__(config)
    self._ae_graphdef, self._ae_params = None, None
    self._in_loop_evaluator = None  # Built on first use: loads the held-out clips once.
    self._latents = dict(latents or {})
    if autoencoder is None:
      autoencoder = sampling.load_autoencoder(config)
    if autoencoder is not None:
      self._ae_graphdef, params = nnx.split(autoencoder, nnx.Param)
      self._ae_params = nnx.to_pure_dict(params)

  def input_pipeline(self, config: ml_collections.ConfigDict, split: str, **kwargs) -> pipeline.InputPipeline:
    """The split's cached latents when there are some, else its clips."""
    if split in self._latents:
      return pipeline.InputPipeline(config, split, source=self._latents[split], **kwargs)
    return pipeline.InputPipeline(config, split, **kwargs)

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    return models.build_dit(config, rngs)

  def frozen_params(self) -> Optional[Any]:
    """The autoencoder's params when a step still encodes clips; None when every split the loop reads is cached."""
    if all(split in self._latents for split in ('train', 'validation')):
      return None
    return self._ae_params

  def autoencoder(self, frozen) -> Optional[nnx.Module]:
    if frozen is None:
      return None
    return nnx.merge(self._ae_graphdef, nnx.State(frozen))

  def _text(self, batch: dict) -> Optional[text_lib.Text]:
    """The batch's prompts for the model (None without a text encoder): `text_inputs.model_text`."""
    return text_inputs.model_text(self.config, batch)

  def _clean(self, batch: dict, frozen) -> dict:
    """The clean latents {'video', 'audio'} of the batch: its cached ones, else its clips through the encoder."""
    if 'video_latent' in batch:  # The autoencoder's posterior means, as `sampling.to_latents` computes them.
      return sampling.normalize_latents(self.config, {'video': batch['video_latent'], 'audio': batch['audio_latent']})
    if 'video' not in batch:
      raise ValueError(f'a diffusion batch needs video / audio_mel or video_latent / audio_latent, not {sorted(batch)}')
    return sampling.to_latents(self.config, self.autoencoder(frozen), batch['video'], batch['audio_mel'])

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    """batch: video float32 [B, T, H, W, 3] in [-1, 1] and audio_mel [B, T_a, n_mels], or their cached latents
    video_latent [B, T_l, H_l, W_l, C_v] and audio_latent [B, T_al, F_l, C_a]; label int32 [B] (and the prompts,
    see `_text`)."""
    x0 = self._clean(batch, frozen)
    sync = self.config.diffusion.sync_loss_weight > 0
    text = self._text(batch)
    null_text = None if text is None else text_lib.null_like(text)
    return diffusion.training_loss(lambda x, t, label, txt=None: model(x, t, label, txt, sync_embeddings=sync), x0,
                                   batch['label'], rng, self.config.diffusion, self.config.model.num_classes,
                                   text=text, null_text=null_text)

  def eval_loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    """`loss` plus the denoising gain per noise level (x0 error over predict-the-mean error, per modality; see
    avdiff.diffusion.diagnostics) as metrics 'gain_<modality>_t<t>'; for held-out batches."""
    loss, metrics = self.loss(model, batch, rng, frozen)
    x0 = self._clean(batch, frozen)
    text = self._text(batch)
    errors = diffusion.denoising_errors(lambda x, t, label: model(x, t, label, text), x0, batch['label'],
                                        jax.random.fold_in(rng, 1), self.config.diffusion)
    return loss, {**metrics, **diagnostics.gains(errors)}

  def model_flops_per_clip(self, config: ml_collections.ConfigDict) -> float:
    return flops.train_flops_per_clip(config)

  def tokens_per_clip(self, config: ml_collections.ConfigDict) -> int:
    return config_lib.layout(config).num_tokens

  def _model(self, model_def, params, mesh: Optional[jax.sharding.Mesh] = None) -> sampling.Model:
    return sampling.Model(self.config, model_def.merge(params), self.autoencoder(self._ae_params), mesh=mesh)

  def write_samples(self, model_def, params, step: int, out_dir: str, mesh: jax.sharding.Mesh,
                    write: bool = True) -> list[str]:
    """`train.num_samples` joint clips (labels 0, 1, ...) from `params` -> out_dir/joint_<i>.mp4."""
    labels = sampling.label_clips(self.config, int(self.config.train.num_samples))
    clips = sampling.sample_clips(self._model(model_def, params), labels, 'joint', seed=self.config.seed + step,
                                  mesh=mesh)
    return sampling.write_clips(self.config, clips, out_dir, 'joint', write)

  def score_samples(self, model_def, params, step: int, mesh: Optional[jax.sharding.Mesh] = None) -> dict[str, float]:
    """Sync metrics of samples from `params` on train.eval_clips fixed held-out clips, next to their ground truth:
    {'eval/<ground_truth|model_joint|model_audio_to_video|model_video_to_audio>/<metric>': value}, and on talking
    data the outcome measures (eval/a2v_r, eval/joint_r, eval/v2a_r, ...; avdiff.eval.in_loop). Every sampled mode
    is scored, so a run that syncs in one direction only shows it at the first evaluation. mesh: the training mesh
    the params live on (every process samples and scores the same clips)."""
    if self._in_loop_evaluator is None:
      self._in_loop_evaluator = in_loop.InLoopEvaluator(self.config, modes=eval_workdir.SAMPLED_MODES)
    return self._in_loop_evaluator(functools.partial(sampling.sample_clips, self._model(model_def, params, mesh)),
                                   seed=step)
