"""Parameter-carrying building blocks with logical axis names: dense layers, norms, embeddings, conditioning MLPs.

Every parameter is an `nnx.Param` whose `out_sharding` metadata holds one logical axis name per dimension
('embed', 'mlp', 'heads', 'kv', 'vocab', or None). `nnx.get_partition_spec(state)` returns them; the training code
maps them to mesh axes with `config.mesh.axis_rules`. Parameters are created unsharded (eager sharding off), so a
model builds the same way on one device, on a fake-device mesh, or abstractly under `nnx.eval_shape`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

Names = tuple  # One logical axis name (or None) per parameter dimension.


def dtype_of(name: str):
  return {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}[name]


def param(rngs: nnx.Rngs, init: Callable, shape: Sequence[int], names: Names, dtype) -> nnx.Param:
  """An nnx.Param initialized by `init(key, shape, dtype)` and tagged with logical axis `names`."""
  if len(names) != len(shape):
    raise ValueError(f'{len(names)} axis names {names} for a parameter of shape {tuple(shape)}')
  return nnx.Param(init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(names), eager_sharding=False)


def zeros_init(key, shape, dtype):
  del key
  return jnp.zeros(shape, dtype)


class Dense(nnx.Module):
  """y = x @ W + b contracting the last `len(in_shape)` axes of x; W is [*in_shape, *out_shape].

  Kernel and bias keep their logical shapes (e.g. [embed, 3, heads, kv]) so each axis can be sharded by name; the
  product runs as one 2D matmul in the compute dtype with fp32 accumulation semantics left to XLA.
  """

  def __init__(self, in_shape, out_shape, names: Names, *, rngs: nnx.Rngs, dtype=jnp.float32,
               param_dtype=jnp.float32, kernel_init: Optional[Callable] = None, use_bias: bool = True):
    self.in_shape = tuple(in_shape) if isinstance(in_shape, (tuple, list)) else (in_shape,)
    self.out_shape = tuple(out_shape) if isinstance(out_shape, (tuple, list)) else (out_shape,)
    if kernel_init is None:
      kernel_init = nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal', in_axis=tuple(
          range(len(self.in_shape))), out_axis=tuple(range(len(self.in_shape), len(self.in_shape) + len(self.out_shape))))
    self.kernel = param(rngs, kernel_init, self.in_shape + self.out_shape, names, param_dtype)
    self.bias = (param(rngs, zeros_init, self.out_shape, names[len(self.in_shape):], param_dtype)
                 if use_bias else None)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    k = len(self.in_shape)
    lead = x.shape[:x.ndim - k]
    w = self.kernel[...].astype(self.dtype).reshape(math.prod(self.in_shape), math.prod(self.out_shape))
    y = x.astype(self.dtype).reshape(lead + (w.shape[0],)) @ w
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype).reshape(-1)
    return y.reshape(lead + self.out_shape)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """LayerNorm over the last axis without affine parameters (adaLN supplies scale and shift); stats in fp32."""
  xf = x.astype(jnp.float32)
  mean = xf.mean(-1, keepdims=True)
  var = jnp.square(xf - mean).mean(-1, keepdims=True)
  return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  return x * (1.0 + scale) + shift


def timestep_sinusoid(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal features [B, dim] of continuous time t [B] in [0, 1] (scaled by 1000 like discrete DDPM steps)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (t.astype(jnp.float32) * 1000.0)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nnx.Module):
  """t [B] in [0, 1] -> [B, width]: sinusoid features, then a 2-layer SiLU MLP."""

  def __init__(self, width: int, *, rngs: nnx.Rngs, freq_dim: int = 256, dtype=jnp.float32, param_dtype=jnp.float32):
    init = nnx.initializers.normal(0.02)
    self.freq_dim = freq_dim
    self.fc1 = Dense(freq_dim, width, (None, 'embed'), rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                     kernel_init=init)
    self.fc2 = Dense(width, width, ('mlp', 'embed'), rngs=rngs, dtype=dtype, param_dtype=param_dtype, kernel_init=init)

  def __call__(self, t: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.silu(self.fc1(timestep_sinusoid(t, self.freq_dim))))


class LabelEmbedder(nnx.Module):
  """label int [B] in [0, num_classes] -> [B, width]; row num_classes is the learned null ("no label") class."""

  def __init__(self, num_classes: int, width: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
    self.table = param(rngs, nnx.initializers.normal(0.02), (num_classes + 1, width), ('vocab', 'embed'), param_dtype)

  def __call__(self, label: jax.Array) -> jax.Array:
    return jnp.take(self.table[...], label, axis=0)


class Mlp(nnx.Module):
  """width -> hidden (GELU, tanh approx.) -> width."""

  def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    self.fc1 = Dense(width, hidden, ('embed', 'mlp'), rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.fc2 = Dense(hidden, width, ('mlp', 'embed'), rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = checkpoint_name(self.fc1(x), 'mlp_hidden')
    return checkpoint_name(self.fc2(jax.nn.gelu(hidden, approximate=True)), 'mlp_out')
