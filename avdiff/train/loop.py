"""The training loop: `train(config, workdir, task)` for the diffusion model, the autoencoder, the sync expert or
any other `avdiff.train.task.Task`.

Side effects live here, the math in `step.py`. `setup` validates the config, takes the run directory's lease (one
trainer per workdir: `avdiff.lease`), builds the sharded state (restoring the latest checkpoint, data position
included) and compiles the step; the loop then runs, per step: next host
batch -> global arrays on the mesh -> the compiled step (state donated) -> the *previous* step's metrics are read
(the device is busy with the current step meanwhile, so there is no per-step device sync) and checked for NaN/inf
-> each hook in turn:
  Profiler      a trace over [profile_start, profile_start + profile_steps)
  Evaluation    held-out loss every eval_every steps (raw and EMA params) + the task's sample scores
  LeaseCheck    another trainer took the workdir's lease over -> stop without saving
  Preemption    SIGTERM or Orbax's preemption notice -> save and stop (agreed by every process)
  Checkpoints   every checkpoint_every steps, at the end and on preemption (async)
  Samples       the task's periodic samples every sample_every steps
Rerunning the same command resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from avdiff import checkpoint
from avdiff import config_lib
from avdiff import console
from avdiff import lease as lease_lib
from avdiff import parallel
from avdiff import run_dir
from avdiff.data import builders
from avdiff.data import pipeline
from avdiff.models import attention as attn_lib
from avdiff.train import flops
from avdiff.train import metrics as metrics_lib
from avdiff.train import optim
from avdiff.train import state as state_lib
from avdiff.train import step as step_lib
from avdiff.train import task as task_lib


class NonFiniteLossError(RuntimeError):
  """The loss or gradient norm became NaN/inf; the message names the step and the last good checkpoint."""


# ----------------------------------------------------------------------------- set-up

@dataclasses.dataclass
class Loop:
  """Everything the loop and its hooks share. `state` is replaced every step (the step donates it)."""
  config: ml_collections.ConfigDict
  workdir: str
  task: task_lib.Task
  mesh: jax.sharding.Mesh
  model: state_lib.Model
  state: state_lib.TrainState
  frozen: Any
  source: pipeline.InputPipeline
  manager: ocp.CheckpointManager
  writer: metrics_lib.MetricWriter
  step_fn: Any  # jitted (state, batch, frozen) -> (state, metrics); compiled by `compile_step`.
  eval_fn: Any  # jitted held-out loss, or None when train.eval_every = 0.
  start: int
  started: float  # perf_counter at the start of set-up (metrics' wall_s).
  primary: bool
  result: dict = dataclasses.field(default_factory=dict)
  stop: bool = False  # Preemption: save and stop after this step.
  lease: Optional[lease_lib.Lease] = None  # The workdir's lease (process 0; None on the others).

  @property
  def run(self) -> run_dir.RunDir:
    """The run directory (local or gs://)."""
    return run_dir.RunDir(self.workdir)

  @property
  def total(self) -> int:
    return int(self.config.train.steps)

  def to_device(self, host: dict) -> dict:
    """Only what the task uses crosses to the device (ground truth like mouth_box is evaluation-only, unless a
    task asks for it), as global arrays split over the data axes."""
    keys = {k: v for k, v in host.items() if k in self.task.batch_keys}
    return pipeline.to_device(keys, self.mesh, self.config.mesh.data_axes)


def setup(config: ml_collections.ConfigDict, workdir: str, task: task_lib.Task,
          mesh: Optional[jax.sharding.Mesh] = None) -> Loop:
  """Validates the config (before compiling anything), takes the workdir's lease, builds or restores the sharded
  state and writes W/config.json. Raises config_lib.ConfigError, lease.LeaseHeldError (another trainer runs in
  workdir; nothing there was touched), checkpoint.ShapeMismatchError (workdir holds another model)."""
  started = time.perf_counter()
  num_devices = mesh.size if mesh is not None else jax.device_count()
  config_lib.validate(config, num_devices, jax.process_count())
  if 'label' in task.batch_keys:
    builders.check_labels(config)
  if config.train.eval_every > 0:
    check_validation_split(config, num_devices)
  run_dir.RunDir(workdir).mkdir()  # A local folder or a gs:// prefix.
  # Before the checkpoint manager or any file of the run: a second trainer must not touch them.
  lease = lease_lib.acquire_for_job(workdir, config.train.lease_timeout_s)
  try:
    loop = _build(config, workdir, task, mesh, started)
  except BaseException:
    _release(lease)
    raise
  loop.lease = lease
  return loop


def _build(config, workdir, task, mesh, started: float) -> Loop:
  """`setup` once the lease is held: the mesh, the state (restored or new), config.json and the jitted step."""
  t = config.train
  mesh = mesh or parallel.make_mesh(config.mesh)
  primary = parallel.is_primary()
  run = run_dir.RunDir(workdir)
  logging.info('Mesh %s', parallel.describe(mesh))

  tx = optim.make_optimizer(t)
  model, abstract, shardings, _ = state_lib.create(config, task, tx, mesh, materialize=False)
  logging.info('Model: %.2fM parameters', model.num_params / 1e6)
  manager = checkpoint.make_manager(workdir, t)
  source = task.input_pipeline(config, 'train')
  state = _restore_or_init(config, workdir, task, tx, model, abstract, shardings, manager, source)
  if primary:
    run.write_config(checkpoint.config_to_json(config))

  frozen = task.frozen_params()
  frozen_sh = None if frozen is None else jax.tree.map(lambda _: parallel.replicated(mesh), frozen)
  if frozen is not None:
    frozen = jax.device_put(frozen, frozen_sh)
  step_fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings, frozen_sh)
  eval_fn = _make_eval_fn(config, task, model, mesh, shardings, frozen_sh) if t.eval_every > 0 else None
  return Loop(config, workdir, task, mesh, model, state, frozen, source, manager,
              metrics_lib.MetricWriter(workdir, enabled=primary), step_fn, eval_fn,
              start=int(jax.device_get(state.step)), started=started, primary=primary)


