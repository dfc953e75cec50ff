"""The joint audio-video diffusion task: (frozen autoencoder ->) latents -> avdiff.diffusion.training_loss on the
DiT; periodic samples decoded to mp4 with audio."""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from avdiff import config_lib


def to_latents(config: ml_collections.ConfigDict, ae: Optional[nnx.Module], video: jax.Array,
               mel: jax.Array) -> dict:
  """video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels] -> latents dict (identity for 'patch')."""
  if ae is None or config.model.encoder == 'patch':
    return {'video': video.astype(jnp.float32), 'audio': mel.astype(jnp.float32)[..., None]}
  return jax.lax.stop_gradient(ae.encode(video, mel))


def from_latents(config: ml_collections.ConfigDict, ae: Optional[nnx.Module], latents: dict):
  """Latents -> (video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels])."""
  if ae is None or config.model.encoder == 'patch':
    return latents['video'], latents['audio'][..., 0]
  return ae.decode(latents)


def sample_clips(config: ml_collections.ConfigDict, dit: nnx.Module, ae: Optional[nnx.Module], label: jax.Array,
                 rng: jax.Array, mode: str = 'joint', cond: Optional[dict] = None, cond_frames: int = 0):
  """Samples latents with `dit` for label int32 [B] (pure, jittable) and decodes them:
  (video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels]). cond / cond_frames: see `diffusion.sample`."""
  from avdiff import diffusion  # pylint: disable=g-import-not-at-top
  lay = config_lib.layout(config)
  num = label.shape[0]
  shapes = {'video': (num,) + tuple(lay.video_latent), 'audio': (num,) + tuple(lay.audio_latent)}
  latents = diffusion.sample(dit, shapes, label, rng, config.diffusion, mode=mode,
                             cond=cond, cond_frames=cond_frames, null_label=config.model.num_classes)
  return from_latents(config, ae, latents)


