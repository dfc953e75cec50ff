"""Contrastive training of the sync expert: the loss, a Task for the shared loop, and a small standalone loop.

Loss (InfoNCE over a batch): every video window of every clip is scored against every audio window of the batch;
its own in-sync audio window is the positive, the same clip's audio at every other time shift and all other clips'
windows are the negatives. logits = -||v - a||^2 / temperature, cross-entropy in both directions.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from avdiff.eval import sync_expert as se_lib

CHECKPOINT_DIR = 'sync_expert_checkpoints'


def batch_boxes(batch: dict, default_box=()) -> jax.Array:
  """Mouth boxes int32 [B, 4] of a batch: its `mouth_box`, else `default_box` (y0, x0, y1, x1), else whole frames."""
  if 'mouth_box' in batch:
    return jnp.asarray(batch['mouth_box'])
  b, _, h, w, _ = batch['video'].shape
  box = tuple(default_box) if default_box else (0, 0, h, w)
  return jnp.tile(jnp.asarray([box], jnp.int32), (b, 1))


def contrastive_loss(model: se_lib.SyncExpert, batch: dict, temperature: float,
                     default_box=()) -> tuple[jax.Array, dict]:
  """batch: video [B, T, H, W, 3] (uint8 or [-1, 1]), audio_mel [B, T_a, F], optional mouth_box [B, 4]."""
  windows = jax.vmap(se_lib.clip_windows, in_axes=(0, 0, 0, None, None, None))
  vw, aw = windows(jnp.asarray(batch['video']), jnp.asarray(batch['audio_mel']), batch_boxes(batch, default_box),
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


class SyncExpertTask:
  """Task for the shared training loop (avdiff.train.loop.train): the sync expert and its contrastive loss.

  Batches without `mouth_box` (the shared loop sends only video / audio_mel / label / audio to the device) are
  cropped to config.eval.crop_box, or not at all when that is empty.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def build_model(self, config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> se_lib.SyncExpert:
    return se_lib.build_sync_expert(config, rngs)

  def loss(self, model: se_lib.SyncExpert, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # Deterministic given the batch.
    return contrastive_loss(model, batch, self.config.eval.sync_expert.temperature, self.config.eval.crop_box)


def _optimizer(se: ml_collections.ConfigDict, steps: int) -> optax.GradientTransformation:
  warmup = max(1, min(steps // 10, 100))
  schedule = optax.warmup_cosine_decay_schedule(0.0, se.learning_rate, warmup, max(steps, warmup + 1),
                                                se.learning_rate * 0.05)
  return optax.adam(schedule)


def train(config: ml_collections.ConfigDict, batches: Iterable[dict], steps: int | None = None,
          log_every: int = 50, log_fn=print) -> tuple[se_lib.SyncExpert, list[dict]]:
  """Standalone optax loop: `steps` updates on host batches (keys as in `contrastive_loss`).

  Functional hot loop: nnx.split -> jax.jit(pure step) -> nnx.merge. Returns the trained model and logged metrics.
  """
  se = config.eval.sync_expert
  steps = steps or se.steps
  model = se_lib.build_sync_expert(config, nnx.Rngs(config.seed))
  graphdef, params = nnx.split(model)
  tx = _optimizer(se, steps)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss_fn(p):
      return contrastive_loss(nnx.merge(graphdef, p), batch, se.temperature)
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  history, it = [], iter(batches)
  for i in range(steps):
    batch = {k: v for k, v in next(it).items() if k in ('video', 'audio_mel', 'mouth_box')}
    params, opt_state, metrics = step(params, opt_state, batch)
    if (i + 1) % log_every == 0 or i + 1 == steps:
      m = {'step': i + 1, **{k: float(v) for k, v in metrics.items()}}
      history.append(m)
      if log_fn:
        log_fn(json.dumps(m))
  return nnx.merge(graphdef, params), history


def save(model: se_lib.SyncExpert, config: ml_collections.ConfigDict, workdir: str, step: int) -> str:
  """Saves params (Orbax) and config.json under workdir; returns the checkpoint directory."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  path = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  with ocp.CheckpointManager(path) as mgr:
    mgr.save(step, args=ocp.args.StandardSave(nnx.state(model, nnx.Param)))
    mgr.wait_until_finished()
  return path


def load(workdir: str, config: ml_collections.ConfigDict | None = None) -> se_lib.SyncExpert:
  """Restores a sync expert: saved by `save` (standalone loop) or by the shared loop (its EMA params).

  Sizes come from `config` or W/config.json.
  """
  from avdiff.train import checkpoint  # pylint: disable=g-import-not-at-top
  config = config or checkpoint.load_config(workdir)
  model = se_lib.build_sync_expert(config, nnx.Rngs(0))
  own = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  if not os.path.isdir(own):
    return checkpoint.restore_params(workdir, config, model=model, ema=True)
  with ocp.CheckpointManager(own) as mgr:
    step = mgr.latest_step()
    if step is None:
      raise FileNotFoundError(f'no sync expert checkpoint in {own}')
    restored = mgr.restore(step, args=ocp.args.StandardRestore(nnx.state(model, nnx.Param)))
  nnx.update(model, restored)
  return model


def load_scorer(workdir: str, config: ml_collections.ConfigDict | None = None):
  """ExpertScorer of the expert in workdir, scoring clips with the data clock of `config` (default: its own).

  An expert trained by the shared loop saw fixed crops (its config's eval.crop_box): it scores with that box too.
  """
  from avdiff.eval import scoring  # pylint: disable=g-import-not-at-top
  from avdiff.train import checkpoint  # pylint: disable=g-import-not-at-top
  own_cfg = checkpoint.load_config(workdir)
  model = load(workdir, own_cfg)
  shared = not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR))
  return scoring.ExpertScorer(model, config or own_cfg, fixed_box=tuple(own_cfg.eval.crop_box) if shared else ())


def union_mouth_box(config: ml_collections.ConfigDict, num: int = 256) -> tuple[int, int, int, int]:
  """Smallest box (y0, x0, y1, x1) holding the mouth box of the first `num` training clips."""
  from avdiff.data import builders  # pylint: disable=g-import-not-at-top
  source = builders.load_source(config, 'train')
  boxes = np.stack([np.asarray(source[i]['mouth_box']) for i in range(min(num, len(source)))])
  return (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))


def shared_loop_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The run config for training the expert with avdiff.train.loop.train (train.* from eval.sync_expert)."""
  cfg = copy.deepcopy(config)
  se, t = cfg.eval.sync_expert, cfg.train
  t.steps, t.global_batch_size, t.learning_rate = se.steps, se.batch_size, se.learning_rate
  t.warmup_steps = max(1, min(100, se.steps // 10))
  t.sample_every, t.eval_every, t.eval_samples, t.grad_accum_steps = 0, 0, False, 1
  t.checkpoint_every = se.steps
  t.ema_decay = min(0.99, max(0.0, 1.0 - 10.0 / se.steps))  # Short runs: EMA must not stay near the init.
  t.log_every = max(1, se.steps // 30)
  if not cfg.eval.crop_box and cfg.data.dataset == 'talking':
    # The shared loop does not send mouth_box to the device: train (and later score) on one fixed mouth region.
    cfg.eval.crop_box = union_mouth_box(cfg)
  return cfg


def train_with_shared_loop(config: ml_collections.ConfigDict, workdir: str) -> se_lib.SyncExpert:
  """Trains with the shared loop (resumable, sharded, logged like every other run) and returns the EMA expert."""
  from avdiff.train import loop  # pylint: disable=g-import-not-at-top
  cfg = shared_loop_config(config)
  loop.train(cfg, workdir, SyncExpertTask(cfg))
  return load(workdir, cfg)


def stack_clips(clips: list[dict]) -> dict:
  """List of per-clip dicts -> batch dict of stacked numpy arrays."""
  return {k: np.stack([c[k] for c in clips]) for k in clips[0]}


def train_from_pipeline(config: ml_collections.ConfigDict, workdir: str) -> tuple[se_lib.SyncExpert, list[dict]]:
  """Trains on the train split via avdiff.data.pipeline.InputPipeline and saves to workdir."""
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  se = config.eval.sync_expert
  batches = pipeline.InputPipeline(config, 'train', shuffle=True, num_epochs=None, batch_size=se.batch_size,
                                   seed=config.seed)
  log_path = os.path.join(workdir, 'metrics.jsonl')
  os.makedirs(workdir, exist_ok=True)
  with open(log_path, 'a') as log:
    def log_fn(line):
      print(line)
      log.write(line + '\n')
      log.flush()
    model, history = train(config, batches, se.steps, log_every=max(1, se.steps // 30), log_fn=log_fn)
  save(model, config, workdir, se.steps)
  return model, history


def shift_recovery(expert, config: ml_collections.ConfigDict, split: str = 'validation', num_clips: int = 32,
                   clips: list[dict] | None = None, max_shift: int = 5) -> dict:
  """Shifts held-out audio by k in -max_shift..max_shift frames: rate of exact / within-one-frame recovery of k,
  and LSE-C / LSE-D of true vs shuffled (other clip's) audio. expert: a SyncExpert or a scoring.ExpertScorer."""
  from avdiff.eval import scoring, shift  # pylint: disable=g-import-not-at-top
  d = config.data
  if clips is None:
    from avdiff.eval import runner  # pylint: disable=g-import-not-at-top
    clips = runner.load_split_clips(config, split, num_clips)
  scorer = expert if isinstance(expert, scoring.ExpertScorer) else scoring.ExpertScorer(expert, config)
  exact = near = total = 0
  for c in clips:
    for k in range(-max_shift, max_shift + 1):
      r = scorer(c['video'], shift.shift_audio(c['audio'], k, d.fps, d.sample_rate), c['mouth_box'])
      exact += r.offset_frames == k
      near += abs(r.offset_frames - k) <= 1
      total += 1
  perm = shift.derangement(len(clips), np.random.default_rng(config.eval.seed))
  true = [scorer(c['video'], c['audio'], c['mouth_box']) for c in clips]
  shuf = [scorer(c['video'], clips[j]['audio'], c['mouth_box']) for c, j in zip(clips, perm)]
  mean = lambda results, key: float(np.mean([getattr(r, key) for r in results]))
  return {'exact': exact / total, 'within_one': near / total, 'num_clips': len(clips),
          'lse_c_true': mean(true, 'lse_c'), 'lse_c_shuffled': mean(shuf, 'lse_c'),
          'lse_d_true': mean(true, 'lse_d'), 'lse_d_shuffled': mean(shuf, 'lse_d')}
