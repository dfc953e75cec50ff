"""Small configs and command lines for the training tests: a depth-1, width-32 joint DiT on 0.8 s, 32x32 clips of
the built-in `talking` data (64 video + 16 audio tokens), so a train step compiles and runs in seconds on CPU."""

import os
import subprocess
import sys

import ml_collections

from configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Overrides of configs/tiny.py, also usable as --config.<key>=<value> flags.
OVERRIDES = {
    'data.clip_seconds': 0.8,
    'data.num_train': 16,
    'data.num_validation': 8,
    'data.num_test': 8,
    'model.width': 32,
    'model.depth': 1,
    'model.num_heads': 2,
    'model.mlp_ratio': 2.0,
    'model.video_patch': (2, 8, 8),
    'model.audio_patch': (8, 8),
    'diffusion.num_sampling_steps': 2,
    'train.global_batch_size': 8,
    'train.warmup_steps': 0,
    'train.lr_schedule': 'warmup_constant',
    'train.learning_rate': 1e-3,
    'train.log_every': 1,
    'train.checkpoint_every': 1000,
    'train.sample_every': 0,
    'train.eval_every': 0,
    'train.eval_samples': False,
    'train.num_samples': 2,
    'train.async_checkpointing': True,
}


def config(data_dir: str, **extra) -> ml_collections.ConfigDict:
  c = tiny.get_config()
  for key, value in {**OVERRIDES, **extra}.items():
    section, name = key.rsplit('.', 1)
    node = c
    for part in section.split('.'):
      node = node[part]
    node[name] = value
  c.data.data_dir = data_dir
  return c


def flags(data_dir: str, **extra) -> list[str]:
  out = []
  for key, value in {**OVERRIDES, **extra}.items():
    if isinstance(value, tuple):
      value = '(' + ','.join(str(v) for v in value) + ',)'
    out.append(f'--config.{key}={value}')
  return out + [f'--config.data.data_dir={data_dir}']


def env(num_devices: int) -> dict:
  """Environment of a child process with `num_devices` fake CPU devices."""
  e = dict(os.environ)
  e['JAX_PLATFORMS'] = 'cpu'
  e['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices}'
  e['PYTHONPATH'] = REPO + os.pathsep + e.get('PYTHONPATH', '')
  return e


def train_command(workdir: str, data_dir: str, *extra_flags: str, **overrides) -> list[str]:
  return [sys.executable, '-m', 'experiments.train', '--config=configs/tiny.py', f'--workdir={workdir}',
          *flags(data_dir, **overrides), *extra_flags]


def run(cmd: list[str], num_devices: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=REPO, env=env(num_devices), capture_output=True, text=True, timeout=timeout)


def few_steps(task, host_batch: dict, steps: int = 3, learning_rate: float = 1e-3) -> tuple[list[float], dict]:
  """`steps` jitted Adam steps of `task`'s loss on one input-pipeline batch (uint8 video, as the pipeline gives it),
  from a model built with seed 0 -> (the losses, the last step's gradients as a pure dict)."""
  import jax  # pylint: disable=g-import-not-at-top  (the subprocess helpers above need no JAX)
  import optax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from avdiff.data import frames  # pylint: disable=g-import-not-at-top
  batch = {k: v for k, v in host_batch.items() if k in task.batch_keys}
  batch['video'] = frames.to_float(batch['video'])
  graphdef, params = nnx.split(task.build_model(task.config, nnx.Rngs(0)), nnx.Param)
  tx = optax.adam(learning_rate)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, rng):
    loss, grads = jax.value_and_grad(lambda p: task.loss(nnx.merge(graphdef, p), batch, rng)[0])(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss, grads

  losses = []
  for i in range(steps):
    params, opt, loss, grads = step(params, opt, jax.random.key(i))
    losses.append(float(loss))
  return losses, grads


def changed(config: ml_collections.ConfigDict, field: str, value) -> ml_collections.ConfigDict:
  """A copy of the config with the dotted field (e.g. 'model.ae.width') set to value."""
  c = config.copy_and_resolve_references()
  *path, name = field.split('.')
  node = c
  for part in path:
    node = node[part]
  node[name] = value
  return c
