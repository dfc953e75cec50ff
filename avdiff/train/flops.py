"""Analytic model FLOPs of the DiT (for MFU) and the measured peak matmul rate of a device (CPU default).

Model FLOPs count each multiply-add as 2 FLOPs, matmuls and attention score / value products only (norms,
activations, softmax and RoPE are ignored; remat recomputation is not credited). One training step costs
3 x forward (backward = 2 x forward) per clip:

  forward per clip, joint fusion, N = N_v + N_a tokens, width D, MLP width F = mlp_ratio * D, depth L:
    L * (2 N (3 D^2 + D^2 + 2 D F) + 4 N^2 D)                  blocks: QKV, out, MLP; QK^T and AV
    + 2 (N_v P_v + N_a P_a) D * 2                               patch embedding in, final projection out
    + 2 M D 6D L + 2 M D 2D + 2 M (256 D + D^2)                 adaLN / timestep MLPs on M = 2 conditions
  dual tower: the same blocks on N_v and on N_a separately (N_v^2 + N_a^2 attention), plus L / every
    cross blocks of 2 N_v D^2 * 2 + 2 N_a D^2 * 2 (Q, out) + 2 N D (2 D) (K, V of the other tower) + 8 N_v N_a D.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections

from avdiff import config_lib


def _block(n: int, d: int, f: int) -> float:
  return 2 * n * (3 * d * d + d * d + 2 * d * f) + 4 * n * n * d


def dit_forward_flops(config: ml_collections.ConfigDict) -> float:
  """Forward FLOPs of the DiT for one clip (see the module docstring)."""
  m = config.model
  lay = config_lib.layout(config)
  nv, na = lay.num_video_tokens, lay.num_audio_tokens
  d, f, depth = m.width, int(m.width * m.mlp_ratio), m.depth
  pv = lay.video_latent[3] * m.video_patch[0] * m.video_patch[1] * m.video_patch[2]
  pa = lay.audio_latent[2] * m.audio_patch[0] * m.audio_patch[1]
  io = 2 * (nv * pv + na * pa) * d * 2
  cond = 2 * 2 * d * 6 * d * depth + 2 * 2 * d * 2 * d + 2 * 2 * (256 * d + d * d)
  if m.fusion == 'joint':
    blocks = depth * _block(nv + na, d, f)
  else:
    cross = 2 * nv * d * d * 2 + 2 * na * d * d * 2 + 2 * (nv + na) * d * 2 * d + 8 * nv * na * d
    blocks = depth * (_block(nv, d, f) + _block(na, d, f)) + (depth // m.cross_attention_every) * cross
  return float(blocks + io + cond)


def train_flops_per_clip(config: ml_collections.ConfigDict) -> float:
  """Model FLOPs of one training step per clip: 3 x forward."""
  return 3.0 * dit_forward_flops(config)


def measure_matmul_flops(n: int = 1024, repeats: int = 5, device=None) -> float:
  """FLOP/s of an n x n float32 matmul on one device (best of `repeats`), the CPU peak used for MFU."""
  device = device or jax.local_devices()[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n ** 3 / best


# Dense peak FLOP/s per device for known accelerators (bf16, no sparsity).
KNOWN_PEAKS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12, 'TPU v4': 275e12, 'TPU v5 lite': 197e12,
               'TPU v5e': 197e12, 'TPU v5p': 459e12, 'TPU v6 lite': 918e12}


def peak_flops_per_device(configured: float = 0.0) -> tuple[float, str]:
  """(FLOP/s, how it was obtained): the configured value, a known accelerator peak, or a measured CPU matmul.

  On CPU all (fake) devices of a process share the host's cores, so the per-device peak is the rate of one
  matmul using the whole host divided by the local device count.
  """
  if configured > 0:
    return float(configured), 'config'
  dev = jax.local_devices()[0]
  for name, peak in KNOWN_PEAKS.items():
    if name.lower() in dev.device_kind.lower():
      return peak, f'table ({dev.device_kind})'
  rate = measure_matmul_flops()
  if dev.platform == 'cpu':
    return rate / jax.local_device_count(), 'measured matmul (host rate / local devices)'
  return rate, f'measured f32 matmul ({dev.device_kind})'