def _restore_or_init(config, workdir, task, tx: optax.GradientTransformation, model, abstract, shardings, manager,
                     source):
  """The newest readable checkpoint's state (data position restored into `source`), else a fresh init. A
  checkpoint that cannot be read whole (missing or truncated files, bad metadata) is moved aside as
  <step>.corrupt with a warning and the one before it is tried; when none is readable, NoReadableCheckpointError
  lists them. A checkpoint of another model (ShapeMismatchError) is not damage: it stops the run."""
  saved_cfg = None
  if run_dir.RunDir(workdir).has_config():
    saved_cfg = checkpoint.load_config(workdir)
  tried = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      checkpoint.check_shapes(manager, step, model.abstract_params, saved_cfg, config)
      state, data_states, _ = checkpoint.restore(manager, step, abstract, shardings)
    except checkpoint.ShapeMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (any read failure means this step is damaged)
      reason = f'{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ""}'
      moved = checkpoint.set_aside(manager, step)
      logging.warning('Checkpoint step %d cannot be read (%s); moved it to %s and trying the one before.', step,
                      reason, moved)
      tried.append(f'step {step} ({reason}) -> {moved}')
      continue
    # Elastic resume: a process that did not exist when the checkpoint was saved continues from process 0's
    # position (a global batch index; avdiff.data.pipeline.InputPipeline.set_state).
    mine = data_states.get(str(jax.process_index())) or data_states.get('0')
    if mine:
      source.set_state(mine.encode())
    logging.info('Resumed from step %d of %s', step, manager.directory)
    return state
  if tried:
    raise checkpoint.NoReadableCheckpointError(
        f'No checkpoint in {manager.directory} could be read; each was moved aside:\n  ' + '\n  '.join(tried) +
        '\nStart over in a new --workdir, or restore a copy of the checkpoints.')
  init = state_lib.init_fn(config, task, tx)
  return jax.jit(init, out_shardings=shardings)(jax.random.PRNGKey(config.seed))


def _make_eval_fn(config, task, model, mesh, shardings, frozen_sh):
  """jitted (params, model_state, batch, frozen, rng) -> (loss, metrics) of the task's `eval_loss`."""

  sequence = attn_lib.sequence_parallel(config, mesh)

  def run(params, model_state, batch, frozen, rng):
    module = model.merge(params, model_state)
    if sequence is not None:  # The sequence split over the context axis, as in the train step.
      module.sequence_parallel = sequence
    return task.eval_loss(module, batch, rng, frozen)

  rep = parallel.replicated(mesh)
  return jax.jit(run, in_shardings=(shardings.params, shardings.model_state,
                                    parallel.batch_sharding(mesh, config.mesh.data_axes), frozen_sh, rep),
                 out_shardings=rep)


