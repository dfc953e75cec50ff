"""Multi-process start-up: `jax.distributed.initialize` from flags or the environment, before any JAX call.

Launch modes:
  * one process (default): nothing to do.
  * explicit flags: every process runs the same command with --coordinator_address=host:port
    --num_processes=N --process_id=i (i = 0..N-1); works on CPU (gloo collectives), GPU and TPU.
  * cluster environments JAX detects by itself (Cloud TPU pods, SLURM, Open MPI, Kubernetes): pass
    --num_processes=-1, or set AVDIFF_DISTRIBUTED=1, and `jax.distributed.initialize()` reads the environment.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
from absl import flags
from absl import logging


def process_flags():
  """Defines the multi-process flags of an entry point (train, sample, evaluate): (--coordinator_address,
  --num_processes, --process_id) flag holders, for `initialize(*(f.value for f in holders))`."""
  return (flags.DEFINE_string('coordinator_address', '', 'host:port of process 0 (multi-process runs).'),
          flags.DEFINE_integer('num_processes', 1, 'Processes in the run; -1 = from the cluster environment (TPU pod, '
                               'SLURM).'),
          flags.DEFINE_integer('process_id', 0, 'Index of this process.'))


def _detected_cluster() -> bool:
  if os.environ.get('AVDIFF_DISTRIBUTED', '') == '1':
    return True
  # SLURM with more than one task, or a multi-host TPU slice.
  if int(os.environ.get('SLURM_NTASKS', '1') or 1) > 1:
    return True
  return bool(os.environ.get('TPU_WORKER_HOSTNAMES', '').count(','))


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, local_device_ids: Optional[list[int]] = None) -> bool:
  """Starts the JAX distributed runtime when the run spans several processes. Returns True if it did.

  Args:
    coordinator_address: 'host:port' of process 0 ('' / None: from the environment).
    num_processes: total processes; None or 1 with no coordinator = single process; -1 = from the environment.
    process_id: this process's index in [0, num_processes).
    local_device_ids: devices this process drives (GPU: one process per GPU).
  """
  explicit = bool(coordinator_address) and (num_processes or 0) > 1
  from_env = num_processes == -1 or (not coordinator_address and (num_processes or 1) <= 1 and _detected_cluster())
  if not explicit and not from_env:
    return False
  if jax.config.jax_platforms in (None, '', 'cpu') or os.environ.get('JAX_PLATFORMS', '') == 'cpu':
    # CPU processes exchange collectives over gloo (TCP); the default CPU backend has none across processes.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    if process_id is None or not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id={process_id} must lie in [0, {num_processes}) with --num_processes')
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, local_device_ids=local_device_ids)
  else:
    jax.distributed.initialize()
  logging.info('JAX distributed: process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  """True on the process that writes logs, samples and config files (process 0)."""
  return jax.process_index() == 0
