"""Device mesh from `config.mesh`: named axes (e.g. data, fsdp, context, tensor) with sizes, -1 = the devices left
over.

Axis types are `Auto` on purpose: the models annotate parameters with logical names and leave activations to
GSPMD sharding propagation, which is what Auto axes do. (`jax.make_mesh` defaults to Explicit axes, which would
put shardings into the types of every intermediate and ask each matmul for an explicit out_sharding.)
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import ml_collections
import numpy as np

from avdiff import config_lib

# Mesh axes outermost first. ConfigDict lists keys sorted by name, which would put 'context' outermost, across hosts;
# its all-to-alls move every activation of attention, so it belongs next to 'tensor' on the closely connected
# devices. Axes not named here follow, in the config's order.
AXIS_ORDER = ('data', 'fsdp', 'context', 'tensor')


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """Mesh over `devices` (default: all devices of all processes) with the axes of `mesh_cfg.shape`, in AXIS_ORDER.

  The last axis varies fastest over the device list, so with `jax.make_mesh`'s topology-aware ordering the
  innermost axis (conventionally 'tensor') lands on the most tightly connected devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = config_lib.mesh_shape(mesh_cfg, len(devices))
  rank = lambda a: AXIS_ORDER.index(a) if a in AXIS_ORDER else len(AXIS_ORDER)
  shape = {a: shape[a] for a in sorted(shape, key=rank)}
  names, sizes = tuple(shape), tuple(shape.values())
  types = (jax.sharding.AxisType.Auto,) * len(names)
  if len(devices) == len(jax.devices()):
    return jax.make_mesh(sizes, names, axis_types=types, devices=devices)
  return jax.sharding.Mesh(np.asarray(devices).reshape(sizes), names, axis_types=types)


def inference_mesh(mesh_cfg: ml_collections.ConfigDict) -> Optional[jax.sharding.Mesh]:
  """The mesh to restore and sample a run on: its mesh_cfg over every device of every process when there is more
  than one device (the params in their training shardings: a model that needed them to train fits to sample), else
  None (one device)."""
  return make_mesh(mesh_cfg) if jax.device_count() > 1 else None


def describe(mesh: jax.sharding.Mesh) -> str:
  """'data=2 fsdp=2 tensor=2 (8 devices, 1 process)'."""
  axes = ' '.join(f'{k}={v}' for k, v in mesh.shape.items())
  return f'{axes} ({mesh.size} devices, {jax.process_count()} process{"es" if jax.process_count() > 1 else ""})'
