"""Sync expert: a two-stream Flax NNX network embedding a mouth-region video window and its mel window.

Video stream: `window` consecutive mouth crops [W, c, c, 3] (float in [-1, 1]) stacked along channels, so the
first convolution sees all frames at once (as SyncNet's 5-frame 3D kernel does). Audio stream: the matching
normalized log-mel window [W * mel_frames_per_video_frame, n_mels]. Both end in an L2-normalized embedding; in-sync
pairs are close in Euclidean distance. Window extraction and mouth cropping are here too (jittable).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from avdiff import checkpoint
from avdiff import run_dir
from avdiff.data import frames as frames_lib


class _ConvStack(nnx.Module):
  """Three 3x3 convolutions (stride 1, 2, 2; widths w, 2w, 4w) + a dense embedding of the flattened map."""

  def __init__(self, in_ch: int, hw: tuple[int, int], width: int, embed_dim: int, rngs: nnx.Rngs):
    chans = (in_ch, width, 2 * width, 4 * width)
    self.convs = nnx.List([nnx.Conv(chans[i], chans[i + 1], (3, 3), strides=s, padding='SAME', rngs=rngs)
                           for i, s in enumerate((1, 2, 2))])
    flat = math.ceil(hw[0] / 4) * math.ceil(hw[1] / 4) * chans[-1]
    self.norm = nnx.LayerNorm(flat, rngs=rngs)
    self.out = nnx.Linear(flat, embed_dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = jax.nn.gelu(conv(x))
    y = self.out(self.norm(x.reshape(x.shape[0], -1)))
    return y / (jnp.linalg.norm(y, axis=-1, keepdims=True) + 1e-6)


class SyncExpert(nnx.Module):
  """embed_video: [N, W, c, c, 3] in [-1, 1] -> [N, E]; embed_audio: [N, W * m, n_mels] -> [N, E]; unit norm."""

  def __init__(self, window: int, mel_per_frame: int, n_mels: int, crop: int, width: int, embed_dim: int,
               rngs: nnx.Rngs):
    self.window, self.mel_per_frame, self.n_mels, self.crop = window, mel_per_frame, n_mels, crop
    self.video = _ConvStack(3 * window, (crop, crop), width, embed_dim, rngs)
    self.audio = _ConvStack(1, (window * mel_per_frame, n_mels), width, embed_dim, rngs)
    # Logical axis names for the shared trainer's sharding rules: all unnamed, i.e. replicated (a small model).
    for _, var in nnx.iter_graph(self):
      if isinstance(var, nnx.Param):
        var.set_metadata(out_sharding=(None,) * var.ndim, eager_sharding=False)

  def embed_video(self, v: jax.Array) -> jax.Array:
    n, w, h, ww, c = v.shape
    return self.video(jnp.moveaxis(v, 1, -2).reshape(n, h, ww, w * c))

  def embed_audio(self, a: jax.Array) -> jax.Array:
    return self.audio(a[..., None])


def build_sync_expert(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> SyncExpert:
  """The sync expert for a full config (data clock from config.data, sizes from config.eval.sync_expert)."""
  se = config.eval.sync_expert
  return SyncExpert(config.eval.sync_window_frames, config.data.mel_frames_per_video_frame, config.data.n_mels,
                    se.crop_size, se.width, se.embed_dim, rngs)


def crop_resize(video: jax.Array, box: jax.Array, size: int) -> jax.Array:
  """Crops box (y0, x0, y1, x1) pixels out of video [T, H, W, C] and resizes it (bilinear) to [T, size, size, C]."""
  box = jnp.asarray(box, jnp.float32)
  scale = jnp.stack([size / (box[2] - box[0]), size / (box[3] - box[1])])
  trans = -box[:2] * scale
  t, _, _, c = video.shape
  return jax.image.scale_and_translate(video.astype(jnp.float32), (t, size, size, c), (1, 2), scale, trans,
                                       'linear', antialias=True)


def video_windows(frames: jax.Array, window: int) -> jax.Array:
  """[T, ...] -> [T - window + 1, window, ...]: window i holds frames i .. i + window - 1."""
  n = frames.shape[0] - window + 1
  return jnp.stack([frames[i:i + n] for i in range(window)], axis=1)


def audio_windows(mel: jax.Array, window: int, mel_per_frame: int) -> jax.Array:
  """Mel [T * m, F] -> [T - window + 1, window * m, F]: window i starts at mel frame i * m (video frame i)."""
  t = mel.shape[0] // mel_per_frame
  n = t - window + 1
  idx = jnp.arange(n)[:, None] * mel_per_frame + jnp.arange(window * mel_per_frame)[None]
  return mel[idx]


def clip_windows(video: jax.Array, mel: jax.Array, box: jax.Array, window: int, mel_per_frame: int,
                 crop: int) -> tuple[jax.Array, jax.Array]:
  """One clip -> (video windows [N, W, crop, crop, 3] in [-1, 1], mel windows [N, W * m, F]), N = T - W + 1.

  video: [T, H, W, 3], uint8 (0..255) or float in [-1, 1]; box: (y0, x0, y1, x1) pixels (whole frame if pre-cropped).
  """
  v = crop_resize(frames_lib.as_float(video), box, crop)
  return video_windows(v, window), audio_windows(mel, window, mel_per_frame)


def embed_clip(model: SyncExpert, video: jax.Array, mel: jax.Array, box: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-window embeddings of one clip: (video [N, E], audio [N, E])."""
  vw, aw = clip_windows(video, mel, box, model.window, model.mel_per_frame, model.crop)
  return model.embed_video(vw), model.embed_audio(aw)


