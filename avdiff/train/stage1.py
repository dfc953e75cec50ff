"""Stage 1 pays once: a latent run (model.encoder 'separate_ae' / 'joint_ae') finds the autoencoder trained for its
data and AE fields, or trains it first, and reads its clips as latents cached once, so the DiT step never runs the
encoder.

    config, ae, latents = stage1.prepare(config)      # what `avdiff.train.tasks.build('diffusion', ...)` does

1. The autoencoder (`find_or_train`): model.autoencoder_workdir when set, else
   <model.autoencoder_root>/<encoder>-<fingerprint> (`avdiff.autoencoders`). A directory with the completion marker
   is used; one without it is trained (a killed stage-1 run resumes from its checkpoint), evaluated and marked.
   A marker written for other fields is refused with the fields that differ.
2. The latents (`cache_latents`): the posterior means of the train and validation splits (the ones the loop reads
   through `Task.input_pipeline`), as a TFDS dataset named by the data fields and the autoencoder's fingerprint
   (`avdiff.data.latents`), built on first use.

The returned config names the autoencoder directory in model.autoencoder_workdir, so the run's config.json records
it and sampling / evaluation of the run load the same autoencoder (when that path is gone, e.g. runs/ was moved, they
take the directory of the same fingerprint under the autoencoder root: `autoencoders.trained_dir`).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Iterator, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import config_lib
from avdiff import console
from avdiff import run_dir
from avdiff import sampling
from avdiff.data import builders
from avdiff.data import frames
from avdiff.data import latents as latents_lib
from avdiff.train.tasks import autoencoder as autoencoder_task

# The splits whose latents are cached: the training batches and the held-out loss batches (`loop.evaluate`).
# Sampling and evaluation read pixel clips (`builders.load_clips`) and decode latents: they need no cache.
SPLITS = ('train', 'validation')


class Preempted(console.UserError):
  """Stage-1 training was preempted (SIGTERM): saved, not finished; rerunning the command continues it."""


def _say(message: str) -> None:
  logging.info(message)
  if jax.process_index() == 0:
    console.say(message)


def find_or_train(config: ml_collections.ConfigDict, progress: bool = True) -> str:
  """The directory of the config's trained autoencoder, training it there first when it is not complete.

  Raises config_lib.ConfigError when the directory's marker names other fields (`autoencoders.check`), Preempted
  when stage-1 training was stopped by a preemption notice."""
  ae_dir = autoencoders.trained_dir(config)
  explicit = bool(config.model.autoencoder_workdir)
  marker = autoencoders.check(config, ae_dir)
  if marker is not None:
    _say(f'Using trained autoencoder at {ae_dir} (fingerprint {marker["fingerprint"]})')
    return ae_dir
  step = checkpoint.latest_step(ae_dir)
  if explicit and step is not None:  # Trained by hand before markers existed: used as given.
    _say(f'Using trained autoencoder at {ae_dir} (step {step}; no {autoencoders.MARKER}, so its fields are not '
         'checked)')
    return ae_dir
  resume = f', resuming from step {step}' if step is not None else ''
  _say(f'Training autoencoder at {ae_dir} first (fingerprint {autoencoders.fingerprint(config)}{resume})')
  result = autoencoder_task.train_and_evaluate(config, ae_dir, progress=progress)
  if result['stopped'] != 'done':
    raise Preempted(f'stage-1 training in {ae_dir} was preempted at step {result["step"]} (saved); rerun the same '
                    'command to continue it')
  if jax.process_count() > 1:  # The marker is written by process 0; the others read it below.
    multihost_utils.sync_global_devices(f'avdiff.stage1.marker:{ae_dir}')
  _say(f'Trained autoencoder at {ae_dir} (fingerprint {autoencoders.fingerprint(config)}): video PSNR '
       f'{result["ema"].get("video_psnr_db", float("nan")):.2f} dB (EMA params)')
  return ae_dir


def _encoder(ae: nnx.Module):
  """(video uint8 [B, T, H, W, 3], mel [B, T_a, n_mels]) -> host posterior means {'video', 'audio'} (`ae.encode`:
  raw, so one cache serves every model.latent_norm; the DiT reads them through `sampling.normalize_latents`, as
  `sampling.to_latents` gives them), one compiled function for every batch."""
  graphdef, state = nnx.split(ae)

  @jax.jit
  def encode(state, video, mel):
    return nnx.merge(graphdef, state).encode(frames.as_float(video), mel)

  return lambda video, mel: jax.device_get(encode(state, video, mel))


def _text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def latent_examples(source, encode, batch_size: int = 16) -> Iterator[dict]:
  """The latent example of each clip of a pixel data source, in its order (`avdiff.data.latents` features).
  encode: `_encoder`'s function; every batch is padded to batch_size (one compilation)."""
  for start in range(0, len(source), batch_size):
    recs = [source[i] for i in range(start, min(start + batch_size, len(source)))]
    video = np.stack([np.asarray(r['video'], np.uint8) for r in recs])
    mel = np.stack([np.asarray(r['audio_mel'], np.float32) for r in recs])
    pad = batch_size - len(recs)
    if pad:
      video = np.concatenate([video, np.repeat(video[-1:], pad, 0)])
      mel = np.concatenate([mel, np.repeat(mel[-1:], pad, 0)])
    z = encode(video, mel)
    for i, r in enumerate(recs):
      yield {'video_latent': np.asarray(z['video'][i], np.float32), 'audio_latent': np.asarray(z['audio'][i],
                                                                                             np.float32),
             'label': np.int32(r['label']), 'key': _text(r.get('key', '')), 'caption': _text(r.get('caption', ''))}


