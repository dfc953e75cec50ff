"""The multi-process flags every entry point that runs a model takes, and the start-up they drive.

    python -m experiments.<tool> ... --coordinator_address=localhost:12355 --num_processes=2 --process_id=0
    # Cloud TPU pod / SLURM: --num_processes=-1 (everything from the environment).
"""

from typing import Optional

import jax
from absl import flags

from avdiff import parallel

_COORDINATOR = flags.DEFINE_string('coordinator_address', '', 'host:port of process 0 (multi-process runs).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Processes in the run; -1 = from the cluster '
                                      'environment (TPU pod, SLURM).')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'Index of this process.')


def initialize() -> None:
  """Starts the JAX distributed runtime when the flags (or the cluster environment) say there are several
  processes (`parallel.initialize`)."""
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def inference_mesh(config) -> Optional[jax.sharding.Mesh]:
  """The mesh to restore and sample a run on: the run's config.mesh over every device of every process when there
  is more than one device (the params in their training shardings: a model that needed them to train fits to
  sample), else None (one device)."""
  return parallel.make_mesh(config.mesh) if jax.device_count() > 1 else None
