"""Workdir io: the resolved config (config.json) and Orbax checkpoints of a run (the train state, every process's
data-iterator state and the config), and `restore_params`, the one primitive that reads a run's (EMA) params into
a model for inference. Used by training, sampling and evaluation; imports no model, task or config file.

Layout: <workdir>/checkpoints/<step>/{state, data, config}. Orbax writes a step into a temporary directory and
renames it when every item (and every process) has finished, so an interrupted save is never listed as a step; on
a bucket (gs://, where there is no atomic rename) it writes the step in place and lists it only once its
commit_success.txt exists. Paths of the run come from `avdiff.run_dir.RunDir` (local or gs://).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from avdiff import config_lib
from avdiff import console
from avdiff import run_dir

CHECKPOINT_DIR = run_dir.CHECKPOINT_DIR
CONFIG_FILE = run_dir.CONFIG_FILE


class ShapeMismatchError(config_lib.ConfigError):
  """The config of a resumed run gives parameters of other shapes than the checkpoint in its workdir."""


class NoReadableCheckpointError(console.UserError):
  """Every checkpoint of a workdir failed to read (each was moved aside); the message lists what was tried."""


CORRUPT_SUFFIX = '.corrupt'


class CheckpointWriteError(console.UserError):
  """The run directory could not be written (no space left, no permission): a checkpoint, metrics or event file.
  The finished checkpoints are intact."""


# (what the message says, markers of it in OSError errnos and in TensorStore's status text)
_WRITE_FAILURES = (('no space left on device', 28, ('No space left', "os_error_code='28'")),
                   ('permission denied', 13, ('Permission denied', "os_error_code='13'")),
                   ('disk quota exceeded', 122, ('Disk quota exceeded', "os_error_code='122'")))


def as_write_error(exc: BaseException, manager: ocp.CheckpointManager) -> Optional[CheckpointWriteError]:
  """A CheckpointWriteError naming the run directory, the checkpoints kept and the room needed, when `exc` (or an
  exception it was raised from) is a failed write (of a checkpoint, metrics or event file); else None."""
  reason = None
  seen = exc
  while seen is not None and reason is None:
    for what, errno, markers in _WRITE_FAILURES:
      if getattr(seen, 'errno', None) == errno or any(m in str(seen) for m in markers):
        reason = what
        break
    seen = seen.__cause__ or seen.__context__
  if reason is None:
    return None
  directory = epath.Path(manager.directory)
  try:
    manager.reload()
    latest = manager.latest_step()
  except Exception:  # pylint: disable=broad-except  (the message must not depend on reading the directory)
    latest = None
  parts = [f'Could not write to the run directory {directory.parent}: {reason}.',
           f'Step {latest} and the ones before it are intact.' if latest is not None else 'No checkpoint was finished.']
  step_dir = os.path.join(str(directory), str(latest))
  if latest is not None and os.path.isdir(step_dir):  # Local directories (a bucket's objects are not summed).
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(step_dir) for f in files)
    parts.append(f'One checkpoint takes about {total / 2**20:.1f} MiB: free at least that much there, or give a '
                 '--workdir with room.')
  parts.append('Then rerun the same command to resume from the last checkpoint.')
  return CheckpointWriteError(' '.join(parts))


def set_aside(manager: ocp.CheckpointManager, step: int) -> str:
  """Renames checkpoint `step` to <step>.corrupt (kept, never deleted, for inspection; Orbax no longer lists it)
  and reloads the manager. The first process renames; every process waits for it. Returns the new path."""
  directory = epath.Path(manager.directory)
  src = directory / str(step)
  dst = directory / f'{step}{CORRUPT_SUFFIX}'
  n = 0
  while dst.exists():  # The same step may go bad twice in a run's life.
    n += 1
    dst = directory / f'{step}{CORRUPT_SUFFIX}{n}'
  if jax.process_index() == 0 and src.exists():
    src.rename(dst)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'set_aside_{step}')
  manager.reload()
  return str(dst)


# ----------------------------------------------------------------------------- config <-> json

def config_to_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=2, sort_keys=True)


def _tuples(value):
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _merge_into(base: ml_collections.ConfigDict, values: dict) -> None:
  for key, value in values.items():
    if key in base and isinstance(base[key], ml_collections.ConfigDict) and isinstance(value, dict):
      if key == 'shape':  # Mesh shape: a free-form axis -> size table.
        base[key] = ml_collections.ConfigDict(value)
      else:
        _merge_into(base[key], value)
      continue
    if isinstance(value, list):
      value = _tuples(value)
    elif isinstance(value, dict):  # A section the defaults do not have (or no defaults at all).
      section = ml_collections.ConfigDict()
      _merge_into(section, value)
      value = section
    with base.unlocked():
      base[key] = value


def config_from_json(text: str, defaults: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """The config saved by `config_to_json`. JSON lists become tuples (as every sequence field of configs/base.py
  is). With `defaults` (e.g. configs/base.py's get_config()) the saved values are merged on top of it, so a run
  saved before a field existed gets that field's default; config.json of a run holds every field it was run with.
  """
  config = defaults if defaults is not None else ml_collections.ConfigDict()
  _merge_into(config, json.loads(text))
  return config


def load_config(workdir: str, defaults: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
  """W/config.json as a ConfigDict (see `config_from_json` for `defaults`); W may be a bucket path (gs://...)."""
  try:
    text = run_dir.RunDir(workdir).read_config()
  except FileNotFoundError:  # Name the directory as the user gave it.
    raise FileNotFoundError(f'{workdir} is not a run directory (it has no {CONFIG_FILE}); runs are made by '
                            'experiments.train') from None
  return config_from_json(text, defaults)


# ----------------------------------------------------------------------------- manager

def make_manager(workdir: str, train_cfg: Optional[ml_collections.ConfigDict] = None,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """CheckpointManager for <workdir>/checkpoints keeping the last `keep_checkpoints` steps (and, with
  `keep_best_by`, the best by that metric, lower = better)."""
  kwargs = dict(create=not read_only, read_only=read_only)
  if train_cfg is not None:
    kwargs.update(enable_async_checkpointing=bool(train_cfg.async_checkpointing))
    policies = [ocp.checkpoint_managers.LatestN(n=int(train_cfg.keep_checkpoints))]
    if train_cfg.keep_best_by:
      metric = train_cfg.keep_best_by
      # Orbax's best_fn + max_to_keep alone keeps the K best by metric and may delete the latest step (resume
      # would go back in time); the union keeps the last K plus the single best.
      policies.append(ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: float(m[metric]), reverse=True, n=1,
                                                    keep_checkpoints_without_metrics=False))
      kwargs.update(best_fn=lambda m: float(m[metric]), best_mode='min')
    kwargs.update(preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies))
  return ocp.CheckpointManager(run_dir.RunDir(workdir).checkpoints,
                               item_handlers={'state': ocp.StandardCheckpointHandler(),
                                              'data': ocp.JsonCheckpointHandler(),
                                              'config': ocp.JsonCheckpointHandler()},
                               options=ocp.CheckpointManagerOptions(**kwargs))


def gather_data_states(local_state: Optional[bytes]) -> dict[str, str]:
  """{process index: iterator state} of all processes (each process holds only its own)."""
  text = (local_state or b'').decode()
  if jax.process_count() == 1:
    return {'0': text}
  raw = np.frombuffer(text.encode(), np.uint8)
  length = int(np.max(multihost_utils.process_allgather(np.asarray([raw.size], np.int32))))
  padded = np.zeros(max(length, 1), np.uint8)
  padded[:raw.size] = raw
  sizes = multihost_utils.process_allgather(np.asarray([raw.size], np.int32)).reshape(-1)
  everyone = multihost_utils.process_allgather(padded).reshape(jax.process_count(), -1)
  return {str(i): bytes(everyone[i, :sizes[i]]).decode() for i in range(jax.process_count())}


def save(manager: ocp.CheckpointManager, step: int, state, data_state: Optional[bytes],
         config: ml_collections.ConfigDict, metrics: Optional[dict] = None, force: bool = False) -> bool:
  """Starts saving (async if configured) `state`, all processes' iterator states and the config at `step`.
  Every process must call this."""
  data = gather_data_states(data_state)
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data),
      config=ocp.args.JsonSave(json.loads(config_to_json(config)))), metrics=metrics, force=force)


