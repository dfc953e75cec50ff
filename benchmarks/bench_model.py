"""DiT throughput on this machine: analytic FLOPs, achieved FLOP/s vs. a measured matmul rate, compile time vs.
depth (scan on/off), and a PyTorch DiT of identical shape trained side by side.

    python -m benchmarks.bench_model [--configs=tiny,base] [--steps=3] [--skip_torch] [--skip_compile]

FLOPs (multiply-add = 2 FLOPs) of one forward pass, per clip, joint fusion with N = N_v + N_a tokens, width D,
MLP hidden F, depth L, patch sizes P_v / P_a:
    L * [2 N (3 D^2 + D^2 + 2 D F)  +  4 N^2 D]  +  2 (N_v P_v + N_a P_a) D * 2   (embed + final projections)
(QKV, attention output, MLP; QK^T and PV; patch embedding and output layers). Conditioning MLPs and adaLN
projections act on B x 2 vectors, not tokens, and are left out. Training = forward + backward = 3 x forward.
The matmul rate is a jitted [2048, 2048] x [2048, 2048] float32 product (best of 5), timed right before and right
after each model measurement; the model's rate is divided by the mean of the two, so a machine shared with other
jobs is compared against what it delivered at that moment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from avdiff import config_lib
from avdiff.models import build_dit
from avdiff.models import encoder as encoder_lib
from avdiff.models import tokens as tokens_lib
from configs import base, tiny


def matmul_rate(n: int = 2048, reps: int = 5) -> float:
  """float32 FLOP/s of a jitted square matmul (best of `reps`)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  f = jax.jit(jnp.dot)
  f(a, b).block_until_ready()
  best = math.inf
  for _ in range(reps):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def forward_flops(config) -> float:
  """Analytic forward FLOPs per clip (formula in the module docstring; joint fusion)."""
  m = config.model
  lay = config_lib.layout(config)
  n, d, f = lay.num_tokens, m.width, int(m.width * m.mlp_ratio)
  per_block = 2 * n * (4 * d * d + 2 * d * f) + 4 * n * n * d
  io = 2 * 2 * (lay.num_video_tokens * lay.video_patch_dim + lay.num_audio_tokens * lay.audio_patch_dim) * d
  return m.depth * per_block + io


def batch_for(config, batch):
  lay = config_lib.layout(config)
  k = jax.random.split(jax.random.key(0), 4)
  x = {'video': jax.random.normal(k[0], (batch,) + lay.video_latent),
       'audio': jax.random.normal(k[1], (batch,) + lay.audio_latent)}
  t = {'video': jax.random.uniform(k[2], (batch,)), 'audio': jax.random.uniform(k[3], (batch,))}
  target = jax.tree.map(lambda v: -v, x)
  return x, t, jnp.zeros((batch,), jnp.int32), target


def jax_train_step(config):
  """(jitted step(params, opt_state, batch...) -> (params, opt_state, loss), params, opt_state)."""
  model = build_dit(config, nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  opt = optax.adamw(1e-4)
  opt_state = opt.init(params)

  def step(params, opt_state, x, t, label, target):
    def loss_fn(p):
      out = nnx.merge(graphdef, p)(x, t, label)
      return sum(jnp.mean(jnp.square(out[k] - target[k])) for k in out)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1)), params, opt_state


def with_rate(fn):
  """(fn(), matmul FLOP/s averaged over a measurement just before and just after it)."""
  before = matmul_rate()
  out = fn()
  return out, 0.5 * (before + matmul_rate())


def time_steps(run, steps: int) -> float:
  """Median seconds per call after one warm-up call (run() must block)."""
  run()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    run()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bench_jax(config, batch: int, steps: int) -> dict:
  step, params, opt_state = jax_train_step(config)
  x, t, label, target = batch_for(config, batch)
  state = {'p': params, 'o': opt_state}

  def run():
    state['p'], state['o'], loss = step(state['p'], state['o'], x, t, label, target)
    loss.block_until_ready()

  t0 = time.perf_counter()
  run()
  first = time.perf_counter() - t0
  sec = time_steps(run, steps)
  return {'step_s': sec, 'first_step_s': first}


# ----------------------------------------------------------------------------- PyTorch reference DiT


