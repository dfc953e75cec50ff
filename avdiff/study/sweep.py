"""Sweeps: named members (small deltas of a base config) x seeds, each trained and evaluated in its own workdir.

A sweep file (configs/sweeps/NAME.py) defines `get_sweep()` returning a dict:
  base       config file every member starts from, e.g. 'configs/tiny.py' (relative to the repository root)
  members    {name: delta}; a delta is a dict of dotted overrides ({'model.fusion': 'dual_tower'}) or the path of
             a config file of its own (e.g. one of configs/ablations/*.py); {} is the base itself
  seeds      seeds to run per member (config.seed: parameter init, data order, noise)
  overrides  (optional) dotted overrides applied to every member after its delta (e.g. a shorter schedule)
Runs live in <workdir>/<member>/seed<seed>/ (an ordinary run directory: config.json, checkpoints/, metrics.jsonl,
eval/<split>.json, report/). A run is finished when eval/<split>.json exists; an interrupted run resumes from its
checkpoint, so rerunning a sweep repeats no finished work.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
from typing import Any, Callable, Optional, Sequence

import ml_collections
from absl import logging
from etils import epath

from avdiff import config_lib
from avdiff import parallel
from avdiff import run_dir as run_dir_lib
from avdiff.eval import results
from avdiff.eval import workdir as workdir_lib
from avdiff.train import loop
from avdiff.train import stage1
from avdiff.train import tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class Sweep:
  name: str
  base: str
  members: dict[str, Any]
  seeds: tuple[int, ...]
  overrides: dict[str, Any]


def _load_module(path: str):
  """A Python file as a module (config and sweep files are loaded by path, as --config=FILE is)."""
  full = path if os.path.isabs(path) else os.path.join(REPO, path)
  if not os.path.exists(full):
    raise FileNotFoundError(f'{path}: no such file (paths are relative to {REPO})')
  if REPO not in sys.path:
    sys.path.insert(0, REPO)  # Config files import `configs.*`.
  spec = importlib.util.spec_from_file_location(f'_avdiff_sweep_{abs(hash(full))}', full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_sweep(path: str) -> Sweep:
  """The sweep of a sweep file (see the module docstring); raises config_lib.ConfigError naming a malformed entry."""
  raw = _load_module(path).get_sweep()
  for key in ('base', 'members', 'seeds'):
    if key not in raw:
      raise config_lib.ConfigError(f'{path}: get_sweep() must return {key!r}')
  if not raw['members'] or not raw['seeds']:
    raise config_lib.ConfigError(f'{path}: a sweep needs at least one member and one seed')
  for name, delta in raw['members'].items():
    if not isinstance(delta, (dict, str)) or not name.replace('_', '').replace('-', '').isalnum():
      raise config_lib.ConfigError(f'{path}: member {name!r} must be a [a-z0-9_-] name mapped to a dict of overrides or a '
                       'config file path')
  name = raw.get('name', os.path.splitext(os.path.basename(path))[0])
  return Sweep(name, raw['base'], dict(raw['members']), tuple(int(s) for s in raw['seeds']),
               dict(raw.get('overrides', {})))


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """Sets dotted fields ('train.steps': 100); a field the config does not have raises ConfigError."""
  for key, value in overrides.items():
    node = config
    parts = key.split('.')
    for part in parts[:-1]:
      if part not in node:
        raise config_lib.ConfigError(f'override {key!r}: the config has no section {part!r}')
      node = node[part]
    if parts[-1] not in node:
      raise config_lib.ConfigError(f'override {key!r}: the config has no field {parts[-1]!r}')
    node[parts[-1]] = tuple(value) if isinstance(value, list) else value
  return config


def with_overrides(sweep: Sweep, assignments: Sequence[str] = (), seeds: Optional[Sequence[str]] = None) -> Sweep:
  """The sweep with 'section.field=value' assignments added to its overrides (applied to every member last;
  values read as Python literals, else taken as strings) and, when given, other seeds."""
  overrides = dict(sweep.overrides)
  for text in assignments:
    key, sep, value = text.partition('=')
    if not sep or not key:
      raise config_lib.ConfigError(f"override {text!r} is not 'section.field=value'")
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value
  seeds = tuple(int(s) for s in seeds) if seeds else sweep.seeds
  return dataclasses.replace(sweep, overrides=overrides, seeds=seeds)


def member_config(sweep: Sweep, member: str, seed: int) -> ml_collections.ConfigDict:
  """The full config of one member and seed."""
  if member not in sweep.members:
    raise config_lib.ConfigError(f'sweep {sweep.name!r} has no member {member!r}; it has {sorted(sweep.members)}')
  delta = sweep.members[member]
  if isinstance(delta, str):
    config = _load_module(delta).get_config()
  else:
    config = apply_overrides(_load_module(sweep.base).get_config(), delta)
  config = apply_overrides(config, sweep.overrides)
  config.seed = int(seed)
  return config


def run_dir(workdir: str, member: str, seed: int) -> str:
  """<workdir>/<member>/seed<seed> (workdir local or gs://)."""
  return str(epath.Path(workdir) / member / f'seed{seed}')


def finished(run: str, config: ml_collections.ConfigDict) -> bool:
  """True once the run's evaluation result exists (written last by the evaluation)."""
  return run_dir_lib.RunDir(run).eval_json(config.eval.split).exists()


def run_member(sweep: Sweep, workdir: str, member: str, seed: int, train_fn: Optional[Callable] = None,
               progress: bool = True) -> Optional[str]:
  """Trains (resuming if interrupted) and evaluates one member x seed unless already finished; returns its run
  directory, or None when training was preempted (SIGTERM: saved, not evaluated; rerun to continue).
  train_fn(config, run_dir) -> loop result: the trainer (default: the diffusion task through the loop, after
  stage 1 for latent encoders when their autoencoder is not trained yet: `avdiff.train.stage1`)."""
  config = member_config(sweep, member, seed)
  run = run_dir(workdir, member, seed)
  if finished(run, config):
    logging.info('%s seed %d: finished before, skipped', member, seed)
    return run
  if train_fn is None:
    try:  # Latent members: their autoencoder found, or trained first (once for every member and seed sharing it).
      config, task = tasks.build('diffusion', config, progress=progress)
    except stage1.Preempted:
      return None
    result = loop.train(config, run, task, progress=progress)
  else:
    result = train_fn(config, run)
  if result['stopped'] != 'done':
    logging.warning('%s seed %d: training was preempted; saved, not evaluated (rerun to continue).', member, seed)
    return None
  if parallel.is_primary():  # Multi-host jobs: training used every process; one evaluates and writes the result.
    results.write_workdir(run_dir_lib.RunDir(run), workdir_lib.evaluate_workdir(run, config), config)
  return run


def run_sweep(sweep: Sweep, workdir: str, **kwargs) -> list[str]:
  """Every member x seed, sequentially on this machine, seed by seed (every member's first seed, then every
  member's second, ...: a sweep stopped early still compares all members); returns the finished run directories.
  Stops at a preempted run (SIGTERM), which is saved for the rerun."""
  runs = []
  for seed in sweep.seeds:
    for member in sweep.members:
      run = run_member(sweep, workdir, member, seed, **kwargs)
      if run is None:
        return runs
      runs.append(run)
  return runs