class DiffusionTask:
  """Trains `avdiff.models.build_dit` with `avdiff.diffusion.training_loss`.

  For encoder != 'patch' the stage-1 autoencoder is restored from config.model.autoencoder_workdir and its params
  are the task's `frozen_params` (a jit argument of the train step, not a compile-time constant).
  """

  def __init__(self, config: ml_collections.ConfigDict, autoencoder: Optional[nnx.Module] = None):
    """autoencoder: the stage-1 model to use (e.g. an abstract one for compile-only benchmarks); default: restored
    from config.model.autoencoder_workdir (EMA params) when model.encoder != 'patch'."""
    self.config = config
    self._ae_graphdef = None
    self._ae_params = None
    self._in_loop_evaluator = None  # Built on first use: loads the held-out clips once.
    self._sample_fns = {}  # (mesh, num, mode) -> (model_def, jitted sampler): compiled once per run.
    if config.model.encoder != 'patch':
      if autoencoder is None:
        from avdiff.train import checkpoint  # pylint: disable=g-import-not-at-top
        if not config.model.autoencoder_workdir:
          raise config_lib.ConfigError(f'model.encoder={config.model.encoder!r} needs model.autoencoder_workdir '
                                       '(train one with --task=autoencoder first)')
        autoencoder = checkpoint.restore_params(config.model.autoencoder_workdir, config,
                                                model=self._build_ae(), ema=True)
      self._ae_graphdef, params = nnx.split(autoencoder, nnx.Param)
      self._ae_params = nnx.to_pure_dict(params)

  def _build_ae(self):
    from avdiff import models  # pylint: disable=g-import-not-at-top
    return models.build_autoencoder(self.config, nnx.Rngs(0))

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    from avdiff import models  # pylint: disable=g-import-not-at-top
    return models.build_dit(config, rngs)

  def frozen_params(self) -> Optional[Any]:
    return self._ae_params

  def autoencoder(self, frozen) -> Optional[nnx.Module]:
    if frozen is None:
      return None
    return nnx.merge(self._ae_graphdef, nnx.State(frozen))

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    """batch: video float32 [B, T, H, W, 3] in [-1, 1], audio_mel [B, T_a, n_mels], label int32 [B]."""
    from avdiff import diffusion  # pylint: disable=g-import-not-at-top
    x0 = to_latents(self.config, self.autoencoder(frozen), batch['video'], batch['audio_mel'])
    pred_fn = lambda x, t, label: model(x, t, label)
    return diffusion.training_loss(pred_fn, x0, batch['label'], rng, self.config.diffusion,
                                   self.config.model.num_classes)

  def eval_loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    """`loss` plus the denoising gain per noise level (x0 error over predict-the-mean error, per modality; see
    avdiff.diffusion.diagnostics) as metrics 'gain_<modality>_t<t>'; for held-out batches."""
    from avdiff import diffusion  # pylint: disable=g-import-not-at-top
    from avdiff.diffusion import diagnostics  # pylint: disable=g-import-not-at-top
    loss, metrics = self.loss(model, batch, rng, frozen)
    x0 = to_latents(self.config, self.autoencoder(frozen), batch['video'], batch['audio_mel'])
    errors = diffusion.denoising_errors(lambda x, t, label: model(x, t, label), x0, batch['label'],
                                        jax.random.fold_in(rng, 1), self.config.diffusion)
    return loss, {**metrics, **diagnostics.gains(errors)}

  def model_flops_per_clip(self, config: ml_collections.ConfigDict) -> float:
    from avdiff.train import flops  # pylint: disable=g-import-not-at-top
    return flops.train_flops_per_clip(config)

  def tokens_per_clip(self, config: ml_collections.ConfigDict) -> int:
    return config_lib.layout(config).num_tokens

  def sample_fn(self, model_def, mesh: jax.sharding.Mesh, mode: str = 'joint'):
    """jitted (params, frozen, label [num], rng, cond) -> (video float [num, T, H, W, 3], mel [num, T_a, n_mels]),
    replicated on every process (retraced per num by jit)."""
    key = (mesh, mode)
    cached = self._sample_fns.get(key)
    if cached is None or cached[0] is not model_def:
      cached = self._sample_fns[key] = (model_def, self._make_sample_fn(model_def, mesh, mode))
    return cached[1]

  def _make_sample_fn(self, model_def, mesh: jax.sharding.Mesh, mode: str):
    def run(params, frozen, label, rng, cond, cond_frames):
      return sample_clips(self.config, model_def.merge(params), self.autoencoder(frozen), label, rng, mode, cond,
                          cond_frames)

    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(run, out_shardings=(rep, rep), static_argnums=(5,))

  def write_samples(self, model_def, params, step: int, out_dir: str, rng: jax.Array, mesh: jax.sharding.Mesh,
                    write: bool = True) -> list[str]:
    """Samples `train.num_samples` joint clips (labels 0, 1, ...) from `params`; writes out_dir/joint_<i>.mp4."""
    num = int(self.config.train.num_samples)
    label = jnp.arange(num, dtype=jnp.int32) % self.config.model.num_classes
    video, mel = self.sample_fn(model_def, mesh)(params, self.frozen_params(), label, rng, None, 0)
    return write_clips(self.config, np.asarray(video), np.asarray(mel), out_dir, 'joint', write)


  def score_samples(self, model_def, params, step: int) -> dict[str, float]:
    """Sync metrics of samples from `params` on train.eval_clips fixed held-out clips, next to their ground truth:
    {'eval/<ground_truth|model_joint|model_audio_to_video>/<metric>': value}. Uses the evaluation runner."""
    from avdiff.eval import runner, sampling  # pylint: disable=g-import-not-at-top
    if self._in_loop_evaluator is None:
      self._in_loop_evaluator = runner.InLoopEvaluator(self.config, modes=('joint', 'audio_to_video'))
    dit, ae = model_def.merge(params), self.autoencoder(self._ae_params)
    generate = lambda clips, mode, seed: sampling.generate('', self.config, clips, mode, seed, dit=dit, ae=ae)
    return self._in_loop_evaluator(generate, seed=step)


def write_clips(config: ml_collections.ConfigDict, video: np.ndarray, mel: np.ndarray, out_dir: str, prefix: str,
                write: bool = True, waveforms: Optional[np.ndarray] = None) -> list[str]:
  """video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels] -> out_dir/<prefix>_<i>.mp4 (h264 + AAC).
  The waveform is Griffin-Lim from the mel unless `waveforms` [B, S] is given."""
  from avdiff.data import audio as audio_lib, av_io  # pylint: disable=g-import-not-at-top
  paths = []
  frames = np.clip(np.round((video + 1.0) * 127.5), 0, 255).astype(np.uint8)
  for i in range(frames.shape[0]):
    path = os.path.join(out_dir, f'{prefix}_{i}.mp4')
    paths.append(path)
    if not write:
      continue
    wave = waveforms[i] if waveforms is not None else audio_lib.mel_to_waveform(mel[i], config.data)
    wave = np.clip(np.nan_to_num(np.asarray(wave, np.float32)), -1.0, 1.0)
    av_io.write_video(path, frames[i], wave, config.data.fps, config.data.sample_rate)
  return paths