def latent_builder(config: ml_collections.ConfigDict, ae_dir: str) -> latents_lib.Latents:
  """The (possibly unbuilt) latent dataset of the config's data under the autoencoder in ae_dir."""
  lay = config_lib.layout(config)
  ae_id = autoencoders.identity(config, ae_dir, checkpoint.latest_step(ae_dir))
  fields = latents_lib.latent_fields(config.data, config.model.encoder, ae_id, tuple(lay.video_latent),
                                     tuple(lay.audio_latent), SPLITS)
  return latents_lib.Latents(fields=fields, data_dir=builders.data_dir(config.data))


def cache_latents(config: ml_collections.ConfigDict, ae_dir: str, ae: nnx.Module) -> dict[str, Any]:
  """{split: random-access source of its cached latents} for SPLITS, encoding the clips with `ae` (the EMA params
  of ae_dir) on first use. With several processes, process 0 builds while the others wait."""
  builder = latent_builder(config, ae_dir)
  if not builder.is_prepared() and jax.process_index() == 0:
    _say(f'Caching latents of {config.data.dataset} ({", ".join(SPLITS)}) in {builder.data_path}')
    started = time.perf_counter()
    encode = _encoder(ae)
    builder.generate({split: (lambda s=split: latent_examples(builders.load_source(config, s), encode))
                      for split in SPLITS})
    # The one-time cost beside stage 1's (`avdiff.study.verdicts` reads both).
    run_dir.RunDir(ae_dir).write_text(autoencoders.LATENT_CACHE, json.dumps(
        {'dataset': builder.builder_config.name, 'seconds': time.perf_counter() - started}, indent=1))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'avdiff.stage1.latents:{builder.builder_config.name}')
    builder = latent_builder(config, ae_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(f'latent dataset {builder.builder_config.name} was not found in {builder.data_dir} '
                            'after process 0 built it: data.data_dir must be shared by every process')
  logging.info('Latents of %s read from %s', config.data.dataset, builder.data_path)
  return {split: builder.as_data_source(split=split) for split in SPLITS}


def prepare(config: ml_collections.ConfigDict, progress: bool = True
            ) -> tuple[ml_collections.ConfigDict, Optional[nnx.Module], Optional[dict[str, Any]]]:
  """(config naming the autoencoder directory, the frozen autoencoder with its EMA params, {split: cached latent
  source}) for a latent config; (config, None, None) for model.encoder='patch'. Validates the config first, so a
  wrong one fails before stage 1 trains."""
  if config.model.encoder == 'patch':
    return config, None, None
  config_lib.validate(config)
  ae_dir = find_or_train(config, progress)
  config = copy.deepcopy(config)
  config.model.autoencoder_workdir = ae_dir
  ae = sampling.load_autoencoder(config)
  cached = cache_latents(config, ae_dir, ae)
  if config_lib.latent_norm(config) == 'channel' and not config.model.latent_stats.video_std:
    config.model.latent_stats.update(latent_stats(cached['train']))
    _say('Latent channels standardized by their training-split statistics (model.latent_stats): video std '
         f'{_fmt(config.model.latent_stats.video_std)}, audio std {_fmt(config.model.latent_stats.audio_std)}')
  return config, ae, cached


def _fmt(values) -> str:
  return '[' + ' '.join(f'{v:.2f}' for v in values) + ']'


def latent_stats(source) -> dict:
  """Per-channel mean and std of a cached latent split (`avdiff.data.latents` records), over clips, time and space:
  {'video_mean', 'video_std', 'audio_mean', 'audio_std'}, tuples of floats [C] (sums in float64; every process
  reads the same cache and gets the same values)."""
  sums = {}
  for i in range(len(source)):
    record = source[i]
    for m in ('video', 'audio'):
      z = np.asarray(record[f'{m}_latent'], np.float64)
      z = z.reshape(-1, z.shape[-1])
      n, s, q = sums.get(m, (0, 0.0, 0.0))
      sums[m] = (n + z.shape[0], s + z.sum(0), q + np.square(z).sum(0))
  out = {}
  for m, (n, s, q) in sums.items():
    mean = s / n
    std = np.sqrt(np.maximum(q / n - np.square(mean), 0.0))
    out[f'{m}_mean'] = tuple(float(v) for v in mean)
    out[f'{m}_std'] = tuple(float(max(v, 1e-6)) for v in std)
  return out
