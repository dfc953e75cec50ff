"""Mesh from the config and logical-axis rules -> shardings: rule resolution, a DiT TrainState born sharded on
a (data=2, fsdp=2, tensor=2) mesh of 8 fake devices, and FSDP's per-layer weight gathering in the train step."""

import os
import tempfile

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P

import train_toy
from avdiff import parallel
from avdiff.data import pipeline
from avdiff.train import optim, state as state_lib
from avdiff.train.tasks import DiffusionTask

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


@pytest.fixture(scope='module')
def sharded():
  config = train_toy.config(DATA_DIR)
  config.mesh.shape = ml_collections.ConfigDict({'data': 2, 'fsdp': 2, 'tensor': 2})
  mesh = parallel.make_mesh(config.mesh)
  tx = optim.make_optimizer(config.train)
  _, _, _, state = state_lib.create(config, DiffusionTask(config), tx, mesh)
  return config, mesh, state


def test_params_sharded_by_rules(sharded):
  _, _, state = sharded
  params, opt_state = state.params, state.opt_state
  qkv = params['blocks']['streams'][0]['qkv']['kernel']  # [layers, embed, 3, heads, kv]
  assert qkv.sharding.spec == P(None, 'fsdp', None, 'tensor', None)
  # Each device holds a 1/2 x 1/2 slice of it (fsdp x tensor), replicated over `data`.
  full = qkv.shape
  assert qkv.addressable_shards[0].data.shape == (full[0], full[1] // 2, full[2], full[3] // 2, full[4])
  fc1 = params['blocks']['streams'][0]['mlp']['fc1']['kernel']  # [layers, embed, mlp]
  assert fc1.sharding.spec == P(None, 'fsdp', 'tensor')
  out = params['blocks']['streams'][0]['out']['kernel']  # [layers, heads, kv, embed]
  assert out.sharding.spec == P(None, 'tensor', None, 'fsdp')
  # Label table [num_classes + 1 = 9, embed]: 'vocab' has no mesh axis, embed -> fsdp.
  assert params['label_embed']['table'].sharding.spec == P(None, 'fsdp')
  # Adam moments and EMA follow their parameter; the step counter and RNG are replicated.
  adam = opt_state[1][0]
  assert adam.mu['blocks']['streams'][0]['qkv']['kernel'].sharding.spec == qkv.sharding.spec
  assert adam.nu['blocks']['streams'][0]['mlp']['fc1']['kernel'].sharding.spec == fc1.sharding.spec
  assert adam.count.sharding.spec == P()
  assert state.ema_params['blocks']['streams'][0]['qkv']['kernel'].sharding.spec == qkv.sharding.spec
  assert state.rng.sharding.spec == P() and state.step.sharding.spec == P()


def test_batch_sharded_over_data_axes(sharded):
  config, mesh, _ = sharded
  source = pipeline.InputPipeline(config, 'train', process_index=0, process_count=1)
  host = {k: v for k, v in next(source).items() if k in DiffusionTask.batch_keys}  # What the loop sends.
  batch = pipeline.to_device(host, mesh, config.mesh.data_axes)
  assert batch['video'].sharding.spec == P(('data', 'fsdp'))
  # 8 clips over data x fsdp = 4 shards: 2 clips per device, each replicated over the 2 tensor devices.
  assert {s.data.shape[0] for s in batch['video'].addressable_shards} == {2}
  assert 'mouth_box' not in batch  # Evaluation-only keys stay on the host (the diffusion task does not ask).


def test_rules_fall_back_to_replication():
  mesh = parallel.make_mesh(ml_collections.ConfigDict({'shape': {'data': 2, 'fsdp': 2, 'tensor': 2}}))
  rules = (('embed', 'fsdp'), ('mlp', 'tensor'), ('heads', 'tensor'), ('batch', ('data', 'fsdp')))
  assert parallel.logical_to_spec(('embed', 'mlp'), (8, 8), rules, mesh) == P('fsdp', 'tensor')
  assert parallel.logical_to_spec(('embed', 'mlp'), (9, 8), rules, mesh) == P(None, 'tensor')  # 9 % 2 != 0
  # 'heads' and 'mlp' both want 'tensor': the first dimension gets it, the second stays whole.
  assert parallel.logical_to_spec(('heads', 'mlp'), (4, 8), rules, mesh) == P('tensor', None)
  assert parallel.logical_to_spec(('batch', None), (8, 3), rules, mesh) == P(('data', 'fsdp'), None)
  assert parallel.logical_to_spec(('layers', None), (8, 3), rules, mesh) == P(None, None)


def test_mesh_fills_the_free_axis():
  mesh = parallel.make_mesh(ml_collections.ConfigDict({'shape': {'data': -1, 'fsdp': 2, 'tensor': 1}}))
  assert dict(mesh.shape) == {'data': 4, 'fsdp': 2, 'tensor': 1}
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_parameters_without_logical_names_are_replicated():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  layer = nnx.Linear(4, 8, rngs=nnx.Rngs(0))
  mesh = jax.make_mesh((2, 4), ('data', 'fsdp'), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  specs = parallel.param_specs(nnx.state(layer, nnx.Param), (('embed', 'fsdp'),), mesh)
  assert specs['kernel'] == jax.sharding.PartitionSpec(None, None)
  assert specs['bias'] == jax.sharding.PartitionSpec(None)


@pytest.mark.parametrize('fusion', ['joint', pytest.param('dual_tower', marks=pytest.mark.slow)])
def test_fsdp_gathers_scanned_layers_one_at_a_time(fusion, monkeypatch):
  """With FSDP the train step all-gathers each layer's weights inside the layer loop, not all layers up front:
  fewer bytes of temporaries than gathering everything before the forward pass, and the same loss."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from benchmarks import bench_train  # pylint: disable=g-import-not-at-top
  from avdiff.train import step as step_lib  # pylint: disable=g-import-not-at-top
  config = train_toy.config(DATA_DIR)
  config.model.update(fusion=fusion, depth=2, width=64, cross_attention_every=1)
  config.mesh.shape = ml_collections.ConfigDict({'data': 1, 'fsdp': 8, 'tensor': 1})
  mesh = parallel.make_mesh(config.mesh)
  task, tx = DiffusionTask(config), optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  batch = jax.device_put(bench_train._synthetic_batch(config, 8), parallel.batch_sharding(mesh, ('data', 'fsdp')))

  def compiled():
    fn = step_lib.make_train_step(config, task, model, tx, mesh, shardings)
    return fn.lower(state, batch, None).compile()

  per_layer = compiled()
  assert per_layer.as_text().count('all-gather') > 0
  monkeypatch.setattr(step_lib, 'gather_plan', lambda gathered, stored, m: (gathered, {}))  # The old way.
  up_front = compiled()
  temp = lambda c: c.memory_analysis().temp_size_in_bytes
  assert temp(per_layer) < temp(up_front), (temp(per_layer), temp(up_front))
  # Same update either way (each compiled step consumes its own copy of the donated state).
  copy = lambda: jax.tree.map(lambda x: x.copy(), state)
  a, b = per_layer(copy(), batch, None)[0].params, up_front(copy(), batch, None)[0].params
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7), a, b)
