"""Outcome measures of the main job on `talking` clips: does generated sound and picture move together?

Weight-free readers of what a talking-face clip shows and says, at the video frame rate:
  mouth opening  darkness of the green channel over the region where the speaker's mouth can be
                 (`synthetic.talking_mouth_region`): the mouth is dark red on a light face, so the mean of
                 1 - G / 255 there grows with the mouth's area. Validated against the dataset's `mouth_open`
                 (`reader_validation`; r >= 0.95 is the bar).
  audio envelope RMS of the waveform over each video frame (the generator's mouth opening is the speech envelope's
                 RMS over the frame).
  speaker        nearest class centroid of the clip's face colour (median over the face centre and the frames);
                 fitted on the train split.
Pearson r between two such trajectories is the sync measure (avdiff.eval.stats.pearson); a clip whose trajectory is
constant gives NaN and is counted, not averaged. Offsets come from the one estimator, avdiff.eval.offsets, with no
confidence floor. `verdict` turns the measures into the main job's targets (value, threshold, met or not).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import ml_collections
import numpy as np

from avdiff.data import builders
from avdiff.data import synthetic
from avdiff.eval import offsets
from avdiff.eval import shift as shift_lib
from avdiff.eval import stats

def mouth_opening(video: np.ndarray, box: Sequence[int]) -> np.ndarray:
  """float [T]: mean 1 - G / 255 over box (y0, x0, y1, x1) of video uint8 [T, H, W, 3]."""
  y0, x0, y1, x1 = (int(b) for b in box)
  return 1.0 - np.asarray(video[:, y0:y1, x0:x1, 1], np.float64).mean(axis=(1, 2)) / 255.0


def audio_envelope(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int) -> np.ndarray:
  """float [num_frames]: RMS of mono audio float [S] over each video frame [f / fps, (f + 1) / fps)."""
  return offsets.frame_rms(audio, num_frames, fps, sample_rate)


def reader_box(clip: builders.Clip, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """The box the mouth is read in: the speaker's mouth region over every head position (a generated clip's own
  geometry is unknown, so ground truth and samples are read in the same box)."""
  return synthetic.talking_mouth_region(int(clip['label']), data_cfg)


def mouth_and_envelope(clip: builders.Clip, data_cfg: ml_collections.ConfigDict,
                       audio: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
  """(mouth opening [T], audio envelope [T]) of a clip; `audio` replaces the clip's own waveform."""
  video = clip['video']
  env = audio_envelope(clip['audio'] if audio is None else audio, len(video), data_cfg.fps, data_cfg.sample_rate)
  return mouth_opening(video, reader_box(clip, data_cfg)), env


def sync_r(clip: builders.Clip, data_cfg: ml_collections.ConfigDict, audio: Optional[np.ndarray] = None) -> float:
  """Pearson r of the clip's mouth opening with its (or the given) audio's envelope."""
  return stats.pearson(*mouth_and_envelope(clip, data_cfg, audio))


def energy_change_offset(clip: builders.Clip, data_cfg: ml_collections.ConfigDict, max_offset: int,
                         audio: Optional[np.ndarray] = None) -> offsets.OffsetEstimate:
  """The mouth_envelope estimate (frames; + = audio late) in the mouth region: motion energy vs audio energy
  change, no confidence floor; NaN when undecidable (a constant signal, the best lag at +-max_offset)."""
  motion = offsets.motion_energy(clip['video'], reader_box(clip, data_cfg))
  signals = offsets.envelope_motion_signals(motion, clip['audio'] if audio is None else audio, data_cfg.fps,
                                            data_cfg.sample_rate)
  return offsets.estimate_offset(*signals, max_offset, min_confidence=None)


def mouth_level_offset(clip: builders.Clip, data_cfg: ml_collections.ConfigDict, max_offset: int,
                       audio: Optional[np.ndarray] = None) -> offsets.OffsetEstimate:
  """The estimate (frames; + = audio late) from the levels of the mouth opening and the audio envelope, where
  `energy_change_offset` correlates frame-to-frame changes, which double any per-frame jitter of a generated mouth;
  no confidence floor; NaN when undecidable."""
  return offsets.estimate_offset(*mouth_and_envelope(clip, data_cfg, audio), max_offset, min_confidence=None,
                                 method='mouth_level')


