"""Attention backends agree, and the chunked (CPU) backend's custom backward is exact and memory-light."""

import jax
import jax.test_util
import jax.numpy as jnp
import numpy as np
import pytest

from avdiff.models import attention as attn_lib
from avdiff.models import stacks


def _inputs(b=2, nq=40, nk=24, h=3, d=16, dtype=jnp.float32, seed=0):
  kq, kk, kv, kw = jax.random.split(jax.random.key(seed), 4)
  q = jax.random.normal(kq, (b, nq, h, d))
  k = 2.0 * jax.random.normal(kk, (b, nk, h, d))  # Peaked softmax: exercises the max subtraction.
  v = jax.random.normal(kv, (b, nk, h, d))
  w = jax.random.normal(kw, (b, nq, h, d))  # Random cotangent.
  return q.astype(dtype), k.astype(dtype), v.astype(dtype), w


def _loss(kind):
  return lambda q, k, v, w: jnp.sum(attn_lib.attention(q, k, v, kind).astype(jnp.float32) * w)


@pytest.mark.parametrize('nq,nk', [(40, 40), (40, 24), (7, 33)])
def test_chunked_matches_xla_values_and_gradients(nq, nk):
  q, k, v, w = _inputs(nq=nq, nk=nk)
  np.testing.assert_allclose(attn_lib.attention(q, k, v, 'chunked'), attn_lib.attention(q, k, v, 'xla'),
                             rtol=1e-5, atol=1e-5)
  got = jax.grad(_loss('chunked'), (0, 1, 2))(q, k, v, w)
  want = jax.grad(_loss('xla'), (0, 1, 2))(q, k, v, w)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_chunked_gradients_match_finite_differences():
  q, k, v, _ = _inputs(b=1, nq=5, nk=6, h=2, d=4)
  # float32 central differences: eps 1e-2 keeps truncation and rounding errors both near 1e-3.
  jax.test_util.check_grads(lambda q, k, v: attn_lib.attention(q, k, v, 'chunked'), (q, k, v), order=1,
                            modes=('rev',), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_chunked_bf16_gradients_keep_dtype_and_track_fp32():
  q, k, v, w = _inputs()
  q16, k16, v16 = (x.astype(jnp.bfloat16) for x in (q, k, v))
  got = jax.grad(_loss('chunked'), (0, 1, 2))(q16, k16, v16, w)
  want = jax.grad(_loss('xla'), (0, 1, 2))(q, k, v, w)
  for g, r in zip(got, want):
    assert g.dtype == jnp.bfloat16
    # bf16 has an 8-bit mantissa: errors of a few 1e-2 relative to the gradient scale are expected.
    assert float(jnp.max(jnp.abs(g.astype(jnp.float32) - r))) < 0.05 * float(jnp.max(jnp.abs(r)))


def test_chunked_backward_keeps_no_quadratic_residuals():
  """The backward recomputes each head's probabilities: temporaries stay far below B*H*N^2 floats."""
  b, n, h, d = 4, 1024, 8, 32
  q, k, v = (jax.ShapeDtypeStruct((b, n, h, d), jnp.float32) for _ in range(3))
  grad = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attn_lib.attention(q, k, v, 'chunked')), (0, 1, 2)))
  temp = grad.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes
  stacked_scores = b * h * n * n * 4  # 128 MiB: what storing every head's probabilities would take.
  assert temp < stacked_scores / 4, (temp, stacked_scores)


def _count_head_loops(jaxpr) -> int:
  """Number of lax.map loops over attention heads (scans) anywhere in a jaxpr."""
  count = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'scan':
      count += 1
    for sub in jax.core.jaxprs_in_params(eqn.params):
      count += _count_head_loops(sub)
  return count


def test_projections_remat_saves_attention_residuals():
  """Under model.remat='projections' the backward pass does not re-run the attention forward."""
  q, k, v, w = _inputs()

  def loss(policy):
    f = jax.checkpoint(lambda q, k, v: attn_lib.attention(q, k, v, 'chunked'), policy=stacks.REMAT_POLICIES[policy])
    return lambda q, k, v: jnp.sum(f(q, k, v) * w)

  loops = {p: _count_head_loops(jax.make_jaxpr(jax.grad(loss(p), (0, 1, 2)))(q, k, v).jaxpr)
           for p in ('projections', 'full')}
  assert loops == {'projections': 2, 'full': 3}, loops  # forward + backward; 'full' also recomputes the forward.


def test_time_bias_matches_xla_values_and_gradients():
  """A TimeBias gives the chunked form the values and gradients of XLA's attention with the [H, Nq, Nk] logits."""
  nv, na, h, d = 6, 5, 3, 8
  times = np.concatenate([np.arange(nv) * 0.1, np.arange(na) * 0.12]).astype(np.float32)
  groups = np.asarray([0] * nv + [1] * na)
  bias = attn_lib.TimeBias(attn_lib.alibi_slopes(h, 20.0), times, times, groups, groups)
  logits = bias.logits()
  assert logits.shape == (h, nv + na, nv + na) and logits[:, :nv, :nv].max() == 0  # No bias within a modality.
  assert logits[0, 0, nv + 1] == pytest.approx(-20.0 * 0.12)  # Video at 0 s, audio at 0.12 s, steepest head.
  keys = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(key, (2, nv + na, h, d)) for key in keys)
  loss = lambda kind: lambda q, k, v: jnp.sum(jnp.sin(attn_lib.attention(q, k, v, kind, bias)))
  for want, got in zip(jax.value_and_grad(loss('xla'), argnums=(0, 1, 2))(q, k, v),
                       jax.value_and_grad(loss('chunked'), argnums=(0, 1, 2))(q, k, v)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
  unbiased = attn_lib.attention(q, k, v, 'chunked')
  assert not np.allclose(np.asarray(unbiased), np.asarray(attn_lib.attention(q, k, v, "chunked", bias)))


def test_chunked_query_blocks_match_xla(monkeypatch):
  """Long sequences run QUERY_BLOCK queries at a time (here 8 of 40 in 5 blocks, and 7 uneven queries in 7 blocks
  of 1): same values and gradients, with and without a TimeBias."""
  monkeypatch.setattr(attn_lib, 'QUERY_BLOCK', 8)
  assert attn_lib._query_blocks(40) == 5 and attn_lib._query_blocks(7) == 1 and attn_lib._query_blocks(9) == 3
  for nq in (40, 9):
    q, k, v, w = _inputs(nq=nq, nk=24)
    times = np.arange(max(nq, 24)) * 0.1
    groups = np.arange(max(nq, 24)) % 2
    bias = attn_lib.TimeBias(attn_lib.alibi_slopes(3, 5.0), times[:nq], times[:24], groups[:nq], groups[:24])
    for b in (None, bias):
      loss = lambda kind: lambda q, k, v: jnp.sum(attn_lib.attention(q, k, v, kind, b).astype(jnp.float32) * w)
      for want, got in zip(jax.tree.leaves(jax.value_and_grad(loss('xla'), argnums=(0, 1, 2))(q, k, v)),
                           jax.tree.leaves(jax.value_and_grad(loss('chunked'), argnums=(0, 1, 2))(q, k, v))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