def _key_name(k) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _flat_shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, 'shape'))[0]
  return {'/'.join(_key_name(k) for k in path): tuple(x.shape) for path, x in leaves if hasattr(x, 'shape')}


def check_shapes(manager: ocp.CheckpointManager, step: int, abstract_params,
                 saved_config: Optional[ml_collections.ConfigDict] = None,
                 config: Optional[ml_collections.ConfigDict] = None) -> None:
  """Raises ShapeMismatchError naming parameters (and config fields) that differ from checkpoint `step`."""
  meta = manager.item_metadata(step)['state']
  tree = getattr(meta, 'tree', meta)
  saved = _flat_shapes(tree['params'])
  wanted = _flat_shapes(abstract_params)
  diffs = [f'  {k}: checkpoint {saved.get(k)} vs config {wanted.get(k)}'
           for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
  if not diffs:
    return
  fields = []
  if saved_config is not None and config is not None:
    old, new = flatten_config(saved_config), flatten_config(config)
    fields = [f'  {k}: {old.get(k)!r} -> {new.get(k)!r}' for k in sorted(set(old) | set(new))
              if (k.startswith(('model.', 'data.'))) and old.get(k) != new.get(k)]
  more = f' ({len(diffs) - 20} more)' if len(diffs) > 20 else ''
  raise ShapeMismatchError(
      f'The checkpoint at step {step} in {manager.directory} has parameters of other shapes than this config '
      f'builds, so it cannot be resumed. Differences:\n' + '\n'.join(diffs[:20]) + more +
      ('\nChanged config fields:\n' + '\n'.join(fields) if fields else '') +
      '\nUse a new --workdir for a different model, or restore the original config.')


def flatten_config(config: ml_collections.ConfigDict, prefix: str = '') -> dict:
  """{'section.field': value} of every leaf (lists as tuples)."""
  out = {}
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(flatten_config(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = tuple(v) if isinstance(v, list) else v
  return out


def with_shardings(abstract, shardings):
  """ShapeDtypeStructs carrying the target shardings (Orbax restores each array straight into its sharding)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state, shardings) -> tuple[Any, dict, dict]:
  """(state in `shardings`, {process: iterator state}, saved config dict) of checkpoint `step`."""
  out = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(with_shardings(abstract_state, shardings)), data=ocp.args.JsonRestore(),
      config=ocp.args.JsonRestore()))
  return out['state'], out['data'], out['config']


# ----------------------------------------------------------------------------- inference

def restore_params(workdir: str, model: nnx.Module, *, ema: bool = True, step: Optional[int] = None,
                   shardings=None) -> nnx.Module:
  """`model` (real or abstract, e.g. from nnx.eval_shape) with the EMA (or raw) params of the latest (or given)
  checkpoint of workdir. Only the params are read (partial restore), onto the first local device, or each straight
  into its sharding (`shardings`: a pure-dict tree of them like nnx.to_pure_dict of the params; e.g. the training
  mesh's, so a model larger than one device restores; every process of a multi-process job calls it). Without
  `step`, a newest checkpoint that cannot be read is skipped with a warning (readers never move anything aside)."""
  return restore_latest_params(workdir, model, ema=ema, step=step, shardings=shardings)[0]


def restore_latest_params(workdir: str, model: nnx.Module, *, ema: bool = True, step: Optional[int] = None,
                          shardings=None) -> tuple[nnx.Module, int]:
  """(`restore_params`'s model, the step it came from)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  pure = nnx.to_pure_dict(params)
  if shardings is None:
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.local_devices()[0]), pure)
  target = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), pure, shardings)
  directory = run_dir.RunDir(workdir).checkpoints
  # Handlers for every saved item (only 'state' is read): without them Orbax warns about each unread item.
  manager = ocp.CheckpointManager(directory, item_handlers={'state': ocp.PyTreeCheckpointHandler(),
                                                            'data': ocp.JsonCheckpointHandler(),
                                                            'config': ocp.JsonCheckpointHandler()},
                                  options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
  if not steps:
    raise FileNotFoundError(f'No finished checkpoint in {directory}')
  key = 'ema_params' if ema else 'params'
  tried = []
  for s in steps:
    try:
      check_shapes(manager, s, target)
      out = manager.restore(s, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item={key: target}, restore_args={key: ocp.checkpoint_utils.construct_restore_args(target)},
          partial_restore=True)))
    except ShapeMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (a damaged checkpoint: try the one before)
      if step is not None:
        raise
      tried.append(f'step {s} ({type(e).__name__})')
      logging.warning('Checkpoint step %d in %s cannot be read (%s: %s); using the one before.', s, directory,
                      type(e).__name__, str(e).splitlines()[0][:300] if str(e) else '')
      continue
    manager.close()
    return nnx.merge(graphdef, nnx.State(out['state'][key]), rest), s
  manager.close()
  raise NoReadableCheckpointError(f'No checkpoint in {directory} could be read: {", ".join(tried)}')


def latest_step(workdir: str) -> Optional[int]:
  """The newest finished checkpoint step of workdir (local or gs://), None when it has none."""
  directory = run_dir.RunDir(workdir).checkpoints
  if not epath.Path(directory).exists():
    return None
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True, create=False))
  step = manager.latest_step()
  manager.close()
  return step
