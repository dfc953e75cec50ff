"""Multi-head dot-product attention with a backend switch: XLA, cuDNN flash attention, or a CPU-friendly chunked form.

All take q [B, Nq, H, Dh], k / v [B, Nk, H, Dh] and return [B, Nq, H, Dh]; full (bidirectional) attention, no mask,
optionally with a `TimeBias` added to the logits (the chunked form computes it per head, never [H, Nq, Nk] at once).

Context parallelism (`SequenceParallel`, mesh axis 'context'): tokens are split over devices along the sequence, and
attention trades that split for a split over heads with one all-to-all each for q, k, v and the output (DeepSpeed
Ulysses, Jacobs et al. 2023), so each device runs the unchanged kernel above over the whole sequence for H / c of
the heads. Ulysses rather than ring attention (benchmarks/bench_context.py, table in benchmarks/README.md):
  * bytes on the interconnect: per device and attention layer the all-to-alls send 4 (c - 1) / c^2 of the
    [B, N, H, Dh] activations, a ring 2 (c - 1) / c: c / 2 times more (measured: equal at c = 2, 2x at 4, 4x at 8);
  * the local kernel stays whatever `kind` says (cuDNN flash attention on GPU, O(N) memory), and the TimeBias
    sees every query and key at its global position; a ring needs its own blockwise kernel and per-block bias
    offsets to get either;
  * on the fake CPU devices the ring's [N / c, N / c] blocks run faster (cache-sized) than Ulysses' whole-sequence
    XLA scores (0.4x the time at c = 8, 2048 tokens): a cache effect of the CPU kernel, not the interconnect, and one a
    flash kernel, blockwise itself, takes away.
Its limit is c <= heads / tensor: more context devices than that need a ring (or a hybrid).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.sharding import PartitionSpec as P

from avdiff import config_lib


def resolve(kind: str, dtype) -> str:
  """'auto' -> 'cudnn' on GPU for half-precision inputs, 'chunked' on CPU, else 'xla'."""
  if kind != 'auto':
    return kind
  platform = jax.default_backend()
  if platform == 'gpu' and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return 'cudnn'
  if platform == 'cpu':
    return 'chunked'
  return 'xla'


@dataclasses.dataclass(frozen=True)
class TimeBias:
  """Additive attention logits -slope[h] * |t_q - t_k| (t in seconds) between a query and a key of different
  groups (video and audio tokens); 0 within a group and for tokens without a time (NaN, e.g. text).

  With ALiBi's geometric slopes, steep heads attend across modalities to what happens at the same moment and
  shallow heads stay global: a prior that sound and picture at one time belong together, which the shared rotary
  clock leaves to be discovered. All fields are static numpy (part of the compiled program).
  """
  slopes: np.ndarray  # [H] logits per second of |time difference| (a traced [H / c] inside `_ulysses`).
  time_q: np.ndarray  # [Nq] seconds, NaN for no time.
  time_k: np.ndarray  # [Nk]
  group_q: np.ndarray  # [Nq] int (modality)
  group_k: np.ndarray  # [Nk]

  def distance(self) -> np.ndarray:
    """[Nq, Nk] float32: |t_q - t_k| seconds between groups, 0 otherwise."""
    d = np.abs(self.time_q[:, None] - self.time_k[None, :])
    d = np.where(self.group_q[:, None] != self.group_k[None, :], d, 0.0)
    return np.nan_to_num(d, nan=0.0).astype(np.float32)

  def logits(self) -> np.ndarray:
    """[H, Nq, Nk] float32 bias of every head."""
    return -self.slopes.astype(np.float32)[:, None, None] * self.distance()[None]


@dataclasses.dataclass(frozen=True)
class SequenceParallel:
  """Where a joint token sequence [B, N, ...] lives on the mesh: batch over `batch`, tokens over `context`, heads
  over `heads` (tensor parallelism). Built by the train step from config.mesh.axis_rules ('batch', 'length', 'heads');
  sizes are checked up front by `config_lib.check_context_parallel`."""
  mesh: jax.sharding.Mesh
  batch: tuple  # Mesh axes of the batch dimension.
  context: tuple  # Mesh axes the sequence is split over; () runs the kernel per device with the sequence whole.
  heads: tuple  # Mesh axes the heads are split over outside attention.

  @property
  def size(self) -> int:
    return int(np.prod([self.mesh.shape[a] for a in self.context]))

  def _axes(self, axes: tuple):
    return None if not axes else axes[0] if len(axes) == 1 else axes

  def tokens(self) -> jax.sharding.NamedSharding:
    """Sharding of [B, N, C] tokens: batch and sequence split, channels whole."""
    return jax.sharding.NamedSharding(self.mesh, P(self._axes(self.batch), self._axes(self.context), None))

  def constrain(self, x: jax.Array) -> jax.Array:
    """Keeps the [B, N, C] residual stream split along the sequence, so norms, modulation and MLPs (all per token)
    run on each device's N / c tokens."""
    return jax.lax.with_sharding_constraint(x, self.tokens())

  def check(self, num_tokens: int, num_heads: int) -> None:
    """ValueError unless the sequence and the heads split evenly (what config_lib.validate checks for a run)."""
    heads = int(np.prod([self.mesh.shape[a] for a in self.heads]))
    if num_tokens % self.size or num_heads % (self.size * heads):
      raise ValueError(f'context parallelism over {self.context} ({self.size} devices) needs the {num_tokens} tokens '
                       f'divisible by {self.size} and the {num_heads} heads by {self.size} x {heads} (tensor)')


