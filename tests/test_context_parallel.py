"""Context parallelism on 8 fake devices: the joint sequence split over a `context` mesh axis (Ulysses all-to-all in
attention) gives the unsharded model's losses and gradients, really is split, resumes across meshes with and
without the axis, and refuses sizes that do not divide before compiling anything."""

import os
import re
import tempfile

import jax
import ml_collections
import numpy as np
import pytest

import train_toy
from avdiff import config_lib, parallel
from avdiff.models import attention as attn_lib
from avdiff.models import tokens
from avdiff.train import loop, metrics as metrics_lib, optim, state as state_lib, step as step_lib
from avdiff.train.tasks import DiffusionTask

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
NO_CONTEXT = {'data': 1, 'fsdp': 1, 'context': 1, 'tensor': 1}
# 8 heads of 8 channels, so that heads split up to 8 ways; 80 tokens (64 video + 16 audio) in 4 video token steps.
# train_toy's configs/tiny.py base has av_time_bias > 0: the TimeBias is part of every comparison.
MODEL = {'model.width': 64, 'model.num_heads': 8}


def _config(shape, order='interleaved', **extra):
  c = train_toy.config(DATA_DIR, **MODEL, **{'model.sequence_order': order}, **extra)
  c.mesh.shape = ml_collections.ConfigDict(shape)
  return c


def _host_batch(batch_size=8):
  """Random clips of the toy layout: 0.8 s at 10 fps, 32x32 frames, 32 mel frames of 32 bands."""
  rng = np.random.default_rng(0)
  return {'video': rng.uniform(-1, 1, (batch_size, 8, 32, 32, 3)).astype(np.float32),
          'audio_mel': rng.normal(size=(batch_size, 32, 32)).astype(np.float32),
          'label': rng.integers(0, 8, batch_size).astype(np.int32)}


def _loss_and_grads(config, devices):
  """(loss, grads as numpy, compiled HLO text) of one loss + gradient evaluation, as the train step computes it."""
  mesh = parallel.make_mesh(config.mesh, devices)
  task, tx = DiffusionTask(config), optim.make_optimizer(config.train)
  model, _, shardings, state = state_lib.create(config, task, tx, mesh)
  grad_fn = step_lib.loss_and_grad(config, task, model, mesh, shardings.params)
  batch_sh = parallel.batch_sharding(mesh, config.mesh.data_axes)
  fn = jax.jit(lambda p, ms, b, r: grad_fn(p, ms, b, r, None), in_shardings=(shardings.params, None, batch_sh, None))
  args = (state.params, state.model_state, jax.device_put(_host_batch(), batch_sh), jax.random.PRNGKey(1))
  compiled = fn.lower(*args).compile()
  (loss, _), grads = compiled(*args)
  return float(loss), jax.device_get(grads), compiled.as_text()


@pytest.fixture(scope='module')
def reference():
  """The unsharded model on one device, per sequence order."""
  cache = {}

  def get(order):
    if order not in cache:
      cache[order] = _loss_and_grads(_config(NO_CONTEXT, order), jax.devices()[:1])
    return cache[order]

  return get


@pytest.fixture(scope='module')
def data_context_fsdp(reference):
  """data=2 x context=2 x fsdp=2, interleaved order."""
  return _loss_and_grads(_config({'data': 2, 'fsdp': 2, 'context': 2, 'tensor': 1}), jax.devices())


def _assert_same(got, want):
  # Same params, batch and noise (threefry is partitionable); only the order of float32 sums differs: attention
  # and softmax run on other devices over the same whole rows, but gradients of replicated weights are summed over
  # 2-8 token shards and batch shards instead of in one pass. Measured: losses within 3e-7 relative, gradients
  # within 1e-6 of each leaf's largest entry. 1e-5 leaves an order of magnitude for other CPUs; a real fault (a
  # token or head shard in the wrong place, a wrong TimeBias slope or rotary row, a missing reduction) is O(1e-2)
  # or more.
  (loss, grads, _), (loss1, grads1, _) = got, want
  assert np.isfinite(loss1)
  np.testing.assert_allclose(loss, loss1, rtol=1e-5)
  flat, flat1 = jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(grads1)
  assert len(flat) == len(flat1)
  for (path, g), g1 in zip(flat, flat1):
    scale = float(np.max(np.abs(g1)))
    assert np.max(np.abs(g - g1)) <= 1e-5 * scale + 1e-12, jax.tree_util.keystr(path)
  assert any(float(np.max(np.abs(g))) > 0 for g in flat1)  # The comparison is not of zeros only.


