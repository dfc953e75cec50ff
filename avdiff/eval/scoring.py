"""Per-clip scoring with every available metric, and aggregation of per-clip results (mean, bootstrap CI).

A clip is video uint8 [T, H, W, 3] at data.fps Hz + mono audio float [S] at data.sample_rate Hz (+ an optional
mouth box). Clips that cannot be scored raise `UnscorableClip(reason)`; runners count them, never crash.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from avdiff import checkpoint
from avdiff.data import audio as audio_lib
from avdiff.data import builders
from avdiff.eval import av_align as av_align_lib
from avdiff.eval import lipsync
from avdiff.eval import offsets
from avdiff.eval import shift as shift_lib
from avdiff.eval import stats
from avdiff.eval import sync_expert as se_lib


class UnscorableClip(ValueError):
  """The clip cannot be scored; the message is the reason written into the result file."""


MelFn = Callable[[np.ndarray], np.ndarray]  # waveform [S] -> normalized log-mel [T_a, n_mels]


def default_mel_fn(data_cfg: ml_collections.ConfigDict) -> MelFn:
  """The training pipeline's log-mel (avdiff.data.audio.log_mel), so the expert sees the features it trained on."""
  return lambda wave: np.asarray(audio_lib.log_mel(np.asarray(wave, np.float32), data_cfg))