def sequence_parallel(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> Optional[SequenceParallel]:
  """`SequenceParallel` for the model when config.mesh.axis_rules map 'length' to mesh axes of more than one
  device (context parallelism), else None. Raises config_lib.ConfigError (before anything compiles) when the
  sequence or the heads do not split evenly over them."""
  shape = dict(mesh.shape)
  if config_lib.check_context_parallel(config, shape) == 1:
    return None
  rules = config.mesh.axis_rules
  context = config_lib.rule_axes(rules, 'length', shape)
  heads = tuple(a for a in config_lib.rule_axes(rules, 'heads', shape) if a not in context)
  batch = tuple(a for a in config.mesh.data_axes if a in shape)
  return SequenceParallel(mesh, batch, context, heads)


def _ulysses(q, k, v, kind: str, bias: Optional['TimeBias'], sp: SequenceParallel):
  """`attention` on q / k / v [B, N, H, Dh] split over sp.context along N: all-to-all to the whole sequence for
  H / c heads, the kernel, all-to-all back. Each device then holds heads block (tensor index, context index), so
  the TimeBias slopes enter split over (tensor, context) in that order; its [N, N] distances are global. With
  sp.context = () there is no all-to-all: the kernel runs on each device's batch and heads as they lie."""
  ctx = sp._axes(sp.context)
  spec = P(sp._axes(sp.batch), ctx, sp._axes(sp.heads), None)
  to_heads = lambda x: jax.lax.all_to_all(x, ctx, split_axis=2, concat_axis=1, tiled=True) if ctx else x
  to_tokens = lambda x: jax.lax.all_to_all(x, ctx, split_axis=1, concat_axis=2, tiled=True) if ctx else x

  def local(q, k, v, *slopes):
    local_bias = dataclasses.replace(bias, slopes=slopes[0]) if slopes else None
    return to_tokens(attention(to_heads(q), to_heads(k), to_heads(v), kind, local_bias))

  args, specs = (q, k, v), (spec,) * 3
  if bias is not None:
    args += (jnp.asarray(bias.slopes, jnp.float32),)
    specs += (P(sp.heads + sp.context),)
  return jax.shard_map(local, mesh=sp.mesh, in_specs=specs, out_specs=spec)(*args)


def alibi_slopes(heads: int, steepest: float) -> np.ndarray:
  """[heads] float32: steepest * 2^(-8 h / heads), ALiBi's geometric sequence (Press et al. 2022) scaled."""
  return (steepest * 2.0 ** (-8.0 * np.arange(heads) / heads)).astype(np.float32)


def _scores(q, k, slope=None, distance=None):
  """[Nq, Dh] x [Nk, Dh] -> scaled float32 logits [Nq, Nk], minus slope * distance [Nq, Nk] when given."""
  s = jnp.dot(q, k.T, preferred_element_type=jnp.float32) * (q.shape[-1] ** -0.5)
  return s if slope is None else s - slope * distance


def _forward_one(q, k, v, slope=None, distance=None):
  """One head: (output [Nq, Dh], log-sum-exp of the logits [Nq] in float32)."""
  s = _scores(q, k, slope, distance)
  m = jax.lax.stop_gradient(s.max(-1, keepdims=True))
  p = jnp.exp(s - m)
  l = p.sum(-1, keepdims=True)
  o = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32) / l
  return o.astype(v.dtype), (m + jnp.log(l))[:, 0]