def compile_step(loop: Loop, first: dict):
  """Compiles the step for the first batch; returns (executable, _Throughput meter)."""
  t0 = time.perf_counter()
  compiled = loop.step_fn.lower(loop.state, first, loop.frozen).compile()
  logging.info('Compiled the train step in %.1f s', time.perf_counter() - t0)
  peak, peak_source = flops.peak_flops_per_device(loop.config.train.peak_flops_per_device)
  meter = _Throughput(loop.config, loop.task, compiled, peak)
  logging.info('Peak %.3g FLOP/s per device (%s); %.3g FLOP per step (%s)', peak, peak_source,
               meter.flops_per_step, meter.flops_source)
  return compiled, meter


class _Throughput:
  """Clips/s, tokens/s, TFLOP/s per device and MFU over the window since the last log."""

  def __init__(self, config, task: task_lib.Task, compiled, peak: float):
    self.clips_per_step = config.train.global_batch_size
    self.tokens_per_clip = task.tokens_per_clip(config)
    analytic = task.model_flops_per_clip(config)
    if analytic is not None:
      self.flops_per_step, self.flops_source = analytic * self.clips_per_step, 'analytic model FLOPs'
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


# ----------------------------------------------------------------------------- step metrics

class _StepMetrics:
  """The previous step's device metrics, read one step late; NaN/inf stops the run, every log_every steps a row
  goes to metrics.jsonl (with throughput and wall time) and to the progress bar."""

  def __init__(self, loop: Loop, meter: _Throughput, bar):
    self.loop, self.meter, self.bar = loop, meter, bar
    self.pending: Optional[tuple[int, Any]] = None

  def push(self, step: int, dev_metrics) -> None:
    self.drain()
    self.pending = (step, dev_metrics)

  def drain(self) -> None:
    """Reads the pending step's metrics (waits for that step)."""
    if self.pending is None:
      return
    loop, t = self.loop, self.loop.config.train
    done, dev_metrics = self.pending
    self.pending = None
    values = {k: float(v) for k, v in jax.device_get(dev_metrics).items()}
    if values.pop('finite', 1.0) < 1.0:
      loop.manager.wait_until_finished()
      good = loop.manager.latest_step()
      raise NonFiniteLossError(
          f'Non-finite loss or gradient at step {done} (loss={values.get("loss")}, grad_norm='
          f'{values.get("grad_norm")}); stopping. The state of that step was not applied and nothing was saved; '
          f'last good checkpoint: {"step %d" % good if good is not None else "none"} in {loop.manager.directory}.')
    if self.bar is not None:
      self.bar.update(done - self.bar.n)
    if done % t.log_every == 0 or done == loop.total:
      values.update(self.meter.measure(done))
      values['wall_s'] = time.perf_counter() - loop.started
      loop.writer.write(done, values)
      if self.bar is not None:
        self.bar.set_postfix(loss=f'{values["loss"]:.4f}', clips_s=f'{values.get("clips_per_s", 0):.1f}',
                             mfu=f'{values.get("mfu", 0):.2f}')
    loop.result.update(values)


# ----------------------------------------------------------------------------- hooks

class Hook:
  """Called after every step with the loop and the number of steps done; `metrics.drain()` first whenever the
  hook needs the step's metrics checked (never save or sample a step whose loss was not checked)."""

  def before_step(self, loop: Loop, step: int) -> None:
    pass

  def after_step(self, loop: Loop, metrics: _StepMetrics, done: int) -> None:
    pass

  def close(self, loop: Loop) -> None:
    pass


class Profiler(Hook):
  """A jax.profiler trace of steps [profile_start, profile_start + profile_steps) into W/profile (traced into a
  local folder and copied up when the run lives on a bucket)."""

  def __init__(self, loop: Loop):
    t = loop.config.train
    self.first, self.last = t.profile_start, t.profile_start + t.profile_steps
    self.active = False
    self._staged = contextlib.ExitStack()

  def before_step(self, loop, step):
    if loop.primary and self.first >= 0 and step == self.first:
      jax.profiler.start_trace(self._staged.enter_context(run_dir.staged(loop.run.profile_dir)))
      self.active = True

  def after_step(self, loop, metrics, done):
    if self.active and done >= self.last:
      jax.block_until_ready(loop.state)
      self.close(loop)

  def close(self, loop):
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      self._staged.close()


