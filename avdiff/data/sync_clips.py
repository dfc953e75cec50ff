"""Clips with a known audio-video offset, at any frame rate: the known answers that sync metrics are checked on.

`bouncing_ball` is a ball bouncing on a floor under gravity (losing energy at each bounce, kicked back up when it
runs out), drifting sideways; every floor contact makes a knock (a decaying tone plus a click) starting at the exact
contact time, which falls anywhere between two frames. Shifting its audio with avdiff.eval.shift.shift_audio gives
clips whose offset is known to the sample.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SyncClip:
  video: np.ndarray  # uint8 [T, H, W, 3] RGB at fps Hz.
  audio: np.ndarray  # float32 [S] mono in [-1, 1] at sample_rate Hz.
  fps: float
  sample_rate: int
  contacts: tuple  # Contact times, seconds.


def bouncing_ball(seed: int, fps: float = 25.0, size: int = 64, seconds: float = 4.0,
                  sample_rate: int = 16000) -> SyncClip:
  """A bouncing ball and its knocks, in sync. Physics in frame heights and seconds; drawn antialiased."""
  rng = np.random.default_rng([int(seed), 7])
  num_frames, num_samples = int(round(seconds * fps)), int(round(seconds * sample_rate))
  gravity = rng.uniform(2.5, 4.0)  # Frame heights / s^2.
  restitution = rng.uniform(0.75, 0.9)
  radius, floor = rng.uniform(0.06, 0.1), 0.9
  # Event-driven flight: between contacts the height is a parabola, so contact times are exact.
  y, vy, t, contacts = rng.uniform(0.15, 0.4), 0.0, 0.0, []
  pieces = []  # (start time, start height, start velocity)
  while t < seconds:
    pieces.append((t, y, vy))
    drop = floor - radius - y  # >= 0: distance to the floor.
    hit = (-vy + np.sqrt(vy**2 + 2 * gravity * drop)) / gravity
    t, speed = t + hit, vy + gravity * hit
    contacts.append((t, speed))
    vy = -restitution * speed if restitution * speed > 0.3 else -rng.uniform(1.2, 1.8)
    y = floor - radius
  frame_t = np.arange(num_frames) / fps
  starts = np.asarray([p[0] for p in pieces])
  k = np.searchsorted(starts, frame_t, side='right') - 1
  dt = frame_t - starts[k]
  heights = np.asarray([p[1] for p in pieces])[k] + np.asarray([p[2] for p in pieces])[k] * dt + 0.5 * gravity * dt**2
  xs = (rng.uniform(0.3, 0.7) + rng.uniform(-0.15, 0.15) * frame_t) % 1.0
  background, colour = rng.uniform(0.2, 0.4, 3), rng.uniform(0.6, 1.0, 3)
  yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
  dist = np.sqrt((yy[None] - heights[:, None, None])**2 + (xx[None] - xs[:, None, None])**2)
  alpha = np.clip((radius - dist) * size + 0.5, 0, 1)[..., None]
  video = np.round((background * (1 - alpha) + colour * alpha) * 255).astype(np.uint8)

  audio = np.zeros(num_samples, np.float64)
  tone = rng.uniform(300, 1500)
  for time, speed in contacts:
    start = int(round(time * sample_rate))
    if start >= num_samples:
      break
    n = min(num_samples - start, int(0.3 * sample_rate))
    s = np.arange(n) / sample_rate
    knock = np.exp(-s / 0.05) * np.sin(2 * np.pi * tone * s) + 0.5 * rng.standard_normal(n) * np.exp(-s / 0.004)
    audio[start:start + n] += min(1.0, speed / 2) * knock
  audio *= 0.9 / np.abs(audio).max()
  audio += 1e-3 * rng.standard_normal(num_samples)  # A noise floor, as any recording has.
  return SyncClip(video, audio.astype(np.float32), float(fps), int(sample_rate),
                  tuple(float(c[0]) for c in contacts if c[0] < seconds))
