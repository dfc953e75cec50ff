"""DiT: contract shapes, zero output at init, parameter counts, scan/order equivalences, sharding, overfitting."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from avdiff import config_lib
from avdiff.data import tokenizer
from avdiff.models import build_dit
from configs import tiny


def small_config(**model):
  """tiny.py with a 16x16, 1 s clip and a 2-block width-64 model: trains in seconds on one CPU core."""
  c = tiny.get_config()
  c.data.resolution = 16
  c.data.clip_seconds = 1.0
  c.data.n_mels = 16
  c.model.video_patch = (2, 4, 4)
  c.model.audio_patch = (8, 4)
  c.model.width = 64
  c.model.depth = 2
  c.model.num_heads = 4
  c.model.cross_attention_every = 1
  for k, v in model.items():
    if k.startswith('text_'):  # text_encoder='bytes' -> c.model.text.encoder
      c.model.text[k[len('text_'):]] = v
    else:
      c.model[k] = v
  c.model.text.width, c.model.text.depth, c.model.text.max_bytes = 32, 1, 16
  config_lib.validate(c)
  return c


def prompts(*texts):
  return jnp.asarray(tokenizer.tokenize(list(texts), 16))


def make_inputs(config, batch=2, seed=0):
  lay = config_lib.layout(config)
  kv, ka, kt = jax.random.split(jax.random.key(seed), 3)
  x = {'video': jax.random.normal(kv, (batch,) + lay.video_latent),
       'audio': jax.random.normal(ka, (batch,) + lay.audio_latent)}
  t = {'video': jax.random.uniform(kt, (batch,)), 'audio': jnp.linspace(0.1, 0.9, batch)}
  label = jnp.arange(batch, dtype=jnp.int32) % (config.model.num_classes + 1)
  return x, t, label


def perturbed(model, scale=0.02, seed=1):
  """The model with every parameter moved off its init (zero-init layers would hide most of the network)."""
  graphdef, state = nnx.split(model)
  leaves, treedef = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
  return nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))


def apply(model, x, t, label, text=None):
  graphdef, state = nnx.split(model)
  return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, x, t, label, text)


FUSIONS = [dict(fusion='joint'), dict(fusion='joint', modality_specific_weights=True), dict(fusion='dual_tower')]


@pytest.mark.parametrize('model_kw', FUSIONS + [dict(positions='learned'), dict(positions='rope_separate'),
                                                dict(sequence_order='interleaved', modality_specific_weights=True)])
def test_zero_at_init_and_contract_shapes(model_kw):
  c = small_config(**model_kw)
  x, t, label = make_inputs(c)
  out = apply(build_dit(c, nnx.Rngs(0)), x, t, label)
  assert set(out) == {'video', 'audio'}
  for k in x:
    assert out[k].shape == x[k].shape and out[k].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out[k]), 0.0)


def expected_params(c) -> int:
  """Parameter count from the config alone (independent of the model code)."""
  m = c.model
  lay = config_lib.layout(c)
  w, hid, d = m.width, int(m.width * m.mlp_ratio), m.depth
  pv = int(np.prod(m.video_patch)) * lay.video_latent[3]
  pa = int(np.prod(m.audio_patch)) * lay.audio_latent[2]
  dense = lambda i, o: i * o + o
  stream = dense(w, 6 * w) + dense(w, 3 * w) + dense(w, w) + dense(w, hid) + dense(hid, w)
  n = dense(pv, w) + dense(pa, w) + 2 * w  # Patch embeddings + modality vectors.
  n += dense(256, w) + dense(w, w) + (m.num_classes + 1) * w  # Timestep MLP + label table (with null class).
  n += dense(w, 2 * w) + dense(w, pv) + dense(w, 2 * w) + dense(w, pa)  # Final layers.
  if m.positions == 'learned':
    n += (lay.num_tokens) * w
  if m.fusion == 'joint':
    n += d * stream * (2 if m.modality_specific_weights else 1)
  else:
    cross = dense(w, 3 * w) + dense(w, w) + dense(w, 2 * w) + dense(w, w)
    n += 2 * d * stream + (d // m.cross_attention_every) * 2 * cross
  if c.diffusion.sync_loss_weight > 0:
    n += 2 * dense(w, 64)  # The sync loss heads.
  return n


@pytest.mark.parametrize('model_kw', FUSIONS + [dict(positions='learned')])
def test_param_count_matches_config(model_kw):
  c = small_config(**model_kw)
  state = nnx.state(nnx.eval_shape(lambda: build_dit(c, nnx.Rngs(0))), nnx.Param)
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == expected_params(c)


def test_tiny_config_param_count():
  c = tiny.get_config()
  state = nnx.state(nnx.eval_shape(lambda: build_dit(c, nnx.Rngs(0))), nnx.Param)
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == expected_params(c)


def test_every_param_has_logical_names_and_scanned_layers_axis():
  c = small_config(fusion='dual_tower')
  model = nnx.eval_shape(lambda: build_dit(c, nnx.Rngs(0)))
  state = nnx.state(model, nnx.Param)
  specs = nnx.get_partition_spec(state)
  flat = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))[0]
  shapes = dict(jax.tree_util.tree_flatten_with_path(state)[0])
  assert flat
  for path, spec in flat:
    assert isinstance(spec, jax.sharding.PartitionSpec), path
    name = jax.tree_util.keystr(path)
    if 'blocks' in name:
      assert spec[0] == 'layers', name
  assert any('embed' in tuple(s) for _, s in flat) and any('heads' in tuple(s) for _, s in flat)
  assert {s.shape[0] for p, s in shapes.items() if 'video_blocks' in jax.tree_util.keystr(p)} == {c.model.depth}


@pytest.mark.parametrize('model_kw', FUSIONS)
def test_scan_matches_unrolled(model_kw):
  c = small_config(**model_kw)
  x, t, label = make_inputs(c)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  out_scan = apply(model, x, t, label)
  model.scan = False
  out_loop = apply(model, x, t, label)
  assert float(jnp.abs(out_scan['video']).max()) > 1e-3
  for k in x:
    np.testing.assert_allclose(out_scan[k], out_loop[k], atol=1e-4)


@pytest.mark.parametrize('mss', [False, True])
def test_interleaved_order_is_a_permutation_of_blocks(mss):
  """Full attention with per-token positions is permutation-equivariant: the two orders give the same output."""
  cb = small_config(modality_specific_weights=mss)
  ci = small_config(modality_specific_weights=mss, sequence_order='interleaved')
  x, t, label = make_inputs(cb)
  mb = perturbed(build_dit(cb, nnx.Rngs(0)))
  mi = build_dit(ci, nnx.Rngs(0))
  nnx.update(mi, nnx.state(mb))
  ob, oi = apply(mb, x, t, label), apply(mi, x, t, label)
  for k in x:
    np.testing.assert_allclose(ob[k], oi[k], atol=1e-4)


def test_each_modality_follows_its_own_timestep():
  c = small_config()
  x, t, label = make_inputs(c)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  out = apply(model, x, t, label)
  t2 = dict(t, audio=t['audio'] * 0.5)
  out2 = apply(model, x, t2, label)
  assert float(jnp.abs(out['audio'] - out2['audio']).max()) > 1e-4
  # Video tokens still see the audio tokens through attention, but their own modulation is unchanged: the video
  # change is second order, the audio change first order.
  assert float(jnp.abs(out['video'] - out2['video']).mean()) < float(jnp.abs(out['audio'] - out2['audio']).mean())


@pytest.mark.parametrize('model_kw', [dict(fusion='joint', modality_specific_weights=True),
                                      dict(fusion='joint', text_fusion='cross_attention'),
                                      dict(fusion='dual_tower')])
def test_prompt_changes_the_prediction(model_kw):
  """A text model's prediction depends on the prompt (tokens in the sequence or cross-attention), is zero at init,
  and is the same under scan and the unrolled loop."""
  c = small_config(text_encoder='bytes', **model_kw)
  x, t, label = make_inputs(c)
  text = prompts('a red round face', 'a blue long face')
  out0 = apply(build_dit(c, nnx.Rngs(0)), x, t, label, text)
  np.testing.assert_array_equal(np.asarray(out0['video']), 0.0)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  o1, o2 = apply(model, x, t, label, text), apply(model, x, t, label, prompts('a green face', ''))
  assert o1['video'].shape == x['video'].shape
  for k in x:
    assert float(jnp.abs(o1[k] - o2[k]).max()) > 1e-4
  model.scan = False
  np.testing.assert_allclose(apply(model, x, t, label, text)['audio'], o1['audio'], atol=1e-4)


def test_text_model_needs_a_prompt_and_a_label_model_takes_none():
  c = small_config(text_encoder='bytes')
  x, t, label = make_inputs(c)
  with pytest.raises(ValueError, match='pass a prompt'):
    build_dit(c, nnx.Rngs(0))(x, t, label)
  with pytest.raises(ValueError, match='no text encoder'):
    build_dit(small_config(), nnx.Rngs(0))(x, t, label, prompts('a', 'b'))
  bad = small_config()
  bad.model.fusion, bad.model.text.encoder, bad.model.text.fusion = 'dual_tower', 'bytes', 'cross_attention'
  with pytest.raises(config_lib.ConfigError, match='cross_attention'):
    config_lib.validate(bad)


def test_sharded_forward_on_8_devices():
  """Parameters placed by config.mesh.axis_rules on a (data 2, fsdp 2, tensor 2) mesh; output matches 1 device."""
  c = small_config(fusion='dual_tower')
  c.mesh.shape = {'data': 2, 'fsdp': 2, 'tensor': 2}
  mesh = jax.make_mesh((2, 2, 2), ('data', 'fsdp', 'tensor'), axis_types=(jax.sharding.AxisType.Auto,) * 3)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  rules = tuple(c.mesh.axis_rules)
  shardings = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, nn.logical_to_mesh_axes(tuple(s), rules)),
                           nnx.get_partition_spec(state),
                           is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
  x, t, label = make_inputs(c, batch=4)
  expected = apply(model, x, t, label)
  sharded_state = jax.device_put(state, shardings)
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(('data', 'fsdp')))
  x, t, label = jax.device_put((x, t, label), batch_sharding)
  out = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(sharded_state, x, t, label)
  for k in expected:
    np.testing.assert_allclose(out[k], expected[k], atol=1e-4)


def overfit(config, steps=60):
  """Flow matching on one fixed batch (fixed noise and times); returns (first loss, last loss)."""
  x, _, label = make_inputs(config)
  # Smooth, structured clean data (a ramp plus a per-clip offset) so that the batch can be memorized.
  x0 = {k: jnp.tanh(jnp.cumsum(v, axis=1) / 4.0) for k, v in x.items()}
  noise = make_inputs(config, seed=5)[0]
  t = {'video': jnp.array([0.3, 0.6]), 'audio': jnp.array([0.5, 0.4])}
  bshape = lambda tm, v: tm.reshape((-1,) + (1,) * (v.ndim - 1))
  xt = {k: (1 - bshape(t[k], x0[k])) * x0[k] + bshape(t[k], x0[k]) * noise[k] for k in x0}
  target = {k: noise[k] - x0[k] for k in x0}
  model = build_dit(config, nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  def loss_fn(p):
    out = nnx.merge(graphdef, p)(xt, t, label)
    return sum(jnp.mean(jnp.square(out[k] - target[k])) for k in out)

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = opt.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  losses = []
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  return losses[0], losses[-1]


@pytest.mark.parametrize('model_kw', FUSIONS)
def test_overfits_one_batch(model_kw):
  first, last = overfit(small_config(**model_kw))
  assert last < first / 10, (first, last)


def test_remat_policies_give_the_same_gradients():
  c = small_config()
  x, t, label = make_inputs(c)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  graphdef, params = nnx.split(model)

  def grads(remat):
    def loss(p):
      m = nnx.merge(graphdef, p)
      m.remat = remat
      return sum(jnp.sum(jnp.square(v)) for v in m(x, t, label).values())
    return jax.jit(jax.grad(loss))(params)

  ref = grads('none')
  for remat in ('full', 'dots', 'projections'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), ref, grads(remat))


def test_bf16_compute_keeps_fp32_params_and_output():
  c = small_config(dtype='bfloat16', attention='xla')
  x, t, label = make_inputs(c)
  model = perturbed(build_dit(c, nnx.Rngs(0)))
  assert {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype(jnp.float32)}
  out = apply(model, x, t, label)
  c32 = small_config(attention='xla')
  m32 = build_dit(c32, nnx.Rngs(0))
  nnx.update(m32, nnx.state(model))
  ref = apply(m32, x, t, label)
  for k in x:
    assert out[k].dtype == jnp.float32
    err = float(jnp.abs(out[k] - ref[k]).max())
    assert 0 < err < 0.05 * float(jnp.abs(ref[k]).max()) + 1e-3


@pytest.mark.parametrize('fusion', ['joint', 'dual_tower'])
def test_av_time_bias_changes_only_cross_modal_attention(fusion):
  """model.av_time_bias adds no parameters, changes the prediction, and gives the same output on the xla and chunked
  attention backends (with text tokens, which have no time and get no bias)."""
  text = prompts('a red face', 'two syllables')
  plain = small_config(fusion=fusion, text_encoder='bytes')
  biased = small_config(fusion=fusion, text_encoder='bytes', av_time_bias=40.0)
  x, t, label = make_inputs(plain)
  model = perturbed(build_dit(plain, nnx.Rngs(0)), scale=0.2)
  graphdef, state = nnx.split(model)
  assert jax.tree.structure(state) == jax.tree.structure(nnx.split(build_dit(biased, nnx.Rngs(0)))[1])
  outs = {}
  for kind in ('xla', 'chunked'):
    biased.model.attention = kind
    outs[kind] = apply(nnx.merge(nnx.split(build_dit(biased, nnx.Rngs(0)))[0], state), x, t, label, text)
  base = apply(model, x, t, label, text)
  for k in ('video', 'audio'):
    np.testing.assert_allclose(np.asarray(outs['chunked'][k]), np.asarray(outs['xla'][k]), rtol=2e-2, atol=2e-3)
    assert np.abs(np.asarray(outs['xla'][k]) - np.asarray(base[k])).max() > 1e-3


def test_sync_heads_add_embeddings_and_change_nothing_else():
  """diffusion.sync_loss_weight > 0 adds the two sync heads after every other parameter (same initial values, same
  prediction) and returns unit-norm embeddings [B, video token steps, SYNC_DIM]; without the heads, asking for
  embeddings is an error."""
  plain = small_config()
  plain.diffusion.sync_loss_weight = 0.0
  synced = small_config()
  synced.diffusion.sync_loss_weight = 0.1
  x, t, label = make_inputs(plain)
  base = nnx.to_pure_dict(nnx.split(build_dit(plain, nnx.Rngs(0)))[1])
  model = build_dit(synced, nnx.Rngs(0))
  state = nnx.to_pure_dict(nnx.split(model)[1])
  assert set(state) - set(base) == {'sync_video', 'sync_audio'}
  jax.tree.map(np.testing.assert_array_equal, {k: state[k] for k in base}, base)
  pred, emb = model(x, t, label, sync_embeddings=True)
  ref = build_dit(plain, nnx.Rngs(0))(x, t, label)
  for k in ('video', 'audio'):
    np.testing.assert_array_equal(np.asarray(pred[k]), np.asarray(ref[k]))
    assert emb[k].shape == (2, config_lib.layout(plain).video_grid[0], 64)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(emb[k]), axis=-1), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match='sync_loss_weight'):
    build_dit(plain, nnx.Rngs(0))(x, t, label, sync_embeddings=True)