def reader_validation(clips: Sequence[builders.Clip], data_cfg: ml_collections.ConfigDict) -> dict:
  """How well the mouth reader follows the dataset's `mouth_open` and the envelope reader the audio, on ground-truth
  clips carrying `mouth_open` [T]: {'mouth_reader_r', 'envelope_reader_r'} (means over clips)."""
  mouth_r, env_r = [], []
  for c in clips:
    mouth, env = mouth_and_envelope(c, data_cfg)
    mouth_r.append(stats.pearson(mouth, c['mouth_open']))
    env_r.append(stats.pearson(env, c['mouth_open']))
  return {'mouth_reader_r': float(np.nanmean(mouth_r)), 'envelope_reader_r': float(np.nanmean(env_r))}


# ----------------------------------------------------------------------------- speaker classifier

def face_colour(video: np.ndarray) -> np.ndarray:
  """float [3]: median RGB in [0, 1] of the face centre (rows 30-55%, columns 30-70% of the frame; between the eyes
  and the mouth) over all frames of video uint8 [T, H, W, 3]. Medians ignore the background, eyes and mouth that
  enter the region when a head sways or a mouth opens."""
  h, w = video.shape[1:3]
  centre = np.asarray(video[:, int(0.3 * h):int(0.55 * h), int(0.3 * w):int(0.7 * w)], np.float32) / 255.0
  return np.median(centre.reshape(-1, 3), axis=0)


@dataclasses.dataclass
class SpeakerClassifier:
  """Nearest class centroid of the face colour (`fit` on labelled clips, then `predict`); `talking` speakers differ
  in hue (and face shape, which this does not use)."""
  centroids: np.ndarray  # [num_classes, D]
  classes: np.ndarray  # [num_classes] labels

  @classmethod
  def fit(cls, clips: Sequence[builders.Clip]) -> 'SpeakerClassifier':
    feats = np.stack([face_colour(c['video']) for c in clips])
    labels = np.asarray([int(c['label']) for c in clips])
    classes = np.unique(labels)
    return cls(np.stack([feats[labels == k].mean(0) for k in classes]), classes)

  def predict(self, video: np.ndarray) -> int:
    d = np.square(self.centroids - face_colour(video)[None]).sum(-1)
    return int(self.classes[int(np.argmin(d))])

  def accuracy(self, clips: Sequence[builders.Clip]) -> float:
    return float(np.mean([self.predict(c['video']) == int(c['label']) for c in clips]))


# ----------------------------------------------------------------------------- outcomes and verdict

def _summary(values) -> dict:
  return stats.summarize(values).outcome_dict()


def _within_1(estimates: Sequence[offsets.OffsetEstimate]) -> float:
  """Fraction of estimates with |offset| <= 1 frame (an undetermined one is not)."""
  return float(np.mean([abs(e.offset_frames) <= 1 for e in estimates]))


