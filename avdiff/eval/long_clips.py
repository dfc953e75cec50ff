"""Measures of talking clips generated in windows (`avdiff.long_clips`): is a long clip as well synced as one window,
are the window boundaries visible, and does the speaker stay the same?

All on the readers of `avdiff.eval.outcomes` (mouth opening in the speaker's mouth region, audio envelope, face
colour), at the video frame rate:
  sync     Pearson r of mouth opening and audio envelope over the whole clip, and its mean over consecutive
           segments of one window's length (comparable with a single-window clip); offsets per segment.
  seams    frame difference (mean |frame_t - frame_t-1| over the picture, 0-255) on the transitions into a window's
           own frames against the other transitions at the same place in the token grid (a model whose video tokens
           span p frames changes its picture more from one token to the next than within one: the generated clips
           alternate by 3x at p = 2, so a plain mean over all transitions would call every boundary a seam), and
           sync r over spans centred on the boundaries against
           spans of the same length centred inside windows. Ground truth at the same frames is the reference:
           a real clip has no boundary, so its ratio is what chance gives.
  identity the speaker classifier on each window's own frames (accuracy against the conditioning label, and the
           share of clips whose windows all agree), and the face colour's drift: RGB distance in [0, 1] between the
           first and the last window's median face colour.
"""

from __future__ import annotations

from typing import Optional, Sequence

import ml_collections
import numpy as np

from avdiff.data import builders
from avdiff.data import synthetic
from avdiff.eval import outcomes
from avdiff.eval import shift as shift_lib
from avdiff.eval import stats


def held_out(data_cfg: ml_collections.ConfigDict, windows: float, num: int) -> list[builders.Clip]:
  """The test split's first `num` seeds of `talking` drawn `windows` x data.clip_seconds long: the speakers of the
  held-out clips, with speech no training clip has (`synthetic.make_clip` at that length)."""
  d = data_cfg.copy_and_resolve_references()
  d.clip_seconds = float(data_cfg.clip_seconds) * windows
  first = builders.SPLIT_SEED_OFFSET['test']
  return [synthetic.make_clip('talking', first + i, d) for i in range(num)]


def _part(clip: builders.Clip, a: int, b: int, data_cfg: ml_collections.ConfigDict,
          audio: Optional[np.ndarray] = None) -> builders.Clip:
  """Frames [a, b) of a clip and the audio under them (`audio` instead of its own)."""
  per_frame = int(round(data_cfg.sample_rate / data_cfg.fps))
  wave = clip['audio'] if audio is None else audio
  return {'video': clip['video'][a:b], 'audio': wave[a * per_frame:b * per_frame], 'label': clip['label']}


def frame_differences(video: np.ndarray) -> np.ndarray:
  """float [T - 1]: mean absolute difference of frame t + 1 and frame t over the picture (uint8 units)."""
  v = np.asarray(video, np.float32)
  return np.abs(np.diff(v, axis=0)).mean(axis=(1, 2, 3))


def seam_ratio(video: np.ndarray, boundaries: Sequence[int], period: int = 1) -> float:
  """Mean frame difference on the transitions into `boundaries` / on the transitions into the other frames f with
  f = b mod period (NaN without boundaries). period: video frames per token step, so both sides are token edges."""
  d = frame_differences(video)
  into = np.arange(1, len(d) + 1)  # d[i] is the transition into frame i + 1.
  at = np.isin(into, [b for b in boundaries if 0 < b <= len(d)])
  same_phase = np.isin(into % period, [b % period for b in boundaries])
  rest = same_phase & ~at
  if not at.any() or not rest.any():
    return float('nan')
  return float(d[at].mean() / max(d[rest].mean(), 1e-6))


def _span_r(clip: builders.Clip, centres: Sequence[int], half: int, data_cfg: ml_collections.ConfigDict,
            audio: np.ndarray) -> list[float]:
  """sync r over [c - half, c + half) for each centre that fits in the clip."""
  t = len(clip['video'])
  return [outcomes.sync_r(_part(clip, c - half, c + half, data_cfg, audio), data_cfg)
          for c in centres if c - half >= 0 and c + half <= t]


def _segments(frames: int, window: int) -> list[tuple[int, int]]:
  return [(a, a + window) for a in range(0, frames - window + 1, window)]


