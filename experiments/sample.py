"""Samples clips from a trained run's EMA (or raw, --params=raw) params and writes them as mp4 (h264 + AAC) to <workdir>/samples/<step>/.

    python -m experiments.sample --workdir=runs/tiny --mode=joint --num=8
    python -m experiments.sample --workdir=runs/tiny --mode=audio_to_video --num=8   # audio from the test split

Modes: joint (labels 0, 1, ... cycled), audio_to_video / video_to_audio (the other modality taken from the first
--num clips of --split, labels too), continuation (the first half of each test clip's latent frames given).
"""

import os

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from avdiff import config_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run directory.', required=True)
_MODE = flags.DEFINE_enum('mode', 'joint', ['joint', 'audio_to_video', 'video_to_audio', 'continuation'],
                          'What to generate.')
_NUM = flags.DEFINE_integer('num', 8, 'Clips to generate.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_SPLIT = flags.DEFINE_string('split', 'test', 'Split the conditioning clips come from.')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling noise seed.')
_PARAMS = flags.DEFINE_enum('params', 'ema', ['ema', 'raw'], 'Sample from the EMA or the raw (last step) params.')


def _conditioning(config, task, mode: str, num: int, split: str):
  """(label [num], cond latents dict, cond_frames, real waveforms or None) for the conditional modes."""
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  from avdiff.train import diffusion_task  # pylint: disable=g-import-not-at-top
  source = pipeline.InputPipeline(config, split, shuffle=False, num_epochs=1, batch_size=num, process_index=0,
                                  process_count=1, with_waveform=True)
  host = next(iter(source))
  video = jnp.asarray(host['video'], jnp.float32) / 127.5 - 1.0
  latents = diffusion_task.to_latents(config, task.autoencoder(task.frozen_params()), video,
                                      jnp.asarray(host['audio_mel']))
  label = jnp.asarray(host['label'], jnp.int32)
  if mode == 'audio_to_video':
    return label, {'audio': latents['audio']}, 0, host.get('audio')
  if mode == 'video_to_audio':
    return label, {'video': latents['video']}, 0, None
  return label, latents, config_lib.layout(config).video_latent[0] // 2, None


def main(argv):
  del argv
  from avdiff.train import checkpoint, diffusion_task, state as state_lib  # pylint: disable=g-import-not-at-top
  workdir, mode, num = _WORKDIR.value, _MODE.value, _NUM.value
  config = checkpoint.load_config(workdir)
  step = _STEP.value if _STEP.value is not None else checkpoint.latest_step(workdir)
  if step is None:
    raise FileNotFoundError(f'No checkpoint in {workdir}/{checkpoint.CHECKPOINT_DIR}')
  task = diffusion_task.DiffusionTask(config)
  module = checkpoint.restore_params(workdir, config, ema=_PARAMS.value == 'ema', step=step)
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  model_def = state_lib.Model(graphdef, params, rest)
  mesh = jax.sharding.Mesh(np.asarray(jax.local_devices()[:1]).reshape((1,) * len(config.mesh.shape)),
                           tuple(config.mesh.shape), axis_types=(jax.sharding.AxisType.Auto,) * len(config.mesh.shape))
  if mode == 'joint':
    label, cond, cond_frames, waves = jnp.arange(num, dtype=jnp.int32) % config.model.num_classes, None, 0, None
  else:
    label, cond, cond_frames, waves = _conditioning(config, task, mode, num, _SPLIT.value)
  sample = task.sample_fn(model_def, mesh, mode)
  video, mel = sample(nnx.to_pure_dict(params), task.frozen_params(), label, jax.random.PRNGKey(_SEED.value), cond,
                      cond_frames)
  out_dir = os.path.join(workdir, 'samples', str(step))
  paths = diffusion_task.write_clips(config, np.asarray(video), np.asarray(mel), out_dir, mode,
                                     waveforms=None if waves is None else np.asarray(waves))
  console.say(f'Wrote {len(paths)} {mode} clips to {out_dir}')


if __name__ == '__main__':
  app.run(main)
