"""Context-parallel attention: Ulysses (all-to-all between tokens and heads) against ring attention (k / v blocks
passed around the context devices), forward + backward of one attention layer on fake CPU devices.

    python -m benchmarks.bench_context [--tokens=2048] [--heads=8] [--head_dim=64] [--contexts=2,4,8] [--repeats=3]
        [--out=benchmarks/context_attention.md]

Both take q, k, v [B, N, H, Dh] split along N over c devices and return the output split the same way.
  * ulysses: `avdiff.models.attention.attention(..., sequence=SequenceParallel)`, the model's own path: all-to-all
    to [B, N, H / c, Dh], the unchanged kernel over the whole sequence, all-to-all back.
  * ring: each device keeps its N / c queries and its heads; c steps of block attention with an online softmax
    (running max and sum), the k / v block passed to the next device (collective-permute) after each step; the step
    is rematerialized so the backward keeps only the c carries (a flash-style ring, as MaxText's and
    MaxDiffusion's ring kernels, without their fused Pallas blocks).
Per variant: compiled per-device temporaries (`memory_analysis`), bytes sent by collectives per device (from the
partitioned HLO: all-to-all moves (c - 1) / c of its operand, a collective-permute all of it), and the wall time
of the compiled forward + backward (median of `--repeats`). The fake devices share the host's cores and the
collectives are memory copies, so times compare the work each variant does, not network time; the bytes column is
what a real interconnect would carry. The kernel is 'xla' (scores of all local heads at once) for both, so the
temporaries compare like with like; on a GPU, cuDNN flash attention takes Ulysses' local kernel to O(N) memory,
which a ring cannot use without a custom kernel.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time

from benchmarks import report

DEFAULT_DEVICES = 8


def _collective_bytes(hlo: str) -> dict:
  """{'all-to-all': bytes, 'collective-permute': bytes} sent per device, from the per-device HLO (loop bodies
  counted once per trip: the ring's scan is unrolled by the caller's trip count)."""
  sizes = {'f32': 4, 'bf16': 2, 'f16': 2}
  out = {'all-to-all': 0.0, 'collective-permute': 0.0}
  for line in hlo.splitlines():
    for op in out:
      if f' {op}(' in line or f' {op}-start(' in line:
        lhs = line.split('=', 1)[1].split(op)[0]
        for dtype, dims in re.findall(r'(f32|bf16|f16)\[([\d,]*)\]', lhs):
          n = 1
          for d in filter(None, dims.split(',')):
            n *= int(d)
          out[op] += n * sizes[dtype]
  return out


def bench(tokens: int, heads: int, head_dim: int, context: int, repeats: int) -> list[dict]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from avdiff.models import attention as attn_lib  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  data = len(devices) // context
  mesh = jax.sharding.Mesh(np.asarray(devices).reshape(data, context), ('data', 'context'),
                           axis_types=(jax.sharding.AxisType.Auto,) * 2)
  spec = P('data', 'context', None, None)
  sp = attn_lib.SequenceParallel(mesh, ('data',), ('context',), ())
  scale = head_dim ** -0.5

  def ulysses(q, k, v):
    return attn_lib.attention(q, k, v, 'xla', None, sp)

  def ring(q, k, v):
    perm = [(j, (j + 1) % context) for j in range(context)]

    def local(q, k, v):
      b, n, h, d = q.shape

      def block(o, m, l, k, v):
        """Online-softmax update of the accumulators with one k / v block."""
        s = jnp.einsum('bqhd,bkhd->bhqk', q, k, preferred_element_type=jnp.float32) * scale
        m_new = jnp.maximum(m, s.max(-1))
        p = jnp.exp(s - m_new[..., None])
        corr = jnp.exp(m - m_new)
        o = o * corr[..., None] + jnp.einsum('bhqk,bkhd->bhqd', p.astype(v.dtype), v,
                                             preferred_element_type=jnp.float32)
        return o, m_new, l * corr + p.sum(-1)

      @jax.checkpoint
      def step(carry, _):
        o, m, l, k, v = carry
        o, m, l = block(o, m, l, k, v)
        return (o, m, l, jax.lax.ppermute(k, 'context', perm), jax.lax.ppermute(v, 'context', perm)), None

      # The accumulators vary over the devices like q (shard_map's varying-axes check wants that said).
      vary = lambda x: jax.lax.pcast(x, ('data', 'context'), to='varying')
      init = (vary(jnp.zeros((b, h, n, d), jnp.float32)), vary(jnp.full((b, h, n), -jnp.inf, jnp.float32)),
              vary(jnp.zeros((b, h, n), jnp.float32)), k, v)
      # c - 1 blocks with a pass to the next device after each, then the last block where it lies.
      (o, m, l, k, v), _ = jax.lax.scan(step, init, None, length=context - 1, unroll=True)
      o, _, l = jax.checkpoint(block)(o, m, l, k, v)
      return (o / l[..., None]).transpose(0, 2, 1, 3).astype(q.dtype)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec,) * 3, out_specs=spec)(q, k, v)

  shape = (data, tokens, heads, head_dim)
  sharding = NamedSharding(mesh, spec)
  rng = np.random.default_rng(0)
  q, k, v = (jax.device_put(rng.normal(size=shape).astype(np.float32), sharding) for _ in range(3))
  rows = []
  outs = {}
  for name, fn in (('ulysses', ulysses), ('ring', ring)):
    loss = lambda q, k, v, fn=fn: jnp.sum(jnp.square(fn(q, k, v)))
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), in_shardings=(sharding,) * 3)
    start = time.perf_counter()
    compiled = grad.lower(q, k, v).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(q, k, v))
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      outs[name] = jax.block_until_ready(compiled(q, k, v))
      times.append(time.perf_counter() - start)
    mem = compiled.memory_analysis()
    sent = _collective_bytes(compiled.as_text())
    # all-to-all keeps 1 / c of its operand on the device; a collective-permute sends all of it.
    moved = sent['all-to-all'] * (context - 1) / context + sent['collective-permute']
    rows.append({'variant': name, 'context': context, 'tokens': tokens, 'temp_mib': mem.temp_size_in_bytes / 2 ** 20,
                 'sent_mib': moved / 2 ** 20, 'step_s': statistics.median(times), 'compile_s': compile_s})
  (lu, gu), (lr, gr) = outs['ulysses'], outs['ring']
  err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(gu, gr))
  for row in rows:
    row['grads_agree'] = f'{err:.1e}'
  assert abs(float(lu) - float(lr)) <= 1e-4 * abs(float(lu)), (lu, lr)
  return rows


def table(rows: list[dict], command: str, args) -> list[str]:
  lines = [f'Written by `{command}` ({DEFAULT_DEVICES} fake CPU devices: data x context, one clip of N tokens per '
           f'data group, {args.heads} heads of {args.head_dim}, float32, forward + backward of one attention).', '',
           '| context | variant | tokens | temporaries / device (MiB) | sent / device (MiB) | fwd + bwd (s) | '
           'time / ulysses | max grad difference (rel.) |',
           '|---|---|---|---|---|---|---|---|']
  for row in rows:
    base = next(r for r in rows if r['context'] == row['context'] and r['variant'] == 'ulysses')
    lines.append(f"| {row['context']} | {row['variant']} | {row['tokens']} | {row['temp_mib']:.1f} | "
                 f"{row['sent_mib']:.2f} | {row['step_s']:.3f} | {row['step_s'] / base['step_s']:.2f} | "
                 f"{row['grads_agree']} |")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--tokens', type=int, default=2048)
  parser.add_argument('--heads', type=int, default=8)
  parser.add_argument('--head_dim', type=int, default=64)
  parser.add_argument('--contexts', default='2,4,8')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             f' --xla_force_host_platform_device_count={DEFAULT_DEVICES}').strip()
  rows = []
  for c in (int(x) for x in args.contexts.split(',')):
    rows += bench(args.tokens, args.heads, args.head_dim, c, args.repeats)
  command = 'python -m benchmarks.bench_context ' + ' '.join(sys.argv[1:])
  lines = table(rows, command.strip(), args)
  report.emit(lines, args.out)


if __name__ == '__main__':
  main()
