"""Layer stacks: n blocks whose parameters share a leading 'layers' axis, run by jax.lax.scan or an unrolled loop.

The parameter tree is the same either way, and under scan compile time does not grow with depth. `run_stack` also
applies the remat policy and, with FSDP, gathers each layer's weights inside the loop (one layer at a time).
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

REMAT_POLICIES = {
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # The block's projection outputs only: no matmul is recomputed, every elementwise op (norms, modulation,
    # rotary, GELU) is, so far less is written to memory in the forward pass and read back in the backward.
    'projections': jax.checkpoint_policies.save_only_these_names(
        'qkv', 'attention', 'attention_residuals', 'attention_out', 'mlp_hidden', 'mlp_out'),
}


def stacked(n: int, make, rngs: nnx.Rngs):
  """n modules built by `make(rngs)`, parameters stacked on a leading 'layers' axis."""

  @nnx.split_rngs(splits=n)
  @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: 'layers'})
  def build(r):
    return make(r)

  return build(rngs)


def layer(stack: nnx.Module, i: int) -> nnx.Module:
  """Layer i of a stacked module (its parameters indexed on the leading axis)."""
  graphdef, state = nnx.split(stack)
  return nnx.merge(graphdef, jax.tree.map(lambda x: x[i], state))


def _gather(state: nnx.State, shardings, leading: int) -> nnx.State:
  """Constrains one layer's (or group's) parameters to `shardings` (pure dict of one layer's NamedShardings);
  `leading` extra unsharded leading axes (layers within a group)."""
  if leading:
    shardings = jax.tree.map(lambda s: NamedSharding(s.mesh, P(*(None,) * leading, *s.spec)), shardings)
  pure = jax.tree.map(jax.lax.with_sharding_constraint, nnx.to_pure_dict(state), shardings)
  nnx.replace_by_pure_dict(state, pure)
  return state


def run_stack(stack: nnx.Module, carry, body, *, scan: bool, remat: str, groups: int = 0, layer_shardings=None):
  """Applies `body(carry, layer_module) -> carry` for each layer of a stacked module.

  groups > 0 runs `body(carry, [modules])` over `groups` consecutive groups of layers (the dual tower); stack is a
  tuple of stacked modules then, each reshaped to [groups, layers per group, ...] (take layers with `layer`).
  layer_shardings: None, or per stack the shardings of one layer's parameters, applied inside the loop: with FSDP
  each layer's weights are then gathered (and their gradients reduce-scattered) one layer at a time.
  """
  stacks = stack if isinstance(stack, tuple) else (stack,)
  splits = [nnx.split(s) for s in stacks]
  graphdefs = [g for g, _ in splits]
  states = [st for _, st in splits]
  n = jax.tree.leaves(states[0])[0].shape[0]
  if groups:
    states = [jax.tree.map(lambda x: x.reshape((groups, x.shape[0] // groups) + x.shape[1:]), st) for st in states]
    n = groups

  def step(c, sts):
    if layer_shardings is not None:
      sts = [_gather(st, sh, 1 if groups else 0) for st, sh in zip(sts, layer_shardings)]
    mods = [nnx.merge(g, st) for g, st in zip(graphdefs, sts)]
    return body(c, mods if isinstance(stack, tuple) else mods[0])

  if remat != 'none':
    step = jax.checkpoint(step, policy=REMAT_POLICIES[remat])
  if scan:
    carry, _ = jax.lax.scan(lambda c, sts: (step(c, sts), None), carry, states)
    return carry
  for i in range(n):
    carry = step(carry, [jax.tree.map(lambda x, i=i: x[i], st) for st in states])
  return carry
