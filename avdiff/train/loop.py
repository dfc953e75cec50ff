"""The shared training loop: `train(config, workdir, task)` for the diffusion model, the autoencoder, the sync
expert or any other `Task`.

Side effects live here, the math in `step.py`. Per step: next host batch -> global arrays on the mesh -> the
compiled step (state donated) -> then the *previous* step's metrics are read (the device is busy with the current
step meanwhile, so there is no per-step device sync), checked for NaN/inf and logged every `log_every` steps.
Checkpoints every `checkpoint_every` steps and at the end (async), samples every `sample_every` steps, a profiler
trace over [profile_start, profile_start + profile_steps). Rerunning the same command resumes from the latest
checkpoint, data position included; SIGTERM saves a checkpoint and returns.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from avdiff import config_lib, parallel
from avdiff.train import checkpoint, flops, metrics as metrics_lib, optim, state as state_lib, step as step_lib
from avdiff.train import task as task_lib


class NonFiniteLossError(RuntimeError):
  """The loss or gradient norm became NaN/inf; the message names the step and the last good checkpoint."""


class _Preemption:
  """Records SIGTERM (e.g. a TPU / spot preemption notice) so the loop can save and stop between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: rely on Orbax's preemption check only.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _frozen_shardings(frozen, mesh):
  return None if frozen is None else jax.tree.map(lambda _: parallel.replicated(mesh), frozen)


def _batch_keys(batch: dict) -> dict:
  """Only what the step uses crosses to the device (ground-truth keys like mouth_box are evaluation-only)."""
  return {k: v for k, v in batch.items() if k in ('video', 'audio_mel', 'label', 'audio')}


class _Throughput:
  """Clips/s, tokens/s, TFLOP/s per device and MFU over the window since the last log."""

  def __init__(self, config, task, compiled, peak: float):
    self.clips_per_step = config.train.global_batch_size
    tok = getattr(task, 'tokens_per_clip', None)
    self.tokens_per_clip = tok(config) if tok else 0
    fl = getattr(task, 'model_flops_per_clip', None)
    if fl is not None:
      self.flops_per_step, self.flops_source = fl(config) * self.clips_per_step, 'analytic model FLOPs'
    else:
      cost = compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      self.flops_per_step = float(cost.get('flops', 0.0)) * jax.device_count()
      self.flops_source = 'XLA cost analysis'
    self.peak = peak
    self.last_time, self.last_step = None, None

  def start(self, step: int):
    self.last_time, self.last_step = time.perf_counter(), step

  def measure(self, step: int) -> dict:
    now = time.perf_counter()
    steps = step - self.last_step
    dt = max(now - self.last_time, 1e-9)
    self.last_time, self.last_step = now, step
    if steps <= 0:
      return {}
    flops_per_s = self.flops_per_step * steps / dt / jax.device_count()
    return {'steps_per_s': steps / dt, 'clips_per_s': steps * self.clips_per_step / dt,
            'tokens_per_s': steps * self.clips_per_step * self.tokens_per_clip / dt,
            'tflops_per_device': flops_per_s / 1e12, 'mfu': flops_per_s / self.peak if self.peak else 0.0}


def _make_eval_fn(config, task, model, mesh, shardings, frozen_sh):
  """jitted (params, batch, frozen, rng) -> (loss, metrics) on a held-out batch: the task's `eval_loss` if it has
  one (e.g. the diffusion task adds the denoising gain per noise level), else its training loss."""
  loss_fn = getattr(task, 'eval_loss', None)

  def run(params, model_state, batch, frozen, rng):
    module = model.merge(params, model_state)
    if loss_fn is None:
      return task_lib.call_loss(task, module, batch, rng, frozen)
    return loss_fn(module, batch, rng, frozen)

  rep = parallel.replicated(mesh)
  return jax.jit(run, in_shardings=(shardings.params, shardings.model_state,
                                    parallel.batch_sharding(mesh, config.mesh.data_axes), frozen_sh, rep),
                 out_shardings=rep)