def measure(held_out: Sequence[builders.Clip], generated: dict, data_cfg: ml_collections.ConfigDict,
            classifier: Optional[SpeakerClassifier] = None, max_offset: int = 6, seed: int = 0) -> dict:
  """Outcome measures of generated clips against the held-out clips they were conditioned on.

  Args:
    held_out: ground-truth clips (video, audio, label, optional mouth_open).
    generated: {mode: clips aligned with held_out}; modes among 'audio_to_video' (video generated for the held-out
      audio), 'joint' (both generated for the label), 'video_to_audio' (audio generated for the held-out video).
    data_cfg: config.data (fps, sample_rate, resolution, num_speakers).
    classifier: speaker classifier for joint samples (None: not measured).
    max_offset: offsets searched, -K..K frames.
    seed: the pairing of each clip with another clip's audio (avdiff.eval.shift.shuffled_audio).
  Returns:
    {measure name: {'mean', 'std', 'n', 'undecided'} or a float}: ground_truth_r, shuffled_ground_truth_r, and per
    available mode a2v_r, a2v_shuffled_r, a2v_offset_within_1 (fraction of clips within one frame by
    `energy_change_offset`; a2v_mouth_offset_within_1 by `mouth_level_offset`), joint_r, joint_speaker_accuracy, v2a_r;
    plus the reader validation when the clips carry mouth_open.
  """
  others = shift_lib.shuffled_audio(held_out, seed)
  out = {'ground_truth_r': _summary([sync_r(c, data_cfg) for c in held_out]),
         'shuffled_ground_truth_r': _summary([sync_r(c, data_cfg, a) for c, a in zip(held_out, others)])}
  if all('mouth_open' in c for c in held_out):
    out.update(reader_validation(held_out, data_cfg))
  if classifier is not None:
    out['ground_truth_speaker_accuracy'] = classifier.accuracy(held_out)
  gen = generated.get('audio_to_video')
  if gen is not None:
    out['a2v_r'] = _summary([sync_r(g, data_cfg, h['audio']) for g, h in zip(gen, held_out)])
    out['a2v_shuffled_r'] = _summary([sync_r(g, data_cfg, a) for g, a in zip(gen, others)])
    for name, offset in (('a2v_offset_within_1', energy_change_offset),
                         ('a2v_mouth_offset_within_1', mouth_level_offset)):
      out[name] = _within_1([offset(g, data_cfg, max_offset, h['audio']) for g, h in zip(gen, held_out)])
  gen = generated.get('joint')
  if gen is not None:
    out['joint_r'] = _summary([sync_r(g, data_cfg) for g in gen])
    if classifier is not None:
      out['joint_speaker_accuracy'] = classifier.accuracy(gen)
  gen = generated.get('video_to_audio')
  if gen is not None:
    out['v2a_r'] = _summary([sync_r(h, data_cfg, g['audio']) for g, h in zip(gen, held_out)])  # Given mouth.
  return out


# (measure, statistic, comparison, threshold, what it says)
TARGETS = (
    ('mouth_reader_r', None, '>=', 0.95, 'mouth reader vs the dataset mouth_open (ground truth)'),
    ('a2v_r', 'mean', '>=', 0.8, 'audio_to_video: generated mouth vs conditioning audio envelope'),
    ('a2v_shuffled_r', 'abs_mean', '<=', 0.15, 'audio_to_video: generated mouth vs another clip\'s audio'),
    ('a2v_offset_within_1', None, '>=', 0.8, 'audio_to_video: clips with |offset| <= 1 frame'),
    ('joint_r', 'mean', '>=', 0.7, 'joint: generated mouth vs generated audio envelope'),
    ('ground_truth_speaker_accuracy', None, '>=', 0.95, 'speaker classifier on ground truth'),
    ('joint_speaker_accuracy', None, '>=', 0.8, 'joint: classifier names the conditioning speaker'),
    ('v2a_r', 'mean', '>=', 0.7, 'video_to_audio: generated audio envelope vs the given mouth'),
)


def verdict(measures: dict, targets=TARGETS) -> list[dict]:
  """One row per target present in `measures`: {'name', 'value', 'op', 'threshold', 'met', 'what'}."""
  rows = []
  for name, stat, op, threshold, what in targets:
    if name not in measures:
      continue
    m = measures[name]
    value = m if not isinstance(m, dict) else (abs(m['mean']) if stat == 'abs_mean' else m['mean'])
    value = float(value)
    met = bool(np.isfinite(value) and (value >= threshold if op == '>=' else value <= threshold))
    shown = f'|{name}|' if stat == 'abs_mean' else name
    rows.append({'name': shown, 'value': value, 'op': op, 'threshold': threshold, 'met': met, 'what': what})
  return rows


def verdict_markdown(rows: list[dict]) -> str:
  lines = ['| target | value | threshold | met |', '|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['name']} ({r['what']}) | {r['value']:.3f} | {r['op']} {r['threshold']:g} | "
                 f"{'yes' if r['met'] else '**no**'} |")
  return '\n'.join(lines) + '\n'
