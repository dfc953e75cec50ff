"""Input pipeline: batch contract, seeded order, exact resume, per-process slices, sharded global batches."""

import jax
import numpy as np
import pytest

from avdiff import config_lib
from avdiff.data import pipeline
from configs import tiny


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  c = tiny.get_config()
  c.data.data_dir = str(tmp_path_factory.mktemp('tfds'))
  c.data.num_train, c.data.num_validation, c.data.num_test = 12, 4, 6
  c.train.global_batch_size = 4
  return c


def _take(it, n):
  return [next(it) for _ in range(n)]


def _same(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('dataset', ['talking', 'impacts'])
def test_batch_contract(config, dataset):
  c = config.copy_and_resolve_references()
  c.data.dataset = dataset
  batch = next(pipeline.InputPipeline(c, 'train', with_waveform=True))
  d, b = c.data, c.train.global_batch_size
  frames = config_lib.num_frames(d)
  expected = {'video': ((b, frames, d.resolution, d.resolution, 3), np.uint8),
              'audio_mel': ((b, config_lib.num_mel_frames(d), d.n_mels), np.float32),
              'label': ((b,), np.int32), 'audio': ((b, config_lib.num_samples(d)), np.float32)}
  if dataset == 'talking':
    expected.update(mouth_open=((b, frames), np.float32), mouth_box=((b, 4), np.int32))
  else:
    expected.update(impact=((b, frames), np.float32))
  assert set(batch) == set(expected)
  for key, (shape, dtype) in expected.items():
    assert batch[key].shape == shape and batch[key].dtype == dtype, key
  assert -1.0 <= batch['audio_mel'].min() and batch['audio_mel'].max() <= 1.0
  assert np.abs(batch['audio']).max() <= 1.0


def test_deterministic_given_seed(config):
  a = _take(pipeline.InputPipeline(config, 'train'), 5)
  b = _take(pipeline.InputPipeline(config, 'train'), 5)
  c = _take(pipeline.InputPipeline(config, 'train', seed=1), 5)
  assert all(_same(x, y) for x, y in zip(a, b))
  assert not all(_same(x, y) for x, y in zip(a, c))


def test_epochs_are_fresh_permutations(config):
  batches = _take(pipeline.InputPipeline(config, 'train'), 6)  # 12 examples, batch 4: two epochs.
  clips = [v.tobytes() for batch in batches for v in batch['video']]
  first, second = clips[:12], clips[12:]
  assert len(set(first)) == 12 and set(first) == set(second)
  assert first != second


def test_resume_gives_exactly_the_next_batch(config):
  for consumed in (0, 2, 4):  # Before, within and past the first epoch boundary.
    reference = pipeline.InputPipeline(config, 'train')
    _take(reference, consumed)
    state = reference.get_state()
    assert isinstance(state, bytes)
    expected = _take(reference, 3)
    resumed = pipeline.InputPipeline(config, 'train')
    resumed.set_state(state)
    assert all(_same(x, y) for x, y in zip(expected, _take(resumed, 3))), consumed


def test_state_of_another_pipeline_is_rejected(config):
  state = pipeline.InputPipeline(config, 'train').get_state()
  with pytest.raises(ValueError, match=r'does not apply.*seed: 0 when saved, 3 now'):
    pipeline.InputPipeline(config, 'train', seed=3).set_state(state)
  with pytest.raises(ValueError, match='global_batch_size: 4 when saved, 2 now'):
    pipeline.InputPipeline(config, 'train', batch_size=2).set_state(state)


def test_position_moves_between_process_counts(config):
  """Elastic resume: a position saved by one process of a 2-process run continues in 1 process with the next
  global batch, and one saved by 1 process continues in each of 2 processes with its slice of that batch."""
  single = _take(pipeline.InputPipeline(config, 'train'), 5)
  two = pipeline.InputPipeline(config, 'train', process_index=1, process_count=2)
  _take(two, 2)
  one = pipeline.InputPipeline(config, 'train')
  one.set_state(two.get_state())
  assert all(_same(x, y) for x, y in zip(single[2:], _take(one, 3)))
  for p in range(2):
    part = pipeline.InputPipeline(config, 'train', process_index=p, process_count=2)
    part.set_state(one.get_state())  # After 5 global batches.
    got = _take(part, 1)[0]
    again = pipeline.InputPipeline(config, 'train')
    expected = _take(again, 6)[5]
    half = expected['video'].shape[0] // 2
    assert _same({k: v[p * half:(p + 1) * half] for k, v in expected.items()}, got)


def test_processes_load_disjoint_slices_of_the_same_global_batch(config):
  single = _take(pipeline.InputPipeline(config, 'train'), 4)
  parts = [_take(pipeline.InputPipeline(config, 'train', process_index=p, process_count=2), 4) for p in range(2)]
  for step, batch in enumerate(single):
    assert parts[0][step]['video'].shape[0] == 2
    joined = {k: np.concatenate([parts[0][step][k], parts[1][step][k]]) for k in batch}
    assert _same(batch, joined)
  with pytest.raises(ValueError, match='divisible'):
    pipeline.InputPipeline(config, 'train', process_count=3)


def test_eval_split_is_ordered_single_pass(config):
  run = lambda: list(pipeline.InputPipeline(config, 'test'))
  first, second = run(), run()
  assert len(first) == 1  # 6 examples, batch 4, remainder dropped.
  assert all(_same(x, y) for x, y in zip(first, second))
  two = list(pipeline.InputPipeline(config, 'test', batch_size=2))
  assert len(two) == 3 and pipeline.InputPipeline(config, 'test', batch_size=2).num_batches == 3
  np.testing.assert_array_equal(np.concatenate([b['video'] for b in two])[:4], first[0]['video'])


def test_splits_are_disjoint(config):
  seen = {}
  for split in ('train', 'validation', 'test'):
    batches = list(pipeline.InputPipeline(config, split, num_epochs=1, shuffle=False, batch_size=2))
    seen[split] = {v.tobytes() for b in batches for v in b['video']}
  assert not seen['train'] & seen['validation'] and not seen['train'] & seen['test']
  assert not seen['validation'] & seen['test']


def test_sharded_global_batch_on_fake_devices(config):
  assert jax.device_count() == 8
  batch = next(pipeline.InputPipeline(config, 'train', batch_size=8, with_waveform=True))
  mesh = jax.make_mesh((2, 4), ('data', 'fsdp'))
  arrays = pipeline.to_device(batch, mesh, ('data', 'fsdp'))
  for key, value in arrays.items():
    assert value.shape == batch[key].shape, key
    assert value.sharding.spec[0] == ('data', 'fsdp'), key
    assert len(value.addressable_shards) == 8 and value.addressable_shards[0].data.shape[0] == 1
  assert arrays['video'].dtype == np.float32 and arrays['label'].dtype == np.int32
  np.testing.assert_allclose(np.asarray(arrays['video']), batch['video'] / 127.5 - 1.0, atol=1e-6)
  assert float(arrays['video'].min()) >= -1.0 and float(arrays['video'].max()) <= 1.0
  np.testing.assert_array_equal(np.asarray(arrays['audio_mel']), batch['audio_mel'])
  # Only the data axis in the mesh: the batch is split 2 ways and replicated over the rest.
  data_only = pipeline.to_device(batch, jax.make_mesh((2, 4), ('data', 'tensor')), ('data', 'fsdp'))
  assert data_only['label'].sharding.spec[0] == 'data'
  assert data_only['label'].addressable_shards[0].data.shape[0] == 4


def test_same_batches_whatever_the_device_count(config):
  """The host stream ignores devices; global arrays on 8 or 2 devices hold the same values."""
  batch = next(pipeline.InputPipeline(config, 'train', batch_size=8))
  on_eight = pipeline.to_device(batch, jax.make_mesh((8,), ('data',)), ('data',))
  on_two = pipeline.to_device(batch, jax.sharding.Mesh(np.array(jax.devices()[:2]), ('data',)), ('data',))
  for key in batch:
    np.testing.assert_array_equal(np.asarray(on_eight[key]), np.asarray(on_two[key]))


@pytest.mark.slow  # Spawns worker processes (~15 s).
def test_worker_processes_keep_order_and_resume(config):
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  c = config.copy_and_resolve_references()
  c.data.worker_count = 2
  expected = _take(pipeline.InputPipeline(config, 'train'), 4)
  workers = pipeline.InputPipeline(c, 'train')
  got = _take(workers, 2)
  state = workers.get_state()
  workers.close()
  resumed = pipeline.InputPipeline(c, 'train')
  resumed.set_state(state)
  got += _take(resumed, 2)
  resumed.close()
  assert all(_same(x, y) for x, y in zip(expected, got))
  with pytest.raises(ValueError, match='worker_count: 2 when saved, 0 now'):
    pipeline.InputPipeline(config, 'train').set_state(state)