class ExpertScorer:
  """Scores clips with a trained sync expert under the SyncNet protocol (jit-compiled embedding, functional form)."""

  def __init__(self, model: se_lib.SyncExpert, config: ml_collections.ConfigDict, mel_fn: Optional[MelFn] = None,
               crop_box=()):
    """crop_box: (y0, x0, y1, x1) used instead of each clip's box (an expert trained on one fixed crop)."""
    self.config = config
    self.crop_box = tuple(crop_box)
    self.mel_fn = mel_fn or default_mel_fn(config.data)
    graphdef, state = nnx.split(model)
    self._state = state
    self._embed = jax.jit(lambda st, v, m, b: se_lib.embed_clip(nnx.merge(graphdef, st), v, m, b))
    self.window = model.window

  def embeddings(self, video: np.ndarray, audio: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """Per-window (video [N, E], audio [N, E]) embeddings of one clip."""
    d = self.config.data
    mel = self.mel_fn(audio)
    need = len(video) * d.mel_frames_per_video_frame
    mel = mel[:need] if len(mel) >= need else np.pad(mel, ((0, need - len(mel)), (0, 0)), constant_values=-1.0)
    box = self.crop_box or box
    v, a = self._embed(self._state, jnp.asarray(video), jnp.asarray(mel), jnp.asarray(box, jnp.int32))
    return np.asarray(v), np.asarray(a)

  def __call__(self, video: np.ndarray, audio: np.ndarray, box) -> lipsync.LipSyncResult:
    v, a = self.embeddings(video, audio, box)
    return lipsync.score_embeddings(v, a, self.config.eval.max_offset_frames)


def full_box(video: np.ndarray) -> tuple[int, int, int, int]:
  return (0, 0, video.shape[1], video.shape[2])


def sync_box(config: ml_collections.ConfigDict, video: np.ndarray, mouth_box=None) -> tuple[int, int, int, int]:
  """The region sync is measured in: the clip's mouth box, else config.eval.crop_box, else the whole frame."""
  if mouth_box is not None:
    return tuple(int(b) for b in mouth_box)
  if config.eval.crop_box:
    return tuple(int(b) for b in config.eval.crop_box)
  return full_box(video)


def score_clip(video: np.ndarray, audio: np.ndarray, config: ml_collections.ConfigDict, mouth_box=None,
               expert: Optional[ExpertScorer] = None) -> dict:
  """All metrics of one clip (dict of floats / ints / str). Raises UnscorableClip.

  envelope_offset_frames / envelope_peak_correlation: the best lag and its correlation of motion energy in the
  measured region vs audio energy change (avdiff.eval.offsets, mouth_envelope signals), whether or not the estimator
  decides (0 and NaN when a signal is constant).
  offset_frames / offset_confidence come from the sync expert (LSE-C) when one is given, else from the weight-free
  estimator of avdiff.eval.offsets: that same mouth_envelope estimate where a mouth region is known (the clip's box or
  crop_box), onset_motion otherwise; those give NaN and an `offset_reason` when they cannot decide. `offset_source`
  says which.
  """
  d, ev = config.data, config.eval
  if video is None or len(video) == 0:
    raise UnscorableClip('no video frames')
  if audio is None or len(audio) == 0:
    raise UnscorableClip('no audio')
  video, audio = np.asarray(video), np.asarray(audio, np.float32)
  min_frames = max(ev.sync_window_frames, 3) + 1
  if len(video) < min_frames:
    raise UnscorableClip(f'too short: {len(video)} frames < {min_frames}')
  if not np.any(np.abs(audio) > 1e-6):
    raise UnscorableClip('silent audio')
  box = sync_box(config, video, mouth_box)
  out = av_align_lib.av_align(video, audio, d.fps, d.sample_rate, ev.av_align_variant).as_dict()
  signals = offsets.envelope_motion_signals(offsets.motion_energy(video, box), audio, d.fps, d.sample_rate)
  env = offsets.estimate_offset(*signals, ev.max_offset_frames, offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE)
  out['envelope_offset_frames'] = int(env.lag_frames) if math.isfinite(env.lag_frames) else 0
  out['envelope_peak_correlation'] = env.confidence
  if expert is not None:
    out.update(expert(video, audio, box).as_dict())
    out['offset_source'] = 'sync_expert'
  else:
    if mouth_box is not None or ev.crop_box:
      est = env
    else:
      onsets = offsets.onset_events(audio, d.sample_rate, d.fps)
      est = offsets.estimate_offset(offsets.flow_change_trajectory(video), onsets, ev.max_offset_frames,
                                    offsets.ONSET_MOTION_MIN_CONFIDENCE)
    out.update(est.as_dict())
    out['offset_source'] = est.method
  out['abs_offset_frames'] = abs(out['offset_frames'])
  return out


def aggregate(per_clip: list[dict], num_bootstrap: int, seed: int) -> dict:
  """metric -> {mean, median, ci95, n, n_nan} over clips (avdiff.eval.stats.summarize), for every numeric metric
  (NaN values skipped and counted)."""
  keys = sorted({k for r in per_clip for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
  out = {k: stats.summarize([r[k] for r in per_clip if k in r], num_bootstrap, seed).metric_dict() for k in keys}
  offs = np.asarray([r['offset_frames'] for r in per_clip if 'offset_frames' in r], np.float64)
  if len(offs):
    determined = offs[np.isfinite(offs)]
    out['offset_determined_rate'] = {'mean': float(len(determined) / len(offs)), 'n': int(len(offs))}
    out['offset_exact_rate'] = {'mean': float(np.mean(determined == 0)) if len(determined) else math.nan,
                                'n': int(len(determined))}  # Of the determined offsets.
  return out


def load_scorer(workdir: str, config: Optional[ml_collections.ConfigDict] = None) -> ExpertScorer:
  """ExpertScorer of the sync expert trained in workdir, scoring clips on the data clock of `config` (default: the
  expert's own). An expert trained on one fixed crop (its config's eval.crop_box) scores with that crop too."""
  own = checkpoint.load_config(workdir)
  return ExpertScorer(se_lib.load(workdir, own), config or own, crop_box=tuple(own.eval.crop_box))


def shift_recovery(expert, config: ml_collections.ConfigDict, split: str = 'validation', num_clips: int = 32,
                   clips: Optional[list[dict]] = None, max_shift: int = 5) -> dict:
  """Shifts held-out audio by k in -max_shift..max_shift frames: rate of exact / within-one-frame recovery of k,
  and LSE-C / LSE-D of true vs shuffled (other clip's) audio. expert: a SyncExpert or an ExpertScorer; clips:
  default the first num_clips of `split`."""
  d = config.data
  clips = clips if clips is not None else builders.load_clips(config, split, num_clips)
  scorer = expert if isinstance(expert, ExpertScorer) else ExpertScorer(expert, config)
  exact = near = total = 0
  for c in clips:
    for k in range(-max_shift, max_shift + 1):
      r = scorer(c['video'], shift_lib.shift_audio(c['audio'], k, d.fps, d.sample_rate), c['mouth_box'])
      exact += r.offset_frames == k
      near += abs(r.offset_frames - k) <= 1
      total += 1
  true = [scorer(c['video'], c['audio'], c['mouth_box']) for c in clips]
  others = shift_lib.shuffled_audio(clips, config.eval.seed)
  shuf = [scorer(c['video'], a, c['mouth_box']) for c, a in zip(clips, others)]
  mean = lambda results, key: float(np.mean([getattr(r, key) for r in results]))
  return {'exact': exact / total, 'within_one': near / total, 'num_clips': len(clips),
          'lse_c_true': mean(true, 'lse_c'), 'lse_c_shuffled': mean(shuf, 'lse_c'),
          'lse_d_true': mean(true, 'lse_d'), 'lse_d_shuffled': mean(shuf, 'lse_d')}
