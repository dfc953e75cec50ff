"""Checkpoints without compiling a train step: state save / restore into another mesh layout, iterator states,
interrupted saves ignored, shape changes rejected with the changed config fields named, EMA params for inference."""

import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import parallel
from avdiff import checkpoint
from avdiff import sampling
from avdiff.train import optim, state as state_lib
from avdiff.train.tasks import DiffusionTask

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


def _config(**mesh):
  config = train_toy.config(DATA_DIR)
  config.mesh.shape = ml_collections.ConfigDict(mesh or {'data': 2, 'fsdp': 2, 'tensor': 2})
  return config


def _create(config):
  mesh = parallel.make_mesh(config.mesh)
  tx = optim.make_optimizer(config.train)
  model, abstract, shardings, state = state_lib.create(config, DiffusionTask(config), tx, mesh)
  return model, abstract, shardings, state


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ckpt'))
  config = _config()
  model, abstract, shardings, state = _create(config)
  # Distinct EMA params and a non-zero step, so restores can be told apart.
  state = state.replace(step=jnp.asarray(3, jnp.int32),
                        ema_params=jax.tree.map(lambda x: x * 0.5 + 1.0, state.ema_params))
  manager = checkpoint.make_manager(workdir, config.train)
  checkpoint.save(manager, 3, state, b'{"iterator": 3}', config)
  manager.wait_until_finished()
  manager.close()
  with open(os.path.join(workdir, checkpoint.CONFIG_FILE), 'w') as f:
    f.write(checkpoint.config_to_json(config))
  return workdir, config, model, state


def test_restore_into_another_mesh_layout(saved):
  workdir, _, _, state = saved
  config = _config(data=1, fsdp=4, tensor=2)
  model, abstract, shardings, _ = state_lib.create(config, DiffusionTask(config), optim.make_optimizer(config.train),
                                                   parallel.make_mesh(config.mesh), materialize=False)
  manager = checkpoint.make_manager(workdir, config.train)
  assert manager.latest_step() == 3
  checkpoint.check_shapes(manager, 3, model.abstract_params)
  restored, data, saved_config = checkpoint.restore(manager, 3, abstract, shardings)
  manager.close()
  assert int(restored.step) == 3 and data == {'0': '{"iterator": 3}'}
  assert saved_config['model']['width'] == 32
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  qkv = restored.params['blocks']['streams'][0]['qkv']['kernel']
  assert qkv.sharding.spec == jax.sharding.PartitionSpec(None, 'fsdp', None, 'tensor', None)
  assert qkv.addressable_shards[0].data.shape[1] == qkv.shape[1] // 4  # Now split 4 ways over fsdp.


def test_interrupted_save_is_never_picked_up(saved):
  workdir = saved[0]
  # What a save killed before Orbax's final rename leaves behind.
  os.makedirs(os.path.join(workdir, 'checkpoints', '7.orbax-checkpoint-tmp-1234', 'state'))
  assert checkpoint.latest_step(workdir) == 3
  manager = checkpoint.make_manager(workdir, read_only=True)
  assert manager.all_steps() == [3]
  manager.close()


def test_changed_model_shapes_raise_naming_the_fields(saved):
  workdir, config, _, _ = saved
  changed = config.copy_and_resolve_references()
  changed.model.width = 64
  changed.model.video_patch = (2, 4, 4)
  model = state_lib.abstract_model(changed, DiffusionTask(changed))
  manager = checkpoint.make_manager(workdir, read_only=True)
  with pytest.raises(checkpoint.ShapeMismatchError) as err:
    checkpoint.check_shapes(manager, 3, model.abstract_params, checkpoint.load_config(workdir), changed)
  manager.close()
  message = str(err.value)
  assert 'model.width: 32 -> 64' in message and 'model.video_patch: (2, 8, 8) -> (2, 4, 4)' in message
  assert 'qkv/kernel' in message


def test_ema_params_for_inference(saved):
  workdir, _, _, state = saved
  model = sampling.load_model(workdir)
  config, dit = model.config, model.dit
  assert config.model.video_patch == (2, 8, 8) and config.mesh.shape.tensor == 2
  restored = nnx.to_pure_dict(nnx.state(dit, nnx.Param))
  for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  raw = nnx.to_pure_dict(nnx.state(sampling.load_model(workdir, config, params='raw').dit, nnx.Param))
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(raw)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_config_json_round_trip():
  config = _config()
  back = checkpoint.config_from_json(checkpoint.config_to_json(config))
  assert back.model.video_patch == (2, 8, 8) and back.mesh.axis_rules == config.mesh.axis_rules
  assert back.to_dict() == config.to_dict()
