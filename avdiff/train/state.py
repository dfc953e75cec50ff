"""TrainState (params, EMA params, optimizer state, step, RNG) created abstractly, then born sharded on the mesh.

Parameters are kept as pure nested dicts of arrays (what `nnx.to_pure_dict` gives), so the state is a plain
pytree for jit, optax and Orbax; `Model.merge` turns them back into the NNX module inside a traced function.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from avdiff import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 [], number of optimizer updates done.
  params: Any  # Pure dict of float arrays (trained parameters).
  ema_params: Any  # Exponential moving average of params (decay config.train.ema_decay), used for sampling.
  opt_state: Any  # optax state.
  rng: jax.Array  # uint32 [2] raw PRNG key; step s uses fold_in(rng, s).
  model_state: Any  # Pure dict of the model's non-parameter variables (carried, not trained; often empty).


@dataclasses.dataclass(frozen=True)
class Model:
  """Static description of the model: its NNX graph and the logical-axis metadata of its parameters."""
  graphdef: Any
  abstract_params: nnx.State  # ShapeDtypeStruct leaves with logical axis names.
  abstract_rest: nnx.State
  # The module applies per-layer parameter shardings inside its layer loop (a `layer_shardings` attribute, as
  # `avdiff.models.DiT` has); the train step then gathers FSDP weights one layer at a time (step.gather_plan).
  takes_layer_shardings: bool = False

  def merge(self, params, model_state=None) -> nnx.Module:
    """NNX module from pure-dict params (and non-parameter state)."""
    rest = nnx.State(model_state) if model_state else self.abstract_rest
    return nnx.merge(self.graphdef, nnx.State(params), rest)

  @property
  def num_params(self) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.to_pure_dict(self.abstract_params)))


def abstract_model(config: ml_collections.ConfigDict, task) -> Model:
  """The task's model built under eval_shape (no memory, no compute)."""
  module = nnx.eval_shape(lambda: task.build_model(config, nnx.Rngs(config.seed)))
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  return Model(graphdef, params, rest, takes_layer_shardings=hasattr(module, 'layer_shardings'))


def init_fn(config, task, tx):
  """init(seed_key) -> TrainState: builds the model (params from seed_key) and the optimizer state."""

  def init(seed_key: jax.Array) -> TrainState:
    params_key, train_key = jax.random.split(seed_key)
    module = task.build_model(config, nnx.Rngs(params_key))
    _, params, rest = nnx.split(module, nnx.Param, ...)
    params, rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    ema = jax.tree.map(jnp.copy, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=ema, opt_state=tx.init(params),
                      rng=train_key, model_state=rest)

  return init


def state_shardings(config: ml_collections.ConfigDict, model: Model, abstract_state: TrainState,
                    tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> TrainState:
  """NamedShardings for every leaf of the state: params / EMA / moments by the logical-axis rules."""
  specs = parallel.param_specs(model.abstract_params, config.mesh.axis_rules, mesh)
  params = parallel.named(mesh, specs)
  rep = parallel.replicated(mesh)
  return TrainState(step=rep, params=params, ema_params=params,
                    opt_state=parallel.optimizer_shardings(tx, abstract_state.opt_state, params, mesh),
                    rng=rep, model_state=jax.tree.map(lambda _: rep, abstract_state.model_state))


def create(config: ml_collections.ConfigDict, task, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
           model: Model | None = None, materialize: bool = True):
  """(model, abstract state, shardings, state) with every leaf of `state` created directly in its sharding.

  materialize=False skips running the init (state is None): used when restoring from a checkpoint.
  """
  model = model or abstract_model(config, task)
  init = init_fn(config, task, tx)
  key = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(init, key)
  shardings = state_shardings(config, model, abstract, tx, mesh)
  state = jax.jit(init, out_shardings=shardings)(key) if materialize else None
  return model, abstract, shardings, state