# Most queries per step of the chunked kernel: a step holds [QUERY_BLOCK, Nk] float32 scores (and as many
# probabilities), 0.8 GiB at 50k keys, instead of [Nq, Nk] (10 GiB at 50k). Clips of up to 4096 tokens (the CPU
# configs: hundreds) run in one block per head, as before; pod_1b's 4352 in two (on GPU it uses cuDNN anyway).
QUERY_BLOCK = 4096


def _query_blocks(nq: int) -> int:
  """How many equal blocks of at most QUERY_BLOCK queries the chunked kernel splits nq queries into."""
  nb = -(-nq // QUERY_BLOCK)
  while nq % nb:
    nb += 1
  return nb


def _forward_head(q, k, v, slope=None, distance=None):
  """`_forward_one` of one head, query block after query block (softmax rows are independent)."""
  nb = _query_blocks(q.shape[0])
  if nb == 1:
    return _forward_one(q, k, v, slope, distance)
  blocks = q.reshape(nb, -1, q.shape[-1]), None if distance is None else distance.reshape(nb, -1, distance.shape[-1])
  out, lse = jax.lax.map(lambda a: _forward_one(a[0], k, v, slope, a[1]), blocks)
  return out.reshape(q.shape), lse.reshape(-1)


def _backward_block(qi, ki, vi, oi, lse_i, do, slope, distance):
  """Gradients (dq, dk, dv in float32) of one head's attention from queries qi [Nq, Dh] (or a block of them) with
  their outputs, log-sum-exps and output gradients, to all keys / values ki, vi [Nk, Dh]."""
  p = jnp.exp(_scores(qi, ki, slope, distance) - lse_i[:, None])  # [Nq, Nk] float32
  do32 = do.astype(jnp.float32)
  dv = jnp.dot(p.T.astype(do.dtype), do, preferred_element_type=jnp.float32)
  dp = jnp.dot(do, vi.T, preferred_element_type=jnp.float32)
  delta = jnp.sum(do32 * oi.astype(jnp.float32), axis=-1, keepdims=True)
  ds = (p * (dp - delta) * (qi.shape[-1] ** -0.5)).astype(qi.dtype)
  return jnp.dot(ds, ki, preferred_element_type=jnp.float32), jnp.dot(ds.T, qi, preferred_element_type=jnp.float32), dv


def _backward_head(qi, ki, vi, oi, lse_i, do, slope, distance):
  """`_backward_block` over one head's query blocks; dk and dv summed over them."""
  nb = _query_blocks(qi.shape[0])
  if nb == 1:
    dq, dk, dv = _backward_block(qi, ki, vi, oi, lse_i, do, slope, distance)
  else:
    split = lambda x: None if x is None else x.reshape((nb, -1) + x.shape[1:])

    def body(acc, a):
      dq, dk, dv = _backward_block(a[0], ki, vi, a[1], a[2], a[3], slope, a[4])
      return (acc[0] + dk, acc[1] + dv), dq

    # zeros_like, not zeros: inside jax.shard_map (`_ulysses`) the accumulators must vary over the devices as k does.
    zeros = jnp.zeros_like(ki, jnp.float32), jnp.zeros_like(vi, jnp.float32)
    (dk, dv), dq = jax.lax.scan(body, zeros, tuple(split(x) for x in (qi, oi, lse_i, do, distance)))
    dq = dq.reshape(qi.shape)
  return dq.astype(qi.dtype), dk.astype(ki.dtype), dv.astype(vi.dtype)


@jax.custom_vjp
def _chunked_heads(q, k, v, slopes, distance):
  """q [BH, Nq, Dh], k / v [BH, Nk, Dh] -> [BH, Nq, Dh], one head at a time through lax.map (and QUERY_BLOCK
  queries at a time within a head); logits biased by -slopes[i] * distance for head i (slopes [BH], distance
  [Nq, Nk]; constants, no gradient; both None: no bias)."""
  return jax.lax.map(lambda a: _forward_head(*a[:3], a[3], distance)[0], (q, k, v, slopes))


def _chunked_fwd(q, k, v, slopes, distance):
  out, lse = jax.lax.map(lambda a: _forward_head(*a[:3], a[3], distance), (q, k, v, slopes))
  # Named so that a remat policy can keep the residuals instead of re-running this forward in the backward pass.
  res = tuple(checkpoint_name(x, 'attention_residuals') for x in (q, k, v, out, lse)) + (slopes, distance)
  return out, res


def _chunked_bwd(res, d_out):
  """Flash-attention style backward: recompute each head's probabilities from the saved log-sum-exp instead of
  keeping [BH, Nq, Nk] of them from the forward pass (one extra [Nq, Dh] x [Dh, Nk] product per head, no N^2
  residuals written to and read back from memory)."""
  q, k, v, out, lse, slopes, distance = res
  dq, dk, dv = jax.lax.map(lambda a: _backward_head(*a, distance), (q, k, v, out, lse, d_out, slopes))
  if slopes is None:
    return dq, dk, dv, None, None
  return dq, dk, dv, jnp.zeros_like(slopes), jnp.zeros_like(distance)


_chunked_heads.defvjp(_chunked_fwd, _chunked_bwd)


def _chunked(q, k, v, bias: Optional[TimeBias] = None):
  """Attention head by head (batch * heads steps of lax.map), in blocks of QUERY_BLOCK queries for long sequences:
  each step's scores stay small, and the custom backward recomputes them rather than storing all of them (memory
  O(N) per head plus one step's [block, Nk], not N^2)."""
  b, nq, h, d = q.shape
  nk = k.shape[1]
  to_bh = lambda x, n: x.transpose(0, 2, 1, 3).reshape(b * h, n, d)
  slopes = distance = None
  if bias is not None:
    xp = np if isinstance(bias.slopes, np.ndarray) else jnp  # Traced slopes: a device's heads under `_ulysses`.
    slopes, distance = jnp.asarray(xp.tile(bias.slopes.astype(np.float32), b)), jnp.asarray(bias.distance())
  out = _chunked_heads(to_bh(q, nq), to_bh(k, nk), to_bh(v, nk), slopes, distance)
  return out.reshape(b, h, nq, d).transpose(0, 2, 1, 3)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, kind: str = 'auto',
              bias: Optional[TimeBias] = None, sequence: Optional[SequenceParallel] = None) -> jax.Array:
  """Softmax attention; `kind` in 'auto' | 'xla' | 'cudnn' | 'chunked' (config.model.attention); `bias` adds its
  logits (the xla / cudnn forms take it as a [1, H, Nq, Nk] constant); `sequence`: q, k, v are split along the
  sequence over its context axes (Ulysses, see the module docstring); None: as the partitioner places them."""
  if sequence is not None:
    return _ulysses(q, k, v, kind, bias, sequence)
  kind = resolve(kind, q.dtype)
  if kind == 'chunked':
    return _chunked(q, k, v, bias)
  if kind in ('xla', 'cudnn'):
    logits = None if bias is None else jnp.asarray(bias.logits()[None], q.dtype)
    return jax.nn.dot_product_attention(q, k, v, bias=logits, implementation=kind)
  raise ValueError(f'model.attention={kind!r}')
