"""Small hand-built clips with known sync for the eval tests (independent of the data package)."""

import numpy as np

FPS, SR, T, RES = 10, 16000, 20, 32
MOUTH_BOX = (16, 8, 28, 24)  # y0, x0, y1, x1


def talking_like(seed: int) -> dict:
  """A face whose mouth opens with a random envelope; the audio is a voiced tone with that envelope."""
  rng = np.random.default_rng(seed)
  open_ = np.clip(np.convolve(rng.uniform(0, 1, T + 2), [0.25, 0.5, 0.25], 'valid'), 0, 1)
  open_ = (open_ - open_.min()) / (np.ptp(open_) + 1e-9)
  video = np.full((T, RES, RES, 3), 180, np.uint8)
  for t in range(T):
    h = 1 + int(round(open_[t] * 9))
    video[t, 22 - h // 2:22 - h // 2 + h, 10:22] = 30
  s = np.arange(T * SR // FPS)
  env = np.repeat(open_, SR // FPS)
  audio = (0.5 * np.sin(2 * np.pi * 180 * s / SR) + 0.3 * np.sin(2 * np.pi * 360 * s / SR)) * env
  return {'video': video, 'audio': audio.astype(np.float32), 'mouth_box': np.asarray(MOUTH_BOX, np.int32),
          'mouth_open': open_.astype(np.float32)}


def impacts_like(seed: int) -> dict:
  """A square that jumps at impact frames; each impact is a click in the audio at that frame's time."""
  rng = np.random.default_rng(seed)
  frames = np.sort(rng.choice(np.arange(3, T - 2, 3), 4, replace=False)) + rng.integers(0, 2, 4)
  frames = np.unique(frames)
  video = np.full((T, RES, RES, 3), 40, np.uint8)
  audio = np.zeros(T * SR // FPS, np.float32)
  x = 6
  for t in range(T):
    if t in frames:
      x = 18 if x == 6 else 6
      s0 = t * SR // FPS
      n = SR // 20
      audio[s0:s0 + n] += (rng.normal(0, 0.5, n) * np.exp(-np.arange(n) / 300)).astype(np.float32)
    video[t, 12:22, x:x + 8] = 230
  impact = np.zeros(T, np.float32)
  impact[frames] = 1
  return {'video': video, 'audio': audio, 'impact': impact}