def batch_boxes(batch: dict, crop_box=()) -> jax.Array:
  """Crop boxes int32 [B, 4] (y0, x0, y1, x1) of a batch: `crop_box` for every clip when given (an expert for
  real clips with one known mouth region, config.eval.crop_box), else the batch's per-clip `mouth_box`, else whole
  frames."""
  b, _, h, w, _ = batch['video'].shape
  if crop_box:
    return jnp.tile(jnp.asarray([tuple(crop_box)], jnp.int32), (b, 1))
  if 'mouth_box' in batch:
    return jnp.asarray(batch['mouth_box'], jnp.int32)
  return jnp.tile(jnp.asarray([(0, 0, h, w)], jnp.int32), (b, 1))


def contrastive_loss(model: SyncExpert, batch: dict, temperature: float, crop_box=()) -> tuple[jax.Array, dict]:
  """InfoNCE over a batch: every video window of every clip against every audio window of the batch; its own
  in-sync audio window is the positive, the same clip's audio at every other time shift and all other clips'
  windows are the negatives. logits = -||v - a||^2 / temperature, cross-entropy in both directions.

  batch: video [B, T, H, W, 3] (uint8 or [-1, 1]), audio_mel [B, T_a, F], optional mouth_box int [B, 4].
  """
  windows = jax.vmap(clip_windows, in_axes=(0, 0, 0, None, None, None))
  vw, aw = windows(jnp.asarray(batch['video']), jnp.asarray(batch['audio_mel']), batch_boxes(batch, crop_box),
                   model.window, model.mel_per_frame, model.crop)
  b, n = vw.shape[:2]
  v = model.embed_video(vw.reshape(b * n, *vw.shape[2:]))
  a = model.embed_audio(aw.reshape(b * n, *aw.shape[2:]))
  d2 = jnp.sum(v ** 2, -1)[:, None] + jnp.sum(a ** 2, -1)[None] - 2 * v @ a.T
  logits = -d2 / temperature
  labels = jnp.arange(b * n)
  loss = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
                + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean())
  # Accuracy of picking the in-sync window among the same clip's time shifts (the scoring task).
  same = d2.reshape(b, n, b, n)[jnp.arange(b), :, jnp.arange(b), :]  # [B, N, N]
  shift_acc = jnp.mean(jnp.argmin(same, axis=-1) == jnp.arange(n)[None])
  return loss, {'loss': loss, 'shift_accuracy': shift_acc, 'pos_dist': jnp.mean(jnp.sqrt(jnp.diag(d2) + 1e-12))}


LEGACY_CHECKPOINT_DIR = 'sync_expert_checkpoints'  # Params-only checkpoints of the former standalone trainer.


def load(workdir: str, config: ml_collections.ConfigDict | None = None) -> SyncExpert:
  """The sync expert trained in workdir (EMA params of the training loop's checkpoint; sizes from `config` or
  W/config.json). Experts saved by the former standalone trainer (W/sync_expert_checkpoints) load too."""
  config = config or checkpoint.load_config(workdir)
  model = build_sync_expert(config, nnx.Rngs(0))
  legacy = str(run_dir.RunDir(workdir) / LEGACY_CHECKPOINT_DIR)
  if not epath.Path(legacy).exists():
    return checkpoint.restore_params(workdir, model, ema=True)
  with ocp.CheckpointManager(legacy) as mgr:
    step = mgr.latest_step()
    if step is None:
      raise FileNotFoundError(f'no sync expert checkpoint in {legacy}')
    nnx.update(model, mgr.restore(step, args=ocp.args.StandardRestore(nnx.state(model, nnx.Param))))
  return model