def evaluate(config, eval_fn, state, frozen, mesh) -> dict:
  """Mean loss and metrics over config.train.eval_clips validation clips (fixed noise: comparable across steps), of
  the raw params ('val_<metric>') and of the EMA params ('val_ema_<metric>')."""
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  dp = config_lib.data_parallel_size(config, mesh.size)
  batch_size = max(dp, (min(config.train.eval_clips, config.train.global_batch_size) // dp) * dp)
  batch_size = max(batch_size, jax.process_count())
  source = pipeline.InputPipeline(config, 'validation', shuffle=False, num_epochs=1, batch_size=batch_size)
  totals, n = {}, 0
  for i, host in enumerate(source):
    if i * batch_size >= config.train.eval_clips:
      break
    batch = pipeline.to_device(_batch_keys(host), mesh, config.mesh.data_axes)
    # Raw and EMA params on the same clips and noise: 'val_*' and 'val_ema_*'.
    for prefix, params in (('', state.params), ('ema_', state.ema_params)):
      loss, m = eval_fn(params, state.model_state, batch, frozen, jax.random.PRNGKey(config.seed + 1 + i))
      for k, v in jax.device_get(dict(m, loss=loss)).items():
        totals[prefix + k] = totals.get(prefix + k, 0.0) + float(v)
    n += 1
  return {f'val_{k}': v / max(n, 1) for k, v in totals.items()}


def train(config: ml_collections.ConfigDict, workdir: str, task: Any = None, *,
          mesh: Optional[jax.sharding.Mesh] = None, progress: bool = True) -> dict:
  """Trains `task` (default: DiffusionTask) for config.train.steps steps in workdir, resuming if possible.

  Returns the metrics of the last step (float values) plus 'step' and 'stopped' ('done' | 'preempted').
  Raises config_lib.ConfigError before compiling anything for an invalid config, checkpoint.ShapeMismatchError
  when workdir holds a checkpoint of another model, NonFiniteLossError on NaN/inf (nothing is saved for that step).
  """
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  started = time.perf_counter()
  t = config.train
  config_lib.validate(config, mesh.size if mesh is not None else jax.device_count(), jax.process_count())
  if task is None:
    from avdiff.train.diffusion_task import DiffusionTask  # pylint: disable=g-import-not-at-top
    task = DiffusionTask(config)
  mesh = mesh or parallel.make_mesh(config.mesh)
  primary = parallel.is_primary()
  os.makedirs(workdir, exist_ok=True)
  logging.info('Mesh %s', parallel.describe(mesh))

  tx = optim.make_optimizer(t)
  model, abstract, shardings, _ = state_lib.create(config, task, tx, mesh, materialize=False)
  logging.info('Model: %.2fM parameters', model.num_params / 1e6)
  manager = checkpoint.make_manager(workdir, t)
  source = pipeline.InputPipeline(config, 'train')
  latest = manager.latest_step()
  if latest is not None:
    saved_cfg = None
    if os.path.exists(os.path.join(workdir, checkpoint.CONFIG_FILE)):
      saved_cfg = checkpoint.load_config(workdir)
    checkpoint.check_shapes(manager, latest, model.abstract_params, saved_cfg, config)
    state, data_states, _ = checkpoint.restore(manager, latest, abstract, shardings)
    mine = data_states.get(str(jax.process_index()))
    if mine:
      source.set_state(mine.encode())
    logging.info('Resumed from step %d of %s', latest, manager.directory)
  else:
    init = state_lib.init_fn(config, task, tx)
    state = jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(config.seed))
  if primary:
    with open(os.path.join(workdir, checkpoint.CONFIG_FILE), 'w') as f:
      f.write(checkpoint.config_to_json(config))

  frozen = task_lib.frozen_params(task)
  frozen_sh = _frozen_shardings(frozen, mesh)
  if frozen is not None:
    frozen = jax.device_put(frozen, frozen_sh)
  step_fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings, frozen_sh)
  eval_fn = _make_eval_fn(config, task, model, mesh, shardings, frozen_sh) if t.eval_every > 0 else None

  start = int(jax.device_get(state.step))
  total = int(t.steps)
  writer = metrics_lib.MetricWriter(workdir, enabled=primary)
  result = {'step': start, 'stopped': 'done'}
  if start >= total:
    logging.info('Nothing to do: checkpoint step %d >= train.steps %d', start, total)
    writer.close()
    manager.close()
    return result

  first = pipeline.to_device(_batch_keys(next(source)), mesh, config.mesh.data_axes)
  compile_start = time.perf_counter()
  compiled = step_fn.lower(state, first, frozen).compile()
  logging.info('Compiled the train step in %.1f s', time.perf_counter() - compile_start)
  peak, peak_source = flops.peak_flops_per_device(t.peak_flops_per_device)
  meter = _Throughput(config, task, compiled, peak)
  logging.info('Peak %.3g FLOP/s per device (%s); %.3g FLOP per step (%s)', peak, peak_source,
               meter.flops_per_step, meter.flops_source)

  bar = None
  if primary and progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=total, initial=start, desc='train', dynamic_ncols=True)

  pending: Optional[tuple[int, Any]] = None
  last_val: dict = {}
  last_logged: dict = {}
  profiling = False

  def drain():
    """Reads the pending step's metrics (waits for that step), stops on NaN/inf, logs every log_every steps."""
    nonlocal pending, last_logged
    if pending is None:
      return
    done_step, dev_metrics = pending
    pending = None
    values = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
    if values.pop('finite', 1.0) < 1.0:
      manager.wait_until_finished()
      good = manager.latest_step()
      raise NonFiniteLossError(
          f'Non-finite loss or gradient at step {done_step} (loss={values.get("loss")}, grad_norm='
          f'{values.get("grad_norm")}); stopping. The state of that step was not applied and nothing was saved; '
          f'last good checkpoint: {"step %d" % good if good is not None else "none"} in {manager.directory}.')
    if bar is not None:
      bar.update(done_step - bar.n)
    if done_step % t.log_every == 0 or done_step == total:
      values.update(meter.measure(done_step))
      values['wall_s'] = time.perf_counter() - started
      writer.write(done_step, values)
      last_logged = values
      if bar is not None:
        bar.set_postfix(loss=f'{values["loss"]:.4f}', clips_s=f'{values.get("clips_per_s", 0):.1f}',
                        mfu=f'{values.get("mfu", 0):.2f}')
    result.update(values)

  with _Preemption() as preempt:
    meter.start(start)
    batch = first
    try:
      for step in range(start, total):
        if t.profile_start >= 0 and step == t.profile_start and primary:
          jax.profiler.start_trace(os.path.join(workdir, 'profile'))
          profiling = True
        if batch is None:
          batch = pipeline.to_device(_batch_keys(next(source)), mesh, config.mesh.data_axes)
        state, step_metrics = compiled(state, batch, frozen)
        batch = None
        drain()  # The previous step's metrics, while this step runs.
        pending = (step + 1, step_metrics)
        done = step + 1
        if profiling and done >= t.profile_start + t.profile_steps:
          jax.block_until_ready(state)
          jax.profiler.stop_trace()
          profiling = False
        if eval_fn is not None and done % t.eval_every == 0:
          drain()
          last_val = evaluate(config, eval_fn, state, frozen, mesh)
          if t.eval_samples and hasattr(task, 'score_samples'):
            last_val.update(task.score_samples(model, state.ema_params, done))
          writer.write(done, dict(last_val, wall_s=time.perf_counter() - started))
        stop = preempt.requested or manager.reached_preemption(done)
        if jax.process_count() > 1 and done % t.log_every == 0:
          from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
          stop = bool(np.max(multihost_utils.process_allgather(np.asarray([stop], np.int32))))
        if done % t.checkpoint_every == 0 or done == total or stop:
          drain()  # Never save a step whose loss we have not checked.
          # Only a step evaluated just now carries val metrics: a later step tagged with them would pass for the best.
          evaluated = eval_fn is not None and done % t.eval_every == 0
          best = last_val if evaluated and t.keep_best_by and t.keep_best_by in last_val else None
          checkpoint.save(manager, done, state, source.get_state(), config, metrics=best, force=stop)
        if t.sample_every > 0 and done % t.sample_every == 0 and hasattr(task, 'write_samples'):
          drain()
          out_dir = os.path.join(workdir, 'samples', str(done))
          paths = task.write_samples(model, state.ema_params, done, out_dir,
                                     jax.random.fold_in(jax.random.PRNGKey(config.seed), done), mesh, write=primary)
          logging.info('Wrote %d samples to %s', len(paths), out_dir)
        if stop:
          logging.warning('Preemption requested: saved a checkpoint at step %d, stopping.', done)
          result['stopped'] = 'preempted'
          break
      drain()
      result['step'] = int(jax.device_get(state.step))
    finally:
      if profiling:
        jax.profiler.stop_trace()
      manager.wait_until_finished()
      manager.close()
      writer.close()
      if bar is not None:
        bar.close()
  return result
