"""Evaluation throughput on CPU: clips per second of each metric on the tiny protocol (32x32, 10 fps, 2 s clips).

    python -m benchmarks.bench_eval [--clips=16] [--syncnet_clips=1] [--json=FILE]

Each metric is timed over the same `talking` clips (from avdiff.data.synthetic) after one warm-up clip, so jit
compilation is excluded. The sync expert and SyncNet use randomly initialized weights (speed does not depend on
them). SyncNet is timed on a 2 s clip at its own protocol: 25 fps, 224x224 face crops, 16 kHz MFCC.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
from flax import nnx

from avdiff.data import av_io
from avdiff.data import synthetic
from avdiff.eval import av_align
from avdiff.eval import distribution
from avdiff.eval import features
from avdiff.eval import lipsync
from avdiff.eval import offsets
from avdiff.eval import scoring
from avdiff.eval import sync_expert
from avdiff.eval import syncnet
from configs import tiny


def _rate(fn, items) -> float:
  fn(items[0])  # Warm-up (jit, caches).
  t0 = time.perf_counter()
  for it in items:
    fn(it)
  return len(items) / (time.perf_counter() - t0)


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--clips', type=int, default=16)
  p.add_argument('--syncnet_clips', type=int, default=1)
  p.add_argument('--json', default='')
  args = p.parse_args()
  config = tiny.get_config()
  d, ev = config.data, config.eval
  clips = [synthetic.talking_clip(s, d) for s in range(args.clips)]
  res = {}
  for variant in ('v1', 'v2'):
    res[f'av_align_{variant}'] = _rate(lambda c: av_align.av_align(c['video'], c['audio'], d.fps, d.sample_rate,
                                                                   variant), clips)
  res['envelope_motion'] = _rate(lambda c: offsets.estimate_offset(
      *offsets.envelope_motion_signals(offsets.motion_energy(c['video'], c['mouth_box']), c['audio'], d.fps,
                                       d.sample_rate), ev.max_offset_frames, offsets.MOUTH_ENVELOPE_MIN_CONFIDENCE),
                                 clips)
  expert = scoring.ExpertScorer(sync_expert.build_sync_expert(config, nnx.Rngs(0)), config)
  res['sync_expert_lse'] = _rate(lambda c: expert(c['video'], c['audio'], c['mouth_box']), clips)
  res['log_mel_only'] = _rate(lambda c: expert.mel_fn(c['audio']), clips)
  res['score_clip_all'] = _rate(lambda c: scoring.score_clip(c['video'], c['audio'], config, c['mouth_box'], expert),
                                clips)
  raw = features.raw_features(d.fps, d.sample_rate)
  res['raw_features'] = _rate(lambda c: raw(c['video'], c['audio'], None), clips)
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for i, c in enumerate(clips):
      paths.append(os.path.join(tmp, f'{i}.mp4'))
      av_io.write_video(paths[-1], c['video'], c['audio'], d.fps, d.sample_rate)
    res['read_video_mp4'] = _rate(lambda path: av_io.read_video(path, d.fps, d.sample_rate, d.resolution), paths)
  feats = np.random.default_rng(0).normal(size=(256, 256))
  t0 = time.perf_counter()
  distribution.frechet_distance(feats, feats[::-1])
  res['frechet_256x256_s'] = time.perf_counter() - t0
  t0 = time.perf_counter()
  distribution.kid(feats, feats[::-1], subset_size=100, num_subsets=100)
  res['kid_256x256_s'] = time.perf_counter() - t0
  # SyncNet port: 2 s at 25 fps = 50 frames of 224x224 -> 45 windows.
  net = syncnet.SyncNet(nnx.Rngs(0))
  rng = np.random.default_rng(0)
  sc = [(rng.integers(0, 255, (50, 224, 224, 3), dtype=np.uint8), rng.uniform(-0.5, 0.5, 32000).astype(np.float32))
        for _ in range(args.syncnet_clips + 1)]
  res['syncnet_port'] = _rate(lambda x: lipsync.score_embeddings(*syncnet.clip_embeddings(net, *x), 15), sc)
  print(json.dumps({k: round(v, 3) for k, v in res.items()}, indent=2))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(res, f, indent=2)


if __name__ == '__main__':
  main()