def test_data_context_fsdp_equals_unsharded(data_context_fsdp, reference):
  _assert_same(data_context_fsdp, reference('interleaved'))


@pytest.mark.slow  # Two more compilations (~10 s each idle).
@pytest.mark.parametrize('shape, order', [
    ({'data': 2, 'fsdp': 1, 'context': 4, 'tensor': 1}, 'interleaved'),
    ({'data': 1, 'fsdp': 1, 'context': 8, 'tensor': 1}, 'blocks'),  # 4 video token steps: interleaved needs c | 4.
    ({'data': 1, 'fsdp': 2, 'context': 2, 'tensor': 2}, 'interleaved'),  # Heads split over tensor, then context.
])
def test_larger_context_equals_unsharded(shape, order, reference):
  _assert_same(_loss_and_grads(_config(shape, order), jax.devices()), reference(order))


def test_sequence_is_split(data_context_fsdp):
  """In the compiled program (per-device shapes after partitioning) the blocks' MLP activations hold 40 of the 80
  tokens, never all of them, and attention swaps tokens for heads with all-to-alls between the 2 context devices."""
  hlo = data_context_fsdp[2]
  b, mlp = 8 // 4, 2 * 64  # Clips per device (data x fsdp = 4), model.mlp_ratio * width.
  assert re.search(rf'f32\[{b},40,{mlp}\]', hlo)  # [B / 4, N / 2, mlp]: the sequence split in two.
  assert not re.search(rf'f32\[{b},80,{mlp}\]', hlo)
  a2a = [line for line in hlo.splitlines() if ' all-to-all(' in line and 'shard_map/all_to_all' in line]
  # q, k, v (and the output) leave each device as [B / 4, N / 2, H / 2, Dh] blocks, one per context peer.
  assert a2a and all(re.search(rf'f32\[{b},40,4,8\]', line) for line in a2a)
  assert all('replica_groups={{0,1},{2,3},{4,5},{6,7}}' in line for line in a2a)


def test_default_mesh_has_no_sequence_split():
  for shape in ({'data': 8, 'fsdp': 1, 'context': 1, 'tensor': 1}, {'data': 2, 'fsdp': 2, 'tensor': 2}):  # 1 / absent.
    config = _config(shape)
    assert attn_lib.sequence_parallel(config, parallel.make_mesh(config.mesh)) is None
  mesh = parallel.make_mesh(_config({'tensor': 2, 'context': 2, 'fsdp': 1, 'data': -1}).mesh)
  assert tuple(mesh.axis_names) == ('data', 'fsdp', 'context', 'tensor')  # Context next to tensor, whatever order.


def test_local_kernel_without_context_axis_equals_auto():
  """SequenceParallel with no context axes (used by benchmarks.context_memory) runs the kernel on each device's clips
  in shard_map, no all-to-all: the same values as the partitioner's placement."""
  from avdiff.models import attention as attn_lib
  mesh = parallel.make_mesh(ml_collections.ConfigDict({'shape': {'data': 4, 'fsdp': 1, 'context': 1, 'tensor': 2}}))
  sp = attn_lib.SequenceParallel(mesh, ('data',), (), ('tensor',))
  q, k, v = (jax.random.normal(key, (4, 12, 4, 8)) for key in jax.random.split(jax.random.key(0), 3))
  times, groups = np.arange(12) * 0.1, np.arange(12) % 2
  bias = attn_lib.TimeBias(attn_lib.alibi_slopes(4, 5.0), times, times, groups, groups)
  got = jax.jit(lambda q, k, v: attn_lib.attention(q, k, v, 'chunked', bias, sp))(q, k, v)
  np.testing.assert_allclose(got, attn_lib.attention(q, k, v, 'chunked', bias), rtol=1e-5, atol=1e-6)