def measure(held_out: Sequence[builders.Clip], generated: Sequence[builders.Clip], data_cfg: ml_collections.ConfigDict,
            boundaries: Sequence[int], windows: Sequence[tuple[int, int]], window: int, token_frames: int = 1,
            classifier: Optional[outcomes.SpeakerClassifier] = None, max_offset: int = 6, seed: int = 0) -> dict:
  """Measures of audio_to_video clips generated for the held-out clips' audio (all clips of one length).

  Args:
    held_out: ground truth (video, audio, label); generated: aligned with it (video for the held-out audio).
    boundaries: frames where a window's own frames begin (`long_clips.Plan.boundaries`); empty for one window.
    windows: [first, end) frames each window contributes (`Plan.own`).
    window: frames per window (the segment length of the per-segment sync).
    token_frames: video frames per token step (`seam_ratio`'s period).
    classifier: speaker classifier (None: identity not measured).
  Returns:
    {name: {'mean', 'std', 'n', 'undecided'} or float}: r, shuffled_r (2 clips or more), segment_r, offset_within_1,
    mouth_offset_within_1, seam_ratio, ground_truth_seam_ratio, seam_r, inside_r, speaker_accuracy,
    speaker_consistent, colour_drift, ground_truth_colour_drift.
  """
  segs = _segments(len(held_out[0]['video']), window)
  summary = lambda v: stats.summarize(v).outcome_dict()
  out = {'r': summary([outcomes.sync_r(g, data_cfg, h['audio']) for g, h in zip(generated, held_out)])}
  if len(held_out) > 1:  # Another clip's audio to pair each one with.
    others = shift_lib.shuffled_audio(held_out, seed)
    out['shuffled_r'] = summary([outcomes.sync_r(g, data_cfg, a) for g, a in zip(generated, others)])
  seg_r, within, mouth_within = [], [], []
  for g, h in zip(generated, held_out):
    parts = [_part(g, a, b, data_cfg, h['audio']) for a, b in segs]
    seg_r.append(float(np.nanmean([outcomes.sync_r(p, data_cfg) for p in parts])))
    within += [abs(outcomes.energy_change_offset(p, data_cfg, max_offset).offset_frames) <= 1 for p in parts]
    mouth_within += [abs(outcomes.mouth_level_offset(p, data_cfg, max_offset).offset_frames) <= 1 for p in parts]
  out.update(segment_r=summary(seg_r), offset_within_1=float(np.mean(within)),
             mouth_offset_within_1=float(np.mean(mouth_within)))
  if boundaries:
    half = window // 4
    centres = [(a + b) // 2 for a, b in windows]
    out['seam_ratio'] = summary([seam_ratio(g['video'], boundaries, token_frames) for g in generated])
    out['ground_truth_seam_ratio'] = summary([seam_ratio(h['video'], boundaries, token_frames) for h in held_out])
    out['seam_r'] = summary(sum((_span_r(g, boundaries, half, data_cfg, h['audio'])
                                 for g, h in zip(generated, held_out)), []))
    out['inside_r'] = summary(sum((_span_r(g, centres, half, data_cfg, h['audio'])
                                   for g, h in zip(generated, held_out)), []))
  if classifier is not None:
    per_window = [[classifier.predict(g['video'][a:b]) for a, b in windows] for g in generated]
    out['speaker_accuracy'] = float(np.mean([p == int(h['label']) for ps, h in zip(per_window, held_out)
                                             for p in ps]))
    out['speaker_consistent'] = float(np.mean([len(set(ps)) == 1 for ps in per_window]))
  (a0, b0), (a1, b1) = windows[0], windows[-1]
  drift = lambda v: float(np.linalg.norm(outcomes.face_colour(v[a0:b0]) - outcomes.face_colour(v[a1:b1])))
  out['colour_drift'] = summary([drift(g['video']) for g in generated])
  out['ground_truth_colour_drift'] = summary([drift(h['video']) for h in held_out])
  return out


def measure_video_to_audio(held_out: Sequence[builders.Clip], generated: Sequence[builders.Clip],
                           data_cfg: ml_collections.ConfigDict, window: int, seed: int = 0) -> dict:
  """video_to_audio clips generated for the held-out clips' frames: {'r', 'segment_r', 'shuffled_r'}, the sync r of
  the given mouth with the generated audio's envelope over the whole clip, its mean over window-long segments, and
  against another clip's generated audio."""
  summary = lambda v: stats.summarize(v).outcome_dict()
  segs = _segments(len(held_out[0]['video']), window)
  others = shift_lib.shuffled_audio(generated, seed) if len(generated) > 1 else None
  out = {'r': summary([outcomes.sync_r(h, data_cfg, g['audio']) for g, h in zip(generated, held_out)]),
         'segment_r': summary([float(np.nanmean([outcomes.sync_r(_part(h, a, b, data_cfg, g['audio']), data_cfg)
                                                 for a, b in segs])) for g, h in zip(generated, held_out)])}
  if others is not None:
    out['shuffled_r'] = summary([outcomes.sync_r(h, data_cfg, a) for h, a in zip(held_out, others)])
  return out
