"""Flax port of the public SyncNet (syncnet_v2) network, its converter from a PyTorch state dict, and its MFCCs.

Architecture (joonson/syncnet_python `SyncNetModel.S`, num_layers_in_fc_layers=1024), every block Conv -> BatchNorm
(eval statistics, eps 1e-5) -> ReLU, with the PyTorch `nn.Sequential` indices kept so weights map by name:
  netcnnaud: MFCC [N, 13, 20, 1] -> conv3x3 64, pool1x1, conv3x3 192, maxpool 3x3/(1,2), conv3x3 384, 256, 256,
             maxpool 3x3/2, conv(5,4) 512 -> [N, 512]; netfcaud: linear 512, BN1d, ReLU, linear 1024.
  netcnnlip: 5 BGR frames [N, 5, 224, 224, 3] (0..255, no normalization) -> conv3d(5,7,7)/(1,2,2) 96, maxpool
             (1,3,3)/(1,2,2), conv(1,5,5)/(1,2,2) pad (0,1,1) 256, maxpool (1,3,3)/(1,2,2) pad (0,1,1), 3x conv(1,3,3)
             pad (0,1,1) 256, maxpool (1,3,3)/(1,2,2), conv(1,6,6) 512 -> [N, 512]; netfclip: as netfcaud.
The audio input is `python_speech_features.mfcc` with its defaults on int16-scaled 16 kHz audio (100 Hz frames,
reimplemented here in numpy so neither torch nor python_speech_features is needed at evaluation time); one
5-frame window at 25 fps matches 20 MFCC frames. Embeddings are compared by Euclidean distance, unnormalized.
"""

from __future__ import annotations

import decimal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fftpack
from flax import nnx

from avdiff import console

SAMPLE_RATE = 16000  # Hz, the MFCC front end's rate.
FPS = 25  # Video frame rate SyncNet was trained at; 4 MFCC frames per video frame.
WINDOW = 5  # Video frames per window.
MFCC_PER_FRAME = 4
EMBED_DIM = 1024

