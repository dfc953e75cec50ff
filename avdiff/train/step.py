"""The pure train step: loss + grads (optionally accumulated over micro-batches), clipping and optimizer update
(in `tx`), EMA, norms, and a non-finite guard; jitted with explicit shardings and the state donated."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from avdiff import parallel
from avdiff.models import attention as attn_lib
from avdiff.train import optim
from avdiff.train import task as task_lib
from avdiff.train.state import Model, TrainState


def _micro_batches(batch: dict, num: int, mesh, data_axes) -> dict:
  """[B, ...] -> [num, B / num, ...] taking every num-th example, so each micro-batch stays spread over the data
  axes (a contiguous split would put micro-batch 0 on the first devices only)."""
  spec = parallel.batch_spec(mesh, data_axes)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, *spec))

  def split(x):
    x = x.reshape((x.shape[0] // num, num) + x.shape[1:]).swapaxes(0, 1)
    return jax.lax.with_sharding_constraint(x, sharding)

  return jax.tree.map(split, batch)


def compute_shardings(config: ml_collections.ConfigDict, model: Model, mesh: jax.sharding.Mesh):
  """Shardings the parameters are gathered to for the forward / backward pass: the storage rules without the mesh
  axes that also split the batch (config.mesh.data_axes).

  With FSDP a weight is stored split over 'fsdp' while the batch is split over 'fsdp' too. Left to itself, the
  partitioner may then keep the weight split and replicate the activations over the batch instead (every device
  computing the whole global batch: on configs/pod_1b.py 35 GiB of temporaries per device instead of 14 GiB at one
  clip per device). Constraining the parameters to this sharding at use makes it all-gather the weights instead,
  and their gradients are reduce-scattered back to the storage sharding. A no-op for pure data parallelism;
  tensor-parallel axes (not data axes) are kept.
  """
  data_axes = set(config.mesh.data_axes)

  def strip(axes):
    kept = tuple(a for a in ((axes,) if isinstance(axes, str) else tuple(axes or ())) if a not in data_axes)
    return kept or None

  rules = tuple((name, strip(axes)) for name, axes in config.mesh.axis_rules)
  return parallel.named(mesh, parallel.param_specs(model.abstract_params, rules, mesh))


def gather_plan(gathered, stored, model: Model):
  """(shardings to constrain all parameters to before the forward pass, {stack: one layer's shardings}).

  Parameters of scanned layer stacks (leading logical axis 'layers') stay in their storage sharding up front and
  are gathered one layer at a time inside the layer loop (the model applies `per_layer` through its
  `layer_shardings` attribute), so FSDP holds one layer's full weights at a time rather than all of them; every
  other parameter is gathered up front. A model that does not take layer shardings gets everything gathered up front.
  """
  if not model.takes_layer_shardings:
    return gathered, {}
  names = nnx.to_pure_dict(nnx.get_partition_spec(model.abstract_params))
  is_names = lambda x: isinstance(x, (tuple, PartitionSpec)) or x is None
  stacked = lambda n: n is not None and len(n) > 0 and n[0] == 'layers'
  upfront = jax.tree.map(lambda n, g, s: s if stacked(n) else g, names, gathered, stored, is_leaf=is_names)
  per_layer = {}
  for key, sub in names.items():
    leaves = jax.tree.leaves(sub, is_leaf=is_names)
    if leaves and all(stacked(n) for n in leaves):
      per_layer[key] = jax.tree.map(lambda g: NamedSharding(g.mesh, PartitionSpec(*g.spec[1:])), gathered[key])
  return upfront, per_layer


def loss_and_grad(config: ml_collections.ConfigDict, task: task_lib.Task, model: Model, mesh: jax.sharding.Mesh,
                  param_shardings: Any) -> Callable:
  """`grad_fn(params, model_state, batch, rng, frozen) -> ((loss, metrics), grads)` of the task's loss as the train
  step computes it (to be traced under jit): FSDP parameters gathered at use (one layer at a time for layer stacks),
  the sequence split over the context axes when the mesh has them. param_shardings: the params' storage shardings."""
  upfront, per_layer = gather_plan(compute_shardings(config, model, mesh), param_shardings, model)
  sequence = attn_lib.sequence_parallel(config, mesh)

  def loss_fn(params, model_state, batch, rng, frozen):
    module = model.merge(jax.lax.with_sharding_constraint(params, upfront), model_state)
    if per_layer:
      module.layer_shardings = per_layer
    if sequence is not None:
      module.sequence_parallel = sequence
    return task.loss(module, batch, rng, frozen)

  return jax.value_and_grad(loss_fn, has_aux=True)


def make_train_step(config: ml_collections.ConfigDict, task: task_lib.Task, model: Model, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh, shardings: TrainState, frozen_shardings: Any = None) -> Callable:
  """jitted `train_step(state, batch, frozen) -> (state, metrics)`; `state` is donated.

  batch: dict of global arrays [B, ...] sharded over config.mesh.data_axes. frozen: the task's frozen params (or
  None). metrics: float32 scalars — the task's (loss, loss_video, ...) plus grad_norm (before clipping),
  param_norm, update_norm, lr, ema_decay, and finite (1.0, or 0.0 when the loss or gradients were NaN/inf, in which case the
  returned state equals the input state).
  """
  t = config.train
  accum = int(t.grad_accum_steps)
  schedule = optim.learning_rate_schedule(t)
  data_axes = tuple(config.mesh.data_axes)

  grad_fn = loss_and_grad(config, task, model, mesh, shardings.params)

  def train_step(state: TrainState, batch: dict, frozen):
    rng = jax.random.fold_in(state.rng, state.step)
    if accum == 1:
      (loss, metrics), grads = grad_fn(state.params, state.model_state, batch, rng, frozen)
    else:
      micro = _micro_batches(batch, accum, mesh, data_axes)

      def body(carry, xs):
        i, mb = xs
        (l, m), g = grad_fn(state.params, state.model_state, mb, jax.random.fold_in(rng, i), frozen)
        acc_g, acc_l, acc_m = carry
        return (jax.tree.map(jnp.add, acc_g, g), acc_l + l, jax.tree.map(jnp.add, acc_m, m)), None

      zeros_g = jax.tree.map(jnp.zeros_like, state.params)
      (_, m0), _ = jax.eval_shape(grad_fn, state.params, state.model_state,
                                  jax.tree.map(lambda x: x[0], micro), rng, frozen)
      zeros_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m0)
      (grads, loss, metrics), _ = jax.lax.scan(body, (zeros_g, jnp.zeros((), jnp.float32), zeros_m),
                                               (jnp.arange(accum), micro))
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss = loss / accum
      metrics = jax.tree.map(lambda m: m / accum, metrics)

    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = optim.ema_decay(t, state.step)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new = TrainState(step=state.step + 1, params=params, ema_params=ema, opt_state=opt_state, rng=state.rng,
                     model_state=state.model_state)
    # A non-finite step leaves the state untouched, so the loop can stop with the last good state intact.
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
    out = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    out.update(loss=loss.astype(jnp.float32), grad_norm=grad_norm, param_norm=optax.global_norm(params),
               update_norm=optax.global_norm(updates), lr=jnp.asarray(schedule(state.step), jnp.float32),
               ema_decay=jnp.asarray(decay, jnp.float32),
               finite=finite.astype(jnp.float32))
    return new, out

  rep = parallel.replicated(mesh)
  batch_sh = parallel.batch_sharding(mesh, data_axes)
  return jax.jit(train_step, in_shardings=(shardings, batch_sh, frozen_shardings), out_shardings=(shardings, rep),
                 donate_argnums=(0,))
