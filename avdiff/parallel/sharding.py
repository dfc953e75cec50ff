"""Logical axis names -> mesh PartitionSpecs / NamedShardings, for parameters (from NNX metadata) and batches.

Rules come from `config.mesh.axis_rules`: a sequence of (logical name, mesh axis | tuple of mesh axes | None).
For each dimension of an array, the first rule for its logical name whose mesh axes exist in the mesh, are not
already used by another dimension of the same array, and divide the dimension's size is applied; otherwise the
dimension is replicated. So `embed -> fsdp` shards parameters (and their optimizer moments) FSDP-style,
`heads -> tensor` / `mlp -> tensor` give Megatron-style tensor parallelism, and a dimension too small to split
(e.g. 9 label rows over 2 devices) silently stays whole instead of failing to compile.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import jax
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

Rules = Sequence[tuple[str, Any]]


def _as_tuple(axes) -> tuple:
  if axes is None:
    return ()
  return tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)


def logical_to_spec(names: Sequence[Optional[str]], shape: Sequence[int], rules: Rules,
                    mesh: jax.sharding.Mesh) -> P:
  """PartitionSpec for an array of `shape` whose dimensions carry logical `names` (None = unnamed)."""
  if len(names) != len(shape):
    raise ValueError(f'{len(names)} logical names {tuple(names)} for an array of shape {tuple(shape)}')
  used: set[str] = set()
  out = []
  for name, size in zip(names, shape):
    chosen = None
    for rule_name, axes in rules:
      if rule_name != name:
        continue
      axes = tuple(a for a in _as_tuple(axes) if a in mesh.shape)
      if not axes or used & set(axes):
        continue
      if size % math.prod(mesh.shape[a] for a in axes) == 0:
        chosen = axes
        break
    if chosen:
      used.update(chosen)
      out.append(chosen[0] if len(chosen) == 1 else chosen)
    else:
      out.append(None)
  return P(*out)


def param_specs(abstract_params: nnx.State, rules: Rules, mesh: jax.sharding.Mesh):
  """Pure-dict tree of PartitionSpecs for an nnx.State of parameters (abstract or concrete); unnamed -> replicated."""
  logical = nnx.get_partition_spec(abstract_params)

  def spec(var, names_var):
    names = tuple(names_var.get_value() or ())
    if not names:  # A parameter without logical names (e.g. a plain nnx.Linear) is replicated.
      names = (None,) * var.ndim
    return logical_to_spec(names, var.shape, rules, mesh)

  specs = jax.tree.map(spec, abstract_params, logical, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(specs)


def named(mesh: jax.sharding.Mesh, specs):
  """Tree of PartitionSpecs -> tree of NamedShardings."""
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda x: isinstance(x, P))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_spec(mesh: jax.sharding.Mesh, data_axes: Sequence[str]) -> P:
  """Leading (batch) dimension split over the data axes present in the mesh, the rest replicated."""
  axes = tuple(a for a in data_axes if a in mesh.shape)
  return P(axes if axes else None)


def batch_sharding(mesh: jax.sharding.Mesh, data_axes: Sequence[str]) -> NamedSharding:
  return NamedSharding(mesh, batch_spec(mesh, data_axes))


def optimizer_shardings(tx: optax.GradientTransformation, abstract_opt_state, param_shardings,
                        mesh: jax.sharding.Mesh):
  """Shardings for an optax state: parameter-shaped leaves (moments) follow their parameter, the rest replicate."""
  return optax.tree_map_params(tx, lambda _, s: s, abstract_opt_state, param_shardings,
                               transform_non_params=lambda _: replicated(mesh),
                               is_leaf=lambda x: isinstance(x, NamedSharding))