# (kind, *args) per nn.Sequential index. conv: in, out, kernel, stride, padding; pool: kernel, stride, padding.
AUDIO_CNN = (
    ('conv', 1, 64, (3, 3), (1, 1), (1, 1)), ('bn', 64), ('relu',), ('pool', (1, 1), (1, 1), (0, 0)),
    ('conv', 64, 192, (3, 3), (1, 1), (1, 1)), ('bn', 192), ('relu',), ('pool', (3, 3), (1, 2), (0, 0)),
    ('conv', 192, 384, (3, 3), (1, 1), (1, 1)), ('bn', 384), ('relu',),
    ('conv', 384, 256, (3, 3), (1, 1), (1, 1)), ('bn', 256), ('relu',),
    ('conv', 256, 256, (3, 3), (1, 1), (1, 1)), ('bn', 256), ('relu',), ('pool', (3, 3), (2, 2), (0, 0)),
    ('conv', 256, 512, (5, 4), (1, 1), (0, 0)), ('bn', 512), ('relu',),
)
LIP_CNN = (
    ('conv', 3, 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)), ('bn', 96), ('relu',), ('pool', (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ('conv', 96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ('bn', 256), ('relu',),
    ('pool', (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ('conv', 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ('bn', 256), ('relu',),
    ('conv', 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ('bn', 256), ('relu',),
    ('conv', 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ('bn', 256), ('relu',),
    ('pool', (1, 3, 3), (1, 2, 2), (0, 0, 0)),
    ('conv', 256, 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)), ('bn', 512), ('relu',),
)
FC = (('linear', 512, 512), ('bn', 512), ('relu',), ('linear', 512, EMBED_DIM))


class _ReLU(nnx.Module):

  def __call__(self, x):
    return jax.nn.relu(x)


class _MaxPool(nnx.Module):
  """Max pooling with PyTorch-style symmetric padding (padded cells never win: they hold -inf)."""

  def __init__(self, kernel, stride, padding):
    self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple((p, p) for p in padding)

  def __call__(self, x):
    return nnx.max_pool(x, self.kernel, self.stride, self.padding)


def _layer(spec, rngs):
  kind = spec[0]
  if kind == 'conv':
    _, cin, cout, k, s, p = spec
    return nnx.Conv(cin, cout, k, strides=s, padding=[(q, q) for q in p], rngs=rngs)
  if kind == 'bn':
    return nnx.BatchNorm(spec[1], use_running_average=True, epsilon=1e-5, rngs=rngs)
  if kind == 'linear':
    return nnx.Linear(spec[1], spec[2], rngs=rngs)
  if kind == 'pool':
    return _MaxPool(*spec[1:])
  return _ReLU()


class _Sequential(nnx.Module):

  def __init__(self, specs, rngs):
    self.layers = nnx.List([_layer(s, rngs) for s in specs])

  def __call__(self, x):
    for layer in self.layers:
      x = layer(x)
    return x


class SyncNet(nnx.Module):
  """forward_aud: MFCC [N, 13, 20] -> [N, 1024]; forward_lip: BGR 0..255 [N, 5, 224, 224, 3] -> [N, 1024]."""

  def __init__(self, rngs: nnx.Rngs):
    self.netcnnaud = _Sequential(AUDIO_CNN, rngs)
    self.netfcaud = _Sequential(FC, rngs)
    self.netcnnlip = _Sequential(LIP_CNN, rngs)
    self.netfclip = _Sequential(FC, rngs)

  def forward_aud(self, mfcc: jax.Array) -> jax.Array:
    mid = self.netcnnaud(mfcc[..., None].astype(jnp.float32))
    return self.netfcaud(mid.reshape(mid.shape[0], -1))

  def forward_lip(self, frames: jax.Array) -> jax.Array:
    mid = self.netcnnlip(frames.astype(jnp.float32))
    return self.netfclip(mid.reshape(mid.shape[0], -1))


# ----------------------------------------------------------------------------- weights

def convert_state_dict(model: SyncNet, state_dict: dict) -> None:
  """Copies a flat PyTorch state dict (name -> array) into `model` in place, checking every shape.

  Conv weights [out, in, *k] -> [*k, in, out]; linear [out, in] -> [in, out]; BatchNorm weight/bias/running_mean/
  running_var -> scale/bias/mean/var. Prefixes '__S__.' / 'module.' are stripped. Raises on missing/extra keys.
  """
  sd = {}
  for k, v in state_dict.items():
    for prefix in ('__S__.', 'module.'):
      k = k[len(prefix):] if k.startswith(prefix) else k
    if not k.endswith('num_batches_tracked'):
      sd[k] = np.asarray(v, np.float32)
  used = set()

  def take(name, shape):
    if name not in sd:
      raise KeyError(f'SyncNet state dict has no {name!r}')
    used.add(name)
    if sd[name].shape != tuple(shape):
      raise ValueError(f'{name}: shape {sd[name].shape} does not match the Flax port {tuple(shape)}')
    return jnp.asarray(sd[name])

  for net in ('netcnnaud', 'netfcaud', 'netcnnlip', 'netfclip'):
    for i, layer in enumerate(getattr(model, net).layers):
      p = f'{net}.{i}.'
      if isinstance(layer, nnx.Conv):
        k = layer.kernel.value
        nd = k.ndim - 2
        torch_shape = (k.shape[-1], k.shape[-2], *k.shape[:nd])
        layer.kernel.value = jnp.transpose(take(p + 'weight', torch_shape), (*range(2, 2 + nd), 1, 0))
        layer.bias.value = take(p + 'bias', layer.bias.value.shape)
      elif isinstance(layer, nnx.Linear):
        layer.kernel.value = take(p + 'weight', layer.kernel.value.shape[::-1]).T
        layer.bias.value = take(p + 'bias', layer.bias.value.shape)
      elif isinstance(layer, nnx.BatchNorm):
        layer.scale.value = take(p + 'weight', layer.scale.value.shape)
        layer.bias.value = take(p + 'bias', layer.bias.value.shape)
        layer.mean.value = take(p + 'running_mean', layer.mean.value.shape)
        layer.var.value = take(p + 'running_var', layer.var.value.shape)
  extra = sorted(set(sd) - used)
  if extra:
    raise ValueError(f'SyncNet state dict has keys the port does not use: {extra[:5]}')


def load_syncnet(path: str) -> SyncNet:
  """Builds the port and loads `syncnet_v2.model` (a flat PyTorch state dict). Needs torch, loads tensors only."""
  try:
    import torch  # pylint: disable=g-import-not-at-top  (optional dependency: only for users with the file)
  except ImportError as e:
    raise console.UserError('the SyncNet weights need torch to be read: pip install torch (the CPU wheel is '
                            'enough)') from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  model = SyncNet(nnx.Rngs(0))
  convert_state_dict(model, {k: v.numpy() for k, v in state.items()})
  return model


# ----------------------------------------------------------------------------- MFCC front end

def _round_half_up(x: float) -> int:
  return int(decimal.Decimal(x).quantize(decimal.Decimal('1'), rounding=decimal.ROUND_HALF_UP))


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
  """Triangular filters on FFT bins floor((nfft + 1) * f / sr), as python_speech_features builds them."""
  hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.)
  mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)
  bins = np.floor((nfft + 1) * mel2hz(np.linspace(hz2mel(0), hz2mel(sample_rate / 2), nfilt + 2)) / sample_rate)
  fb = np.zeros([nfilt, nfft // 2 + 1])
  for j in range(nfilt):
    for i in range(int(bins[j]), int(bins[j + 1])):
      fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
    for i in range(int(bins[j + 1]), int(bins[j + 2])):
      fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
  return fb


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, numcep: int = 13, nfilt: int = 26, nfft: int = 512,
         preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
  """MFCC [num_frames, numcep] exactly as python_speech_features.mfcc with its defaults (25 ms / 10 ms frames)."""
  sig = np.asarray(signal, np.float64)
  sig = np.append(sig[0], sig[1:] - preemph * sig[:-1])
  flen, fstep = _round_half_up(0.025 * sample_rate), _round_half_up(0.01 * sample_rate)
  n = 1 if len(sig) <= flen else 1 + int(np.ceil((len(sig) - flen) / fstep))
  sig = np.concatenate([sig, np.zeros((n - 1) * fstep + flen - len(sig))])
  frames = sig[np.arange(flen)[None] + np.arange(n)[:, None] * fstep]
  pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
  eps = np.finfo(float).eps
  energy = np.where(pspec.sum(1) == 0, eps, pspec.sum(1))
  feat = pspec @ _mel_filterbank(nfilt, nfft, sample_rate).T
  feat = np.log(np.where(feat == 0, eps, feat))
  feat = scipy.fftpack.dct(feat, type=2, axis=1, norm='ortho')[:, :numcep]
  feat = feat * (1 + (ceplifter / 2.) * np.sin(np.pi * np.arange(numcep) / ceplifter))
  feat[:, 0] = np.log(energy)
  return feat


def int16_scale(audio: np.ndarray) -> np.ndarray:
  """Float audio in [-1, 1] -> the int16 sample values the reference reads from a 16-bit wav (as float64)."""
  return np.clip(np.round(np.asarray(audio, np.float64) * 32768.0), -32768, 32767)


# ----------------------------------------------------------------------------- per-clip embeddings

def clip_embeddings(model: SyncNet, frames_bgr: np.ndarray, audio: np.ndarray,
                    batch_size: int = 20) -> tuple[np.ndarray, np.ndarray]:
  """Per-window embeddings of one clip at 25 fps: (video [N, 1024], audio [N, 1024]), N = min(T, S / 640) - 5.

  frames_bgr: face crops uint8 [T, 224, 224, 3] in BGR order; audio: mono float [S] in [-1, 1] at 16 kHz.
  """
  cc = mfcc(int16_scale(audio), SAMPLE_RATE).T  # [13, F] at 100 Hz.
  # Window count as in the reference script: min(frames, samples / 640) - 5 (its last window is never used).
  n = min(len(frames_bgr), len(audio) // (SAMPLE_RATE // FPS)) - WINDOW
  if n < 1:
    raise ValueError(f'clip too short for a {WINDOW}-frame SyncNet window')
  graphdef, state = nnx.split(model)
  lip = jax.jit(lambda st, x: nnx.merge(graphdef, st).forward_lip(x))
  aud = jax.jit(lambda st, x: nnx.merge(graphdef, st).forward_aud(x))
  v, a = [], []
  for s in range(0, n, batch_size):
    idx = np.arange(s, min(n, s + batch_size))
    v.append(np.asarray(lip(state, np.stack([frames_bgr[i:i + WINDOW] for i in idx]).astype(np.float32))))
    a.append(np.asarray(aud(state, np.stack([cc[:, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + 20] for i in idx]))))
  return np.concatenate(v), np.concatenate(a)
