"""Calibrates the confidence thresholds of the weight-free offset estimators (avdiff.eval.offsets).

    python -m benchmarks.calibrate_offsets [--clips=32] [--out=benchmarks/offsets_calibration.md]

True pairs: clips with audio shifted by k in -5..5 frames (known answer k). Unrelated pairs: a clip's video with
another clip's audio (no right answer: a determined offset there is a confident wrong number).
  onset_motion    avdiff.data.sync_clips.bouncing_ball at 25 and 30 fps, 64x64, 4 s, 16 kHz.
  mouth_envelope  the `talking` dataset's generator at configs/tiny.py's protocol (10 fps, 32x32), mouth box known.
For each threshold the table gives the share of true pairs that are determined, exact and within one frame among the
determined, and the share of unrelated pairs that are (wrongly) determined.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from avdiff.data import sync_clips  # pylint: disable=g-import-not-at-top
from avdiff.data import synthetic
from avdiff.eval import offsets
from avdiff.eval import shift
from benchmarks import report

SHIFTS = range(-5, 6)
MAX_OFFSET = 6


def onset_motion_pairs(num_clips: int, fps: float):
  clips = [sync_clips.bouncing_ball(s, fps=fps) for s in range(num_clips)]
  change = [offsets.flow_change_trajectory(c.video) for c in clips]
  true, unrelated = [], []
  for i, c in enumerate(clips):
    for k in SHIFTS:
      onsets = offsets.onset_events(shift.shift_audio(c.audio, k, fps, c.sample_rate), c.sample_rate, fps)
      true.append((k, offsets.estimate_offset(change[i], onsets, MAX_OFFSET, min_confidence=None)))
    for j in (1, 2, 3):
      other = clips[(i + j) % num_clips]
      onsets = offsets.onset_events(other.audio, other.sample_rate, fps)
      unrelated.append(offsets.estimate_offset(change[i], onsets, MAX_OFFSET, min_confidence=None))
  return true, unrelated


def mouth_envelope_pairs(num_clips: int):
  from configs import tiny  # pylint: disable=g-import-not-at-top
  d = tiny.get_config().data
  clips = [synthetic.talking_clip(3_000_000 + s, d) for s in range(num_clips)]
  motion = [offsets.motion_energy(c['video'], c['mouth_box']) for c in clips]
  estimate = lambda i, audio: offsets.estimate_offset(
      *offsets.envelope_motion_signals(motion[i], audio, d.fps, d.sample_rate), MAX_OFFSET, min_confidence=None)
  true, unrelated = [], []
  for i, c in enumerate(clips):
    for k in SHIFTS:
      audio = shift.shift_audio(c['audio'], k, d.fps, d.sample_rate)
      true.append((k, estimate(i, audio)))
    for j in (1, 2, 3):
      audio = clips[(i + j) % num_clips]['audio']
      unrelated.append(estimate(i, audio))
  return true, unrelated


def sweep(true, unrelated, thresholds) -> list[str]:
  conf = np.asarray([e.confidence for _, e in true])
  edge = np.asarray([not e.determined for _, e in true])  # With no floor only the edge / no-event rules abstain.
  err = np.asarray([round(e.lag_frames) - k if np.isfinite(e.lag_frames) else 99 for k, e in true])
  uconf = np.asarray([e.confidence if e.determined else -np.inf for e in unrelated])
  rows = ['| threshold | true pairs determined | exact (of determined) | within 1 (of determined) | '
          'unrelated pairs determined |', '|---|---|---|---|---|']
  for th in thresholds:
    det = (conf >= th) & ~edge
    n = max(det.sum(), 1)
    rows.append(f'| {th:.2f} | {det.mean():.3f} | {np.mean(err[det] == 0) if det.any() else np.nan:.3f} | '
                f'{np.mean(np.abs(err[det]) <= 1) if det.any() else np.nan:.3f} | {np.mean(uconf >= th):.3f} |')
    del n
  all_exact = np.mean(err[~edge] == 0)
  rows.append(f'\nWith no threshold: exact on {all_exact:.3f} of {len(true)} true pairs; confidence of true pairs '
              f'p10/p50 = {np.percentile(conf, 10):.2f}/{np.percentile(conf, 50):.2f}, of unrelated pairs '
              f'p50/p90/p95 = ' + '/'.join(f'{np.percentile(uconf[np.isfinite(uconf)], q):.2f}' for q in (50, 90, 95)))
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--clips", type=int, default=32)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  lines = ['Written by `python -m benchmarks.calibrate_offsets ' + ' '.join(sys.argv[1:]) + '` (synthetic clips).']
  for fps in (25.0, 30.0):
    lines += [f'\n### onset_motion, bouncing ball at {fps:g} fps ({args.clips} clips x 11 shifts; '
              f'{3 * args.clips} unrelated pairs)\n']
    lines += sweep(*onset_motion_pairs(args.clips, fps), (0.5, 0.55, 0.6, 0.65, 0.7, 0.75))
  lines += [f'\n### mouth_envelope, talking at 10 fps ({args.clips} clips x 11 shifts; {3 * args.clips} unrelated '
            'pairs)\n']
  lines += sweep(*mouth_envelope_pairs(args.clips), (0.3, 0.4, 0.5, 0.6, 0.7))
  report.emit(lines, args.out)


if __name__ == '__main__':
  main()
