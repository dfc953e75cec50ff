"""Paths of the shared training loop the other tests leave out: gradient accumulation, in-loop validation with
best-checkpoint retention, and the profiler window. Toy tasks keep compiles to a few seconds."""

import glob
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import config_lib, parallel
from avdiff.models import layers
from avdiff import checkpoint
from avdiff.train import loop, metrics as metrics_lib, optim, state as state_lib, step as step_lib, task as task_lib

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


class _Regression(nnx.Module):
  """Per-example MLP: video [B, 2, 4, 4, 3] -> [B], with logical axis names (weights split over 'fsdp')."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = layers.Dense(2 * 4 * 4 * 3, 8, ('embed', 'mlp'), rngs=rngs)
    self.out = layers.Dense(8, 1, ('mlp', None), rngs=rngs)

  def __call__(self, video):
    return self.out(jnp.tanh(self.hidden(video.reshape(video.shape[0], -1))))[:, 0]


class _RegressionTask(task_lib.Task):
  """Deterministic loss (no rng), a mean over the examples: micro-batch means average to the batch mean."""

  def __init__(self):
    super().__init__(None)

  def build_model(self, config, rngs):
    del config
    return _Regression(rngs)

  def loss(self, model, batch, rng, frozen=None):
    del rng, frozen
    err = model(batch['video']) - batch['label'].astype(jnp.float32)
    return jnp.mean(err**2), {'abs_err': jnp.mean(jnp.abs(err))}


def _accum_config(accum: int, batch_size: int):
  config = train_toy.config(DATA_DIR, **{'train.global_batch_size': batch_size, 'train.grad_accum_steps': accum,
                                         'train.optimizer': 'sgd', 'train.b1': 0.0, 'train.learning_rate': 0.1,
                                         'train.grad_clip_norm': 0.0, 'train.ema_decay': 0.5})
  config.mesh.shape = ml_collections.ConfigDict({'data': 4, 'fsdp': 2, 'tensor': 1})
  return config


def _one_step(accum: int, batch: dict):
  config = _accum_config(accum, batch['label'].shape[0])
  config_lib.validate(config, jax.device_count())
  mesh = parallel.make_mesh(config.mesh)
  task = _RegressionTask()
  tx = optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  before = jax.device_get(state.params)
  step_fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings)
  new, metrics = step_fn(state, batch, None)
  return before, jax.device_get(new), jax.device_get(metrics)


@pytest.mark.parametrize('accum', [2, 4])
def test_grad_accumulation_matches_one_big_batch(accum):
  rng = np.random.default_rng(0)
  batch = {'video': rng.uniform(-1, 1, (32, 2, 4, 4, 3)).astype(np.float32),
           'label': rng.integers(0, 3, 32).astype(np.int32)}
  before, ref, ref_m = _one_step(1, batch)
  before_acc, acc, acc_m = _one_step(accum, batch)
  # Same seed -> same initial params, so the updates are comparable.
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(before_acc)):
    np.testing.assert_array_equal(a, b)
  # Only float32 summation order differs (mean of `accum` micro-batch means vs one mean over 32 examples, and
  # per-device partial sums): ~1e-7 relative per add, so 1e-5 relative / 1e-6 absolute is ample yet far below
  # the change a wrong split or scale would cause (the update itself is lr * grad ~ 1e-2).
  tol = dict(rtol=1e-5, atol=1e-6)
  for key in ('loss', 'abs_err', 'grad_norm', 'update_norm', 'param_norm'):
    np.testing.assert_allclose(acc_m[key], ref_m[key], **tol, err_msg=key)
  assert acc_m['finite'] == 1.0 and int(acc.step) == int(ref.step) == 1
  moved = False
  for p0, a, b in zip(jax.tree.leaves(before), jax.tree.leaves(acc.params), jax.tree.leaves(ref.params)):
    np.testing.assert_allclose(a, b, **tol)
    moved |= bool(np.max(np.abs(b - p0)) > 1e-3)
  assert moved  # The step really updated the params (a no-op step would pass the comparison trivially).
  for a, b in zip(jax.tree.leaves(acc.ema_params), jax.tree.leaves(ref.ema_params)):
    np.testing.assert_allclose(a, b, **tol)


@pytest.mark.slow  # Compiles the DiT's gradient three times: ~40 s on a loaded 2-core box.
def test_grad_accumulation_averages_micro_batch_gradients_of_the_diffusion_loss():
  """The diffusion loss draws noise per micro-batch (rng folded with its index), so it cannot match one big batch;
  instead the accumulated SGD update must equal the mean of directly computed micro-batch gradients."""
  from avdiff.train.tasks import DiffusionTask
  config = train_toy.config(DATA_DIR, **{'train.grad_accum_steps': 2, 'train.optimizer': 'sgd', 'train.b1': 0.0,
                                         'train.learning_rate': 1.0, 'train.grad_clip_norm': 0.0})
  config.mesh.shape = ml_collections.ConfigDict({'data': 2, 'fsdp': 2, 'tensor': 2})
  config_lib.validate(config, jax.device_count())  # Micro-batches of 4 over the 4-way data-parallel axes.
  mesh = parallel.make_mesh(config.mesh)
  task = DiffusionTask(config)
  tx = optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  rng = np.random.default_rng(1)
  layout = config_lib.layout(config)
  batch = {'video': rng.uniform(-1, 1, (8,) + tuple(layout.video_latent)).astype(np.float32),
           'audio_mel': rng.uniform(-1, 1, (8,) + tuple(layout.audio_latent[:-1])).astype(np.float32),
           'label': rng.integers(0, config.model.num_classes, 8).astype(np.int32)}
  params = jax.device_get(state.params)
  key = jax.random.fold_in(state.rng, state.step)

  def micro_grad(i):
    mb = jax.tree.map(lambda x: x[i::2], batch)  # Strided: micro-batch i holds examples i, i + 2, ...
    fn = lambda p: task.loss(model.merge(p, state.model_state), mb, jax.random.fold_in(key, i))[0]
    return jax.device_get(jax.jit(jax.value_and_grad(fn))(params))

  (l0, g0), (l1, g1) = micro_grad(0), micro_grad(1)
  step_fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings)
  new, metrics = step_fn(state, batch, None)
  new = jax.device_get(new)
  # Micro-batch losses and grads computed on one device vs sharded over 8: summation order only.
  np.testing.assert_allclose(metrics['loss'], (l0 + l1) / 2, rtol=1e-4)
  differ = False
  for p, q, a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new.params), jax.tree.leaves(g0),
                        jax.tree.leaves(g1)):
    np.testing.assert_allclose(p - q, (a + b) / 2, rtol=1e-3, atol=1e-6)  # lr 1: update = -grad.
    differ |= bool(np.max(np.abs(a - b)) > 1e-4)
  # At init only the zero-initialized output layers get gradients; those must be real and differ between the two
  # micro-batches, so a step using one micro-batch, or summing instead of averaging, would fail above.
  assert differ


class _Scalar(nnx.Module):

  def __init__(self, rngs: nnx.Rngs):
    self.w = layers.param(rngs, layers.zeros_init, (), (), jnp.float32)


class _DivergingTask(task_lib.Task):
  """loss = (w - 1)^2 from w = 0; SGD at lr 1.25 scales the error by 1 - 2 * 1.25 = -1.5 per step, so after s
  steps loss = 2.25^s exactly: the best validation loss is the earliest one."""

  def __init__(self):
    super().__init__(None)

  def build_model(self, config, rngs):
    del config
    return _Scalar(rngs)

  def loss(self, model, batch, rng, frozen=None):
    del rng, frozen
    weight = jnp.mean(jnp.ones_like(batch['label'], jnp.float32))  # 1, but the loss reads the batch.
    return weight * (model.w[...] - 1.0)**2, {'w': model.w[...]}


@pytest.fixture(scope='module')
def loop_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('paths'))
  config = train_toy.config(DATA_DIR, **{
      'train.steps': 6, 'train.optimizer': 'sgd', 'train.b1': 0.0, 'train.learning_rate': 1.25,
      'train.grad_clip_norm': 0.0, 'train.checkpoint_every': 1, 'train.keep_checkpoints': 2,
      'train.eval_every': 2, 'train.eval_clips': 8, 'train.keep_best_by': 'val_loss',
      'train.profile_start': 1, 'train.profile_steps': 2, 'train.peak_flops_per_device': 1e9})
  result = loop.train(config, workdir, _DivergingTask(), progress=False)
  return workdir, result


def test_validation_metrics_are_logged_at_eval_steps(loop_run):
  workdir, result = loop_run
  assert result['step'] == 6
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    raw = [json.loads(line) for line in f if line.strip()]
  val_rows = [r for r in raw if any(k.startswith('val_') for k in r)]
  assert [r['step'] for r in val_rows] == [2, 4, 6]
  for r in val_rows:
    # Evaluated on the state after that step: error (-1.5)^s, so val_w = 1 - (-1.5)^s and val_loss = 2.25^s.
    np.testing.assert_allclose(r['val_loss'], 2.25**r['step'], rtol=1e-5)
    np.testing.assert_allclose(r['val_w'], 1.0 - (-1.5)**r['step'], rtol=1e-5)
  # Train and validation rows of one step are read back as one row.
  rows = metrics_lib.read_metrics(workdir)
  assert [r['step'] for r in rows] == [1, 2, 3, 4, 5, 6]
  for r in rows:
    np.testing.assert_allclose(r['loss'], 2.25**(r['step'] - 1), rtol=1e-5)  # Loss before that step's update.
    assert ('val_loss' in r) == (r['step'] % 2 == 0)


def test_keep_best_by_keeps_the_best_besides_the_last_k(loop_run):
  workdir, _ = loop_run
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  # Last 2 (keep_checkpoints) plus step 2, the lowest val_loss; step 3 (no evaluation of its own) is not "best".
  assert steps == [2, 5, 6]
  assert checkpoint.latest_step(workdir) == 6


@pytest.mark.parametrize('keep_best_by, kept', [('val_loss', [2, 5, 6]), ('', [5, 6])])
def test_manager_retention(tmp_path, keep_best_by, kept):
  """The manager alone with made-up metrics: the last K, plus the best by keep_best_by (not just the K best)."""
  config = train_toy.config(DATA_DIR, **{'train.keep_checkpoints': 2, 'train.keep_best_by': keep_best_by,
                                         'train.eval_every': 1, 'train.async_checkpointing': False})
  manager = checkpoint.make_manager(str(tmp_path), config.train)
  state = {'w': np.zeros((2,), np.float32)}
  for step, val in zip(range(1, 7), [5.0, 1.0, None, 3.0, 4.0, 6.0]):
    metrics = {'val_loss': val} if keep_best_by and val is not None else None
    checkpoint.save(manager, step, state, b'{}', config, metrics=metrics)
  manager.wait_until_finished()
  assert manager.all_steps() == kept and manager.latest_step() == 6
  if keep_best_by:
    assert manager.best_step() == 2
  manager.close()


def test_profiler_window_writes_a_trace(loop_run):
  workdir, _ = loop_run
  traces = glob.glob(os.path.join(workdir, 'profile', '**', '*.xplane.pb'), recursive=True)
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