def torch_dit_step(config, batch: int):
  """A plain PyTorch DiT of the same shape: patch embeddings, adaLN-Zero blocks with per-modality modulation,
  rotary q/k, F.scaled_dot_product_attention, GELU MLP, zero-init final layers, AdamW. Returns a step callable."""
  import torch
  import torch.nn.functional as F
  from torch import nn

  torch.set_num_threads(os.cpu_count() or 1)
  m = config.model
  clip = config_lib.layout(config)
  d, heads, hid = m.width, m.num_heads, int(m.width * m.mlp_ratio)
  lay = tokens_lib.token_layout(clip)
  rope = encoder_lib.rotary_tables(clip, d // heads, m.rope_theta)
  cos = torch.tensor(rope['sequence'][0])[None, None] if rope else None
  sin = torch.tensor(rope['sequence'][1])[None, None] if rope else None
  onehot = torch.tensor(np.eye(2, dtype=np.float32)[lay.modality])

  def rot(x):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.ada = nn.Linear(d, 6 * d)
      nn.init.zeros_(self.ada.weight)
      nn.init.zeros_(self.ada.bias)
      self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
      self.fc1, self.fc2 = nn.Linear(d, hid), nn.Linear(hid, d)

    def forward(self, h, c):
      mod = torch.einsum('nm,bmk->bnk', onehot, self.ada(F.silu(c))).chunk(6, -1)
      x = F.layer_norm(h, (d,)) * (1 + mod[1]) + mod[0]
      b, n, _ = x.shape
      q, k, v = self.qkv(x).view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
      o = F.scaled_dot_product_attention(rot(q), rot(k), v).transpose(1, 2).reshape(b, n, d)
      h = h + mod[2] * self.out(o)
      x = F.layer_norm(h, (d,)) * (1 + mod[4]) + mod[3]
      return h + mod[5] * self.fc2(F.gelu(self.fc1(x), approximate='tanh'))

  class DiT(nn.Module):
    def __init__(self):
      super().__init__()
      self.ve, self.ae = nn.Linear(clip.video_patch_dim, d), nn.Linear(clip.audio_patch_dim, d)
      self.t1, self.t2 = nn.Linear(256, d), nn.Linear(d, d)
      self.label = nn.Embedding(m.num_classes + 1, d)
      self.blocks = nn.ModuleList([Block() for _ in range(m.depth)])
      self.vo, self.ao = nn.Linear(d, clip.video_patch_dim), nn.Linear(d, clip.audio_patch_dim)
      for lin in (self.vo, self.ao):
        nn.init.zeros_(lin.weight)

    def temb(self, t):
      freqs = torch.exp(-math.log(1e4) * torch.arange(128) / 128)
      a = t[:, None] * 1000 * freqs[None]
      return self.t2(F.silu(self.t1(torch.cat([a.cos(), a.sin()], -1))))

    def forward(self, v, a, tv, ta, label):
      lab = self.label(label)
      c = torch.stack([self.temb(tv) + lab, self.temb(ta) + lab], 1)
      h = torch.cat([self.ve(v), self.ae(a)], 1)
      for blk in self.blocks:
        h = blk(h, c)
      nv = clip.num_video_tokens
      return self.vo(F.layer_norm(h[:, :nv], (d,))), self.ao(F.layer_norm(h[:, nv:], (d,)))

  model = DiT()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  g = torch.Generator().manual_seed(0)
  v = torch.randn(batch, clip.num_video_tokens, clip.video_patch_dim, generator=g)
  a = torch.randn(batch, clip.num_audio_tokens, clip.audio_patch_dim, generator=g)
  tv, ta = torch.rand(batch, generator=g), torch.rand(batch, generator=g)
  label = torch.zeros(batch, dtype=torch.long)
  n_params = sum(p.numel() for p in model.parameters())

  def run():
    opt.zero_grad(set_to_none=True)
    ov, oa = model(v, a, tv, ta, label)
    loss = (ov + v).square().mean() + (oa + a).square().mean()
    loss.backward()
    opt.step()

  return run, n_params


# ----------------------------------------------------------------------------- compile time


def compile_seconds(config) -> float:
  step, params, opt_state = jax_train_step(config)
  x, t, label, target = batch_for(config, 2)
  t0 = time.perf_counter()
  step.lower(params, opt_state, x, t, label, target).compile()
  return time.perf_counter() - t0


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--configs', default='tiny,base')
  p.add_argument('--steps', type=int, default=3)
  p.add_argument('--skip_torch', action='store_true')
  p.add_argument('--skip_compile', action='store_true')
  p.add_argument('--out', default='')
  args = p.parse_args()
  results = {'backend': jax.default_backend(), 'devices': jax.device_count(), 'cpu_count': os.cpu_count()}
  for name in args.configs.split(','):
    config = {'tiny': tiny, 'base': base}[name].get_config()
    config.model.dtype = 'float32'  # bf16 matmuls are emulated on CPU; compare like with like.
    batch = {'tiny': 16, 'base': 4}[name]
    flops = 3 * forward_flops(config) * batch
    r, rate = with_rate(lambda: bench_jax(config, batch, args.steps))
    r.update(batch=batch, train_gflop=flops / 1e9, achieved_gflops=flops / r['step_s'] / 1e9,
             matmul_gflops=rate / 1e9)
    r['fraction_of_matmul'] = r['achieved_gflops'] * 1e9 / rate
    print(f'[{name}] jax: batch {batch}, {r["train_gflop"]:.1f} GFLOP/step, {r["step_s"] * 1e3:.0f} ms/step, '
          f'{r["achieved_gflops"]:.1f} GFLOP/s = {r["fraction_of_matmul"]:.0%} of the matmul rate '
          f'({rate / 1e9:.1f} GFLOP/s)', flush=True)
    if not args.skip_torch:
      run, n_params = torch_dit_step(config, batch)
      ts, trate = with_rate(lambda: time_steps(run, args.steps))
      r.update(torch_step_s=ts, torch_achieved_gflops=flops / ts / 1e9, torch_fraction_of_matmul=flops / ts / trate,
               torch_matmul_gflops=trate / 1e9, jax_over_torch=r['step_s'] / ts, torch_params=n_params)
      print(f'[{name}] torch: {ts * 1e3:.0f} ms/step, {flops / ts / 1e9:.1f} GFLOP/s = {flops / ts / trate:.0%} of '
            f'the matmul rate ({trate / 1e9:.1f} GFLOP/s); jax/torch step time = {r["jax_over_torch"]:.2f}',
            flush=True)
    results[name] = r
  if not args.skip_compile:
    comp = {}
    warm = tiny.get_config()
    warm.model.depth = 1
    compile_seconds(warm)  # One-time costs (backend start-up, first-use tracing caches) are not part of either.
    for scan in (True, False):
      for depth in (2, 24):
        c = tiny.get_config()
        c.model.depth, c.model.scan_layers = depth, scan
        comp[f'depth{depth}_scan{int(scan)}'] = s = compile_seconds(c)
        print(f'compile (tiny width, train step): depth {depth:2d} scan={scan}: {s:.1f} s', flush=True)
    results['compile_s'] = comp
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
