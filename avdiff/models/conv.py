"""N-d convolution, group norm, residual block and nearest upsampling for the stage-1 autoencoders.

Inputs are channels-last: [B, *spatial, C] with 1, 2 or 3 spatial axes. Convolution kernels are [*window, C_in,
C_out] with logical names (None, ..., None, 'conv_out'); the autoencoders are small, so the default rules replicate
them ('conv_out' is not in config.mesh.axis_rules).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from avdiff.models import layers

_DIMS = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC'), 3: ('NDHWC', 'DHWIO', 'NDHWC')}


class Conv(nnx.Module):
  """'SAME'-padded convolution with stride; [B, *S, C_in] -> [B, *ceil(S / stride), C_out]."""

  def __init__(self, c_in: int, c_out: int, kernel: tuple, stride: tuple | None = None, *, rngs: nnx.Rngs,
               dtype=jnp.float32, param_dtype=jnp.float32, zero_init: bool = False):
    self.kernel_size, self.stride = tuple(kernel), tuple(stride or (1,) * len(kernel))
    init = layers.zeros_init if zero_init else nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
    names = (None,) * (len(kernel) + 1) + ('conv_out',)
    self.kernel = layers.param(rngs, init, self.kernel_size + (c_in, c_out), names, param_dtype)
    self.bias = layers.param(rngs, layers.zeros_init, (c_out,), ('conv_out',), param_dtype)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x, w = x.astype(self.dtype), self.kernel[...].astype(self.dtype)
    # Axes the kernel does not mix (window 1, stride 1) are folded into the batch: the video's per-frame (1, 3, 3)
    # and temporal (3, 1, 1) convolutions then run as 2D / 1D convolutions, the same sums at a fraction of the
    # cost of XLA:CPU's 3D convolution and its gradients (benchmarks/latent_step.md).
    pointwise = [i for i, (k, s) in enumerate(zip(self.kernel_size, self.stride)) if k == 1 and s == 1]
    mixed = [i for i in range(len(self.kernel_size)) if i not in pointwise]
    if not pointwise or not mixed:
      return jax.lax.conv_general_dilated(x, w, self.stride, 'SAME', dimension_numbers=_DIMS[w.ndim - 2]) + \
          self.bias[...].astype(self.dtype)
    order = [0] + [1 + i for i in pointwise] + [1 + i for i in mixed] + [x.ndim - 1]
    xt = jnp.transpose(x, order)
    lead = xt.shape[:1 + len(pointwise)]
    w = w.reshape(tuple(self.kernel_size[i] for i in mixed) + w.shape[-2:])
    y = jax.lax.conv_general_dilated(xt.reshape((-1,) + xt.shape[len(lead):]), w,
                                     tuple(self.stride[i] for i in mixed), 'SAME', dimension_numbers=_DIMS[len(mixed)])
    y = jnp.transpose(y.reshape(lead + y.shape[1:]), [order.index(i) for i in range(x.ndim)])
    return y + self.bias[...].astype(self.dtype)


class GroupNorm(nnx.Module):
  """GroupNorm over all spatial axes and channel groups, with per-channel scale and bias; stats in fp32."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs, groups: int = 8, param_dtype=jnp.float32):
    self.groups = math.gcd(groups, channels)
    self.scale = layers.param(rngs, nnx.initializers.ones, (channels,), ('conv_out',), param_dtype)
    self.bias = layers.param(rngs, layers.zeros_init, (channels,), ('conv_out',), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    shape = x.shape
    xf = x.astype(jnp.float32).reshape(shape[0], -1, self.groups, shape[-1] // self.groups)
    mean = xf.mean(axis=(1, 3), keepdims=True)
    var = jnp.square(xf - mean).mean(axis=(1, 3), keepdims=True)
    y = ((xf - mean) * jax.lax.rsqrt(var + 1e-6)).reshape(shape)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class ResBlock(nnx.Module):
  """x + conv(silu(norm(conv(silu(norm(x)))))) with the second conv zero-initialized (starts as the identity)."""

  def __init__(self, channels: int, kernel: tuple, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.norm1 = GroupNorm(channels, rngs=rngs, param_dtype=param_dtype)
    self.conv1 = Conv(channels, channels, kernel, **kw)
    self.norm2 = GroupNorm(channels, rngs=rngs, param_dtype=param_dtype)
    self.conv2 = Conv(channels, channels, kernel, zero_init=True, **kw)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    return x + self.conv2(jax.nn.silu(self.norm2(h)))


def upsample(x: jax.Array, factors: tuple) -> jax.Array:
  """Nearest-neighbour upsampling of the spatial axes of [B, *S, C] by integer `factors` (one per spatial axis)."""
  for axis, f in enumerate(factors, start=1):
    if f > 1:
      x = jnp.repeat(x, f, axis=axis)
  return x
