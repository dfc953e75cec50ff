"""Stage-1 task: the neural vocoder (`avdiff.models.vocoder`) trained on the dataset's (log-mel, waveform) pairs by
the shared loop, then found or trained once per data + model.vocoder fields (`find_or_train`, `avdiff.vocoders`).

    python -m experiments.train_vocoder --config=configs/tiny.py      # = find_or_train(config)

Each step cuts one segment of model.vocoder.segment_frames mel frames (and its waveform, the same span on the mel
clock) at a random place of every clip of the batch. After training, `train_and_evaluate` scores the EMA params on
held-out clips (`avdiff.eval.voice`: mel error of the re-analysed waveform, pyin f0 and voicing against the
original, for the vocoder and for Griffin-Lim) and writes vocoder_eval.json and the marker.
"""

from __future__ import annotations

import json
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from avdiff import checkpoint
from avdiff import config_lib
from avdiff import console
from avdiff import models
from avdiff import parallel
from avdiff import run_dir
from avdiff import sampling
from avdiff import vocoders
from avdiff.data import audio as audio_lib
from avdiff.data import builders
from avdiff.data import pipeline
from avdiff.eval import voice
from avdiff.train import loop
from avdiff.train import task as task_lib
from avdiff.train.tasks import autoencoder as autoencoder_task


class Preempted(console.UserError):
  """Vocoder training was preempted (SIGTERM): saved, not finished; rerunning the command continues it."""