def test_interleaved_shards_cover_one_time_span():
  """With sequence_order='interleaved' and c dividing the video token steps, each device's video and audio tokens
  start and end at the same times (shared-clock positions and TimeBias rows are those of its tokens)."""
  config = train_toy.config(DATA_DIR, **{'model.sequence_order': 'interleaved', 'data.clip_seconds': 1.6})
  lay = config_lib.layout(config)
  tok = tokens.token_layout(lay)
  times = np.concatenate([tok.video_time, tok.audio_time])[tok.perm]
  for c in (2, 4, 8):
    for shard in np.split(np.arange(len(tok.perm)), c):
      v, a = times[shard][tok.modality[shard] == tokens.VIDEO], times[shard][tok.modality[shard] == tokens.AUDIO]
      span = lambda t, step: (t.min() - step / 2, t.max() + step / 2)
      assert np.allclose(span(v, lay.video_token_seconds), span(a, lay.audio_token_seconds))


@pytest.mark.parametrize('shape, extra, field', [
    # 0.6 s: 3 video token steps, 48 video + 12 audio = 60 tokens; 8 does not divide them.
    ({'data': 1, 'fsdp': 1, 'context': 8, 'tensor': 1}, {'data.clip_seconds': 0.6, 'model.sequence_order': 'blocks'},
     'does not divide the 60 tokens'),
    # 4 heads over tensor 2 x context 4 would be half a head per device.
    ({'data': 1, 'fsdp': 1, 'context': 4, 'tensor': 2}, {'model.num_heads': 4, 'model.width': 32},
     'model.num_heads=4'),
    ({'data': 1, 'fsdp': 1, 'context': 8, 'tensor': 1}, {'model.sequence_order': 'interleaved'},
     'video token steps'),
    ({'data': 4, 'fsdp': 1, 'context': 2, 'tensor': 1}, {'model.fusion': 'dual_tower', 'model.depth': 2},
     "model.fusion='joint'"),
])
def test_invalid_combinations_fail_before_compiling(shape, extra, field):
  config = train_toy.config(DATA_DIR, **{**MODEL, **extra})
  config.mesh.shape = ml_collections.ConfigDict(shape)
  with pytest.raises(config_lib.ConfigError, match=re.escape(field)):
    config_lib.validate(config, num_devices=8)
  # The train step checks too, for callers that build it without `validate`.
  with pytest.raises(config_lib.ConfigError, match=re.escape(field)):
    attn_lib.sequence_parallel(config, parallel.make_mesh(config.mesh))


@pytest.mark.slow  # Four train-step compilations (~15 s each idle).
def test_resume_across_context_parallelism(tmp_path):
  """Steps 1-2 without context parallelism, 3-4 with it (data 2 x fsdp 2 x context 2), 5-6 without again, each
  run resuming from the previous one's Orbax checkpoint, log the losses of one uninterrupted run."""
  plain = {'data': 8, 'fsdp': 1, 'context': 1, 'tensor': 1}
  split = {'data': 2, 'fsdp': 2, 'context': 2, 'tensor': 1}

  def train(workdir, shape, steps):
    config = _config(shape, **{'train.steps': steps, 'train.checkpoint_every': 2})
    return loop.train(config, str(workdir), DiffusionTask(config), progress=False)

  train(tmp_path / 'whole', plain, 6)
  for shape, steps in ((plain, 2), (split, 4), (plain, 6)):
    assert train(tmp_path / 'resumed', shape, steps)['step'] == steps
  whole, resumed = (metrics_lib.read_metrics(str(tmp_path / name)) for name in ('whole', 'resumed'))
  assert [r['step'] for r in resumed] == [1, 2, 3, 4, 5, 6]
  # Same float32 tolerance argument as _assert_same; Adam then amplifies ulp-level gradient differences a little
  # over the steps (see test_parallel_equivalence), still far below the O(1e-2) of a wrong restore.
  np.testing.assert_allclose([r['loss'] for r in resumed], [r['loss'] for r in whole], rtol=1e-4)
