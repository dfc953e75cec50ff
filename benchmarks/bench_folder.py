"""Folder-mode speed and memory on files of known content, each scored on its own clock.

    python -m benchmarks.bench_folder [--small=16] [--out=FILE.md]

Writes bouncing-ball files (avdiff.data.sync_clips) and times `avdiff.eval.folder.evaluate_folder` with the native protocol:
  - small: 64x64, 25 fps, 4 s, PCM audio (the known-answer test files);
  - hd: 1280x720, 25 fps, 5 s and 20 s, AAC 5.1 (the ball upscaled): seconds per minute of video, and peak memory
    (VmHWM of a fresh process scoring one file) for both lengths, which shows whether memory grows with length;
  - the same small folder with face tracking on, and with FVD against itself (I3D on the first 16 frames).
Every file is decoded once for all metrics (avdiff.eval.native).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from avdiff.data import av_io
from avdiff.data import sync_clips
from avdiff.eval import folder as folder_eval
from configs import tiny
from benchmarks import report


def _config(**eval_overrides):
  c = tiny.get_config()
  c.eval.bootstrap_samples = 20
  for k, v in eval_overrides.items():
    c.eval[k] = v
  return c


def _time_folder(folder: str, config, seconds_of_video: float) -> dict:
  start = time.perf_counter()
  res = folder_eval.evaluate_folder(folder, config)
  wall = time.perf_counter() - start
  n = res['num_scored'] + res['num_skipped']  # Files without a face are skipped after being decoded and searched.
  return {'files': n, 'wall_s': round(wall, 2), 'clips_per_s': round(n / wall, 2),
          's_per_min_video': round(wall / (seconds_of_video / 60), 1)}


def _hd_file(path: str, seconds: float, fps: float = 25.0) -> None:
  clip = sync_clips.bouncing_ball(0, fps=fps, size=72, seconds=seconds, sample_rate=48000)
  frames = np.zeros((len(clip.video), 720, 1280, 3), np.uint8)
  for i, f in enumerate(clip.video):
    frames[i, :, 280:1000] = cv2.resize(f, (720, 720), interpolation=cv2.INTER_LINEAR)
  av_io.write_video(path, frames, np.repeat(clip.audio[:, None], 6, axis=1) * 0.5, fps, 48000, 'aac')


_MEASURE = '''
import json, sys, time
from avdiff.eval import native
from configs import tiny
c = tiny.get_config()
t = time.perf_counter()
s = native.scan(sys.argv[1], c)
m = native.score_scan(s, c)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would include the parent's frames.
peak_mb = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024
print(json.dumps({'wall_s': time.perf_counter() - t, 'peak_mb': peak_mb,
                  'frames': s.num_frames, 'av_align': m['av_align'], 'offset_frames': m['offset_frames']}))
'''


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--small', type=int, default=16)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  rows = {}
  with tempfile.TemporaryDirectory() as tmp:
    small = os.path.join(tmp, 'small')
    for seed in range(args.small):
      c = sync_clips.bouncing_ball(seed)
      av_io.write_video(os.path.join(small, f'ball{seed}.mkv'), c.video, c.audio, c.fps, c.sample_rate, 'pcm')
    rows['64x64 25 fps 4 s, weight-free metrics'] = _time_folder(small, _config(), 4.0 * args.small)
    rows['64x64 25 fps 4 s, + face tracking'] = _time_folder(small, _config(faces='on'), 4.0 * args.small)
    rows['64x64 25 fps 4 s, + FVD (I3D)'] = _time_folder(small, _config(fvd_reference=small), 4.0 * args.small)
    for seconds in (5.0, 20.0):
      path = os.path.join(tmp, f'hd_{seconds:g}s.mp4')
      _hd_file(path, seconds)
      out = subprocess.run([sys.executable, '-c', _MEASURE, path], check=True, capture_output=True, text=True)
      m = json.loads(out.stdout.strip().splitlines()[-1])
      rows[f'1280x720 25 fps {seconds:g} s AAC 5.1, weight-free metrics'] = {
          'files': 1, 'wall_s': round(m['wall_s'], 2), 'clips_per_s': round(1 / m['wall_s'], 3),
          's_per_min_video': round(m['wall_s'] / (seconds / 60), 1), 'peak_mb': round(m['peak_mb'])}
  lines = ['| folder | files | wall s | clips/s | s per minute of video | peak MB (one file, fresh process) |',
           '|---|---|---|---|---|---|']
  for name, r in rows.items():
    lines.append(f"| {name} | {r['files']} | {r['wall_s']} | {r['clips_per_s']} | {r['s_per_min_video']} | "
                 f"{r.get('peak_mb', '-')} |")
  report.emit(lines, args.out)


if __name__ == '__main__':
  main()