def eval_batch_size(config, num_devices: int) -> int:
  """Clips per held-out loss batch: train.eval_clips (at most one global batch), a multiple of the data-parallel
  size and at least one clip per process."""
  dp = config_lib.data_parallel_size(config, num_devices)
  batch_size = max(dp, (min(config.train.eval_clips, config.train.global_batch_size) // dp) * dp)
  return max(batch_size, jax.process_count())


def check_validation_split(config, num_devices: int) -> None:
  """Raises UserError, before anything compiles, when the validation split cannot fill one held-out batch."""
  have = builders.num_examples(config, 'validation')
  need = eval_batch_size(config, num_devices)
  if have < need:
    raise console.UserError(
        f'the validation split of {config.data.dataset!r} has {have} clips, fewer than the {need} one in-loop '
        f'evaluation batch needs (train.eval_clips={config.train.eval_clips}, one clip per data-parallel device): '
        'rebuild the dataset with a larger --validation_fraction, or set --config.train.eval_every=0')


def evaluate(config, eval_fn, state, frozen, mesh, task: task_lib.Task) -> dict:
  """Mean loss and metrics over config.train.eval_clips validation clips (fixed noise: comparable across steps), of
  the raw params ('val_<metric>') and of the EMA params ('val_ema_<metric>'); batches from `task.input_pipeline`."""
  batch_size = eval_batch_size(config, mesh.size)
  batch_keys = task.batch_keys
  source = task.input_pipeline(config, 'validation', shuffle=False, num_epochs=1, batch_size=batch_size)
  totals, n = {}, 0
  for i, host in enumerate(source):
    if i * batch_size >= config.train.eval_clips:
      break
    batch = pipeline.to_device({k: v for k, v in host.items() if k in batch_keys}, mesh, config.mesh.data_axes)
    # Raw and EMA params on the same clips and noise: 'val_*' and 'val_ema_*'.
    for prefix, params in (('', state.params), ('ema_', state.ema_params)):
      loss, m = eval_fn(params, state.model_state, batch, frozen, jax.random.PRNGKey(config.seed + 1 + i))
      for k, v in jax.device_get(dict(m, loss=loss)).items():
        totals[prefix + k] = totals.get(prefix + k, 0.0) + float(v)
    n += 1
  return {f'val_{k}': v / max(n, 1) for k, v in totals.items()}


class Evaluation(Hook):
  """Every eval_every steps: held-out loss of raw and EMA params, plus (train.eval_samples) the task's sample
  scores of the EMA params; written to metrics.jsonl. `last` holds them for the checkpoint of that step."""

  def __init__(self):
    self.last: dict = {}
    self.step = -1

  def after_step(self, loop, metrics, done):
    t = loop.config.train
    if loop.eval_fn is None or done % t.eval_every:
      return
    metrics.drain()
    self.last = evaluate(loop.config, loop.eval_fn, loop.state, loop.frozen, loop.mesh, loop.task)
    if t.eval_samples:
      self.last.update(loop.task.score_samples(loop.model, loop.state.ema_params, done, loop.mesh))
    self.step = done
    loop.writer.write(done, dict(self.last, wall_s=time.perf_counter() - loop.started))


class LeaseCheck(Hook):
  """Stops, without saving, once another trainer took the workdir's lease over (this one failed to renew it in
  time); with several processes they agree every log_every steps, as they do for preemption."""

  def after_step(self, loop, metrics, done):
    if jax.process_count() > 1 and done % loop.config.train.log_every:
      return
    holder = lease_lib.any_lost(loop.lease)
    if holder is not None:
      raise lease_lib.lost_error(loop.workdir, holder)


class Preemption(Hook):
  """SIGTERM (a TPU / spot preemption notice) or Orbax's preemption check -> `loop.stop`; with several processes
  they agree (any one stopping stops all) every log_every steps."""

  def __init__(self):
    self.requested = False
    self._previous = None
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: rely on Orbax's preemption check only.
      self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def after_step(self, loop, metrics, done):
    stop = self.requested or loop.manager.reached_preemption(done)
    if jax.process_count() > 1 and done % loop.config.train.log_every == 0:
      stop = bool(np.max(multihost_utils.process_allgather(np.asarray([stop], np.int32))))
    loop.stop = stop

  def close(self, loop):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


class Checkpoints(Hook):
  """Saves every checkpoint_every steps, at the last step and on preemption; a step evaluated just now carries its
  val metrics (train.keep_best_by keeps the best)."""

  def __init__(self, evaluation: Evaluation):
    self.evaluation = evaluation

  def after_step(self, loop, metrics, done):
    t = loop.config.train
    if done % t.checkpoint_every and done != loop.total and not loop.stop:
      return
    metrics.drain()  # Never save a step whose loss we have not checked.
    # Only the step evaluated just now carries val metrics: a later step tagged with them would pass for the best.
    last = self.evaluation.last if self.evaluation.step == done else {}
    best = last if t.keep_best_by and t.keep_best_by in last else None
    checkpoint.save(loop.manager, done, loop.state, loop.source.get_state(), loop.config, metrics=best,
                    force=loop.stop)
    # On a bucket metrics.jsonl is written whole per flush: flushing here keeps every row up to the step a crashed
    # run resumes from.
    loop.writer.flush()


class Samples(Hook):
  """Every sample_every steps: the task's samples of the EMA params in W/samples/<step>/ (written by process 0)."""

  def after_step(self, loop, metrics, done):
    every = loop.config.train.sample_every
    if every <= 0 or done % every:
      return
    metrics.drain()
    out_dir = str(loop.run.samples(done))
    paths = loop.task.write_samples(loop.model, loop.state.ema_params, done, out_dir, loop.mesh, write=loop.primary)
    if paths:
      logging.info('Wrote %d samples to %s', len(paths), out_dir)


# ----------------------------------------------------------------------------- the loop

def train(config: ml_collections.ConfigDict, workdir: str, task: task_lib.Task, *,
          mesh: Optional[jax.sharding.Mesh] = None, progress: bool = True) -> dict:
  """Trains `task` for config.train.steps steps in workdir, resuming if possible.

  Returns the metrics of the last step (float values) plus 'step' and 'stopped' ('done' | 'preempted').
  Raises config_lib.ConfigError before compiling anything for an invalid config, checkpoint.ShapeMismatchError
  when workdir holds a checkpoint of another model, NonFiniteLossError on NaN/inf (nothing is saved for that step).
  """
  loop = setup(config, workdir, task, mesh)
  try:
    return _run(loop, progress)
  finally:
    # Last, after every checkpoint and metric file is written: the next trainer may start once the lease is gone.
    _release(loop.lease)


def _run(loop: Loop, progress: bool) -> dict:
  """The steps and hooks of `train`, from the set-up loop; waits for the last save and closes every file."""
  loop.result.update(step=loop.start, stopped='done')
  if loop.start >= loop.total:
    logging.info('Nothing to do: checkpoint step %d >= train.steps %d', loop.start, loop.total)
    loop.writer.close()
    loop.manager.close()
    return loop.result

  batch = loop.to_device(next(loop.source))
  compiled, meter = compile_step(loop, batch)
  bar = tqdm(total=loop.total, initial=loop.start, desc='train', dynamic_ncols=True) if (
      loop.primary and progress) else None
  metrics = _StepMetrics(loop, meter, bar)
  evaluation = Evaluation()
  hooks = [Profiler(loop), evaluation, LeaseCheck(), Preemption(), Checkpoints(evaluation), Samples()]
  meter.start(loop.start)
  failure = None
  try:
    for step in range(loop.start, loop.total):
      for hook in hooks:
        hook.before_step(loop, step)
      batch = batch if batch is not None else loop.to_device(next(loop.source))
      loop.state, step_metrics = compiled(loop.state, batch, loop.frozen)
      batch = None
      metrics.push(step + 1, step_metrics)  # Reads the previous step's metrics while this one runs.
      for hook in hooks:
        hook.after_step(loop, metrics, step + 1)
      if loop.stop:
        logging.warning('Preemption requested: saved a checkpoint at step %d, stopping.', step + 1)
        loop.result['stopped'] = 'preempted'
        break
    metrics.drain()
    loop.result['step'] = int(jax.device_get(loop.state.step))
  except Exception as e:
    failure = checkpoint.as_write_error(e, loop.manager) or e  # A full disk or a read-only directory: say so.
    if failure is e:
      raise
    raise failure from e
  finally:
    for hook in hooks:
      hook.close(loop)
    if bar is not None:
      bar.close()
    # Asynchronous saves finish (or fail) here, on every process; then the metric files are flushed. On a full disk
    # either can fail: reported as a write error, unless an error is already on its way.
    late = None
    for close in (loop.manager.wait_until_finished, loop.manager.close, loop.writer.close):
      try:
        close()
      except Exception as e:  # pylint: disable=broad-except  (every file is closed; the first error is raised)
        late = late or e
    if late is not None and failure is None:
      converted = checkpoint.as_write_error(late, loop.manager)
      if converted is None:
        raise late
      raise converted from late
  return loop.result


def _release(lease: Optional[lease_lib.Lease]) -> None:
  """Deletes the workdir's lease (None on processes other than 0); a failure (storage unreachable) only warns: the
  lease expires by itself after train.lease_timeout_s, and the run's own outcome or error is what the caller must
  see."""
  if lease is None:
    return
  try:
    lease.release()
  except Exception as e:  # pylint: disable=broad-except  (see the docstring)
    logging.warning('Could not delete the lease %s (%s: %s); it expires %g s after its last renewal.',
                    lease.location, type(e).__name__, e, lease.timeout_s)
