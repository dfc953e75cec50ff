"""Parallelism: device mesh from the config, logical-axis rules -> NamedSharding, multi-process start-up."""

from avdiff.parallel.distributed import initialize, is_primary, process_flags
from avdiff.parallel.mesh import describe, inference_mesh, make_mesh
from avdiff.parallel.sharding import (batch_sharding, batch_spec, logical_to_spec, named, optimizer_shardings,
                                      param_specs, replicated)