def stage_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of the config that trains the vocoder: seed, steps, learning rate, warmup, EMA decay and batch size from
  model.vocoder, the rest of the optimizer fixed (stage 1's recipe), waveforms in the batches, the training data
  shuffled and repeated, no sampling or in-loop evaluation. What shapes the weights is in `vocoders.fields`."""
  config = autoencoder_task.stage_config(config, 'vocoder')
  with config.unlocked():
    config.data.with_waveform = True
    config.train.eval_every = 0
  return config


def segments(mel: jax.Array, wave: jax.Array, frames: int, hop: int, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """A random span of `frames` mel frames per clip: mel [B, T_a, n_mels] -> [B, frames, n_mels] and its waveform
  [B, T_a * hop] -> [B, frames * hop] (the same time span: mel frame i covers samples [i * hop, (i + 1) * hop))."""
  starts = jax.random.randint(rng, (mel.shape[0],), 0, mel.shape[1] - frames + 1)
  cut_mel = jax.vmap(lambda m, s: jax.lax.dynamic_slice_in_dim(m, s, frames, 0))(mel, starts)
  cut_wave = jax.vmap(lambda w, s: jax.lax.dynamic_slice_in_dim(w, s * hop, frames * hop, 0))(wave, starts)
  return cut_mel, cut_wave


class VocoderTask(task_lib.Task):
  """Trains `avdiff.models.build_vocoder` with `avdiff.models.vocoder_loss` on audio_mel [B, T_a, n_mels] and audio
  [B, S]."""

  batch_keys = ('audio_mel', 'audio')

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> nnx.Module:
    return models.build_vocoder(config, rngs)

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array, frozen=None) -> tuple[jax.Array, dict]:
    del frozen
    mel, wave = batch['audio_mel'], batch['audio']
    frames = int(self.config.model.vocoder.segment_frames)
    if 0 < frames < mel.shape[1]:
      mel, wave = segments(mel, wave, frames, config_lib.mel_hop(self.config.data), rng)
    return models.vocoder_loss(model, mel, wave, self.config)

  def input_pipeline(self, config: ml_collections.ConfigDict, split: str, **kwargs) -> pipeline.InputPipeline:
    return pipeline.InputPipeline(config, split, with_waveform=True, **kwargs)


def evaluate(config: ml_collections.ConfigDict, vocoder: nnx.Module, split: str = 'validation',
             num_clips: int = 32) -> dict:
  """Held-out scores of `vocoder` and of Griffin-Lim on the ground-truth mel of the first num_clips clips of split:
  {'vocoder': {...}, 'griffin_lim': {...}, 'clips', 'split'} with the means of `voice.score_clip` (mel_l1, f0 error
  in cents, voicing precision / recall / accuracy) and seconds per clip."""
  clips = builders.load_clips(config, split, num_clips)
  originals = [np.asarray(c['audio'], np.float32) for c in clips]
  mels = np.stack([np.asarray(c['audio_mel'], np.float32) for c in clips])
  references = [voice.pitch(w, config.data.sample_rate) for w in originals]
  out = {'split': split, 'clips': len(clips)}
  for name in ('vocoder', 'griffin_lim'):
    started = time.perf_counter()
    if name == 'vocoder':
      sampling.vocode(vocoder, mels[:1])  # Compiled before the clock runs.
      started = time.perf_counter()
      waves = sampling.vocode(vocoder, mels)
    else:
      waves = np.stack([audio_lib.mel_to_waveform(m, config.data) for m in mels])
    seconds = (time.perf_counter() - started) / len(clips)
    scores = [voice.score_clip(w, m, ref, config.data) for w, m, ref in zip(waves, mels, references)]
    out[name] = dict(voice.mean_scores(scores), seconds_per_clip=seconds)
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, eval_clips: int = 32,
                       progress: bool = True) -> dict:
  """Trains the vocoder of `config` in workdir (resuming), scores its EMA params (`evaluate`, the validation
  split), writes W/vocoder_eval.json and then the completion marker; returns the evaluation with 'step',
  'train_seconds' (this call's training time) and 'stopped' ('done', or 'preempted': saved, not evaluated)."""
  config = stage_config(config)
  started = time.perf_counter()
  result = loop.train(config, workdir, VocoderTask(config), progress=progress)
  train_seconds = time.perf_counter() - started
  logging.info('Vocoder training finished at step %d (%s).', result['step'], result['stopped'])
  if result['stopped'] != 'done':
    return {'stopped': result['stopped'], 'step': result['step']}
  vocoder = checkpoint.restore_params(workdir, models.build_vocoder(config, nnx.Rngs(0)), ema=True)
  results = dict(evaluate(config, vocoder, 'validation', eval_clips), step=checkpoint.latest_step(workdir),
                 train_seconds=train_seconds, stopped='done')
  run_dir.RunDir(workdir).write_text('vocoder_eval.json', json.dumps(results, indent=1))
  if parallel.is_primary():  # Last: the directory now holds a finished vocoder of these fields.
    vocoders.write_marker(workdir, config, step=results['step'], train_seconds=train_seconds,
                          eval={k: results[k] for k in ('vocoder', 'griffin_lim')})
  return results


def find_or_train(config: ml_collections.ConfigDict, progress: bool = True, eval_clips: int = 32) -> str:
  """The directory of the config's trained vocoder, training it there first when it is not complete (a killed run
  resumes from its checkpoint) and scoring it on eval_clips validation clips (`train_and_evaluate`). Raises
  config_lib.ConfigError when the directory's marker names other fields, Preempted when training was stopped by a
  preemption notice."""
  vocoder_dir = vocoders.directory(config)
  marker = vocoders.check(config, vocoder_dir)
  if marker is not None:
    console.say(f'Using trained vocoder at {vocoder_dir} (fingerprint {marker["fingerprint"]})')
    return vocoder_dir
  step = checkpoint.latest_step(vocoder_dir)
  resume = f', resuming from step {step}' if step is not None else ''
  console.say(f'Training vocoder at {vocoder_dir} first (fingerprint {vocoders.fingerprint(config)}{resume})')
  result = train_and_evaluate(config, vocoder_dir, eval_clips=eval_clips, progress=progress)
  if result['stopped'] != 'done':
    raise Preempted(f'vocoder training in {vocoder_dir} was preempted at step {result["step"]} (saved); rerun the '
                    'same command to continue it')
  v, g = result['vocoder'], result['griffin_lim']
  console.say(f'Trained vocoder at {vocoder_dir}: mel L1 {v["mel_l1"]:.3f} (Griffin-Lim {g["mel_l1"]:.3f}), f0 error '
              f'{v["f0_cents"]:.0f} cents (Griffin-Lim {g["f0_cents"]:.0f}) on {result["clips"]} validation clips')
  return vocoder_dir
