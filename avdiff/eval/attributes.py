"""Weight-free readers of the `talking` clip attributes (data.attributes='independent'): face colour and shape from
the frames, voice pitch, speaking rate and syllable count from the log-mel.

Each reader measures one number with numpy and thresholds it; the thresholds are written below with how they were
chosen. The audio readers take the normalized log-mel of `avdiff.data.audio.log_mel` (recomputed from the waveform by
`read_attributes`), never the waveform itself, so the same code reads a real clip and a generated one, whose audio
went through the Griffin-Lim inversion of its log-mel (`audio.mel_to_waveform`): a pitch tracker such as
librosa.pyin finds no voice or a wrong pitch in most Griffin-Lim clips, while mel band energies survive it.

  colour     mean colour of the saturated pixels of a box in the upper middle of the frame (the face between the
             forehead and the eyes: above the mouth, eyes too dark to count) -> nearest named hue.
  shape      height / width of the face-coloured region (pixels whose hue is near the face's), median over frames.
  syllables  voiced runs of the loudness envelope (mel power summed over bands, dB), thresholded relative to the
             clip's loudest frame; gaps shorter than _MERGE_GAP_S are merged, runs shorter than _MIN_RUN_S dropped.
  rate       mean duration of those runs.
  pitch      mean mel power spectrum of the loud frames: power in the bands centred below _F0_SPLIT_HZ, where only
             a low voice has its fundamental, relative to the bands centred in [_F0_SPLIT_HZ, _HIGH_F0_HZ), where a
             high voice has its fundamental and a low one its second harmonic.

A reader returns None when there is nothing to read: no saturated face pixels (blank or grey frames) or no sound
above _SILENCE_DB (a silent clip). `agreement` counts None as a mismatch.

Constants are calibrated at the tiny config's data settings (32x32 frames, 16 kHz, 32 mel bands over 0-8 kHz,
n_fft 512, 40 Hz mel): the band edges scale with data_cfg, but other settings should be re-checked with
tests/test_attributes.py.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import librosa
import ml_collections
import numpy as np

from avdiff import config_lib
from avdiff.data import audio as audio_lib

Value = Union[str, int, None]

NAMES = ('colour', 'shape', 'pitch', 'rate', 'syllables')

# ----------------------------------------------------------------------------- video

# HSV hue in degrees of each face colour as `talking` draws it (measured on its frames: 0, 119, 223, 54); a face
# reads as the nearest on the colour wheel, so the decision boundaries lie midway between the drawn hues (>= 27
# degrees from each; the clips' faces read within 0.3 degrees of these).
HUES = {'red': 0.0, 'green': 119.0, 'blue': 223.0, 'yellow': 54.0}
# Box read for the face colour, fractions of the frame (y0, x0, y1, x1). The face centre lies within 0.04 of the
# frame centre plus 0.03 of sway, its radii are >= 0.33 high and >= 0.24 wide, and its mouth (saturated dark red)
# starts >= 0.5 - 0.04 + 0.55 * 0.33 - 0.1 = 0.54 down the frame. So the box is mostly face above the mouth; the
# eyes (near-black) and any background in its corners (saturation ~0.15) fail the saturation test below.
_COLOUR_BOX = (0.25, 0.36, 0.5, 0.64)
# A face pixel is saturated (the generator draws saturated faces on a background of saturation ~0.15) and bright
# enough that its hue means something (eyes are near-black).
_MIN_SATURATION = 0.4
_MIN_VALUE = 0.25
# Fewer saturated pixels than this fraction of the colour box: no face to read (blank, grey or badly drawn frame).
_MIN_FACE_FRACTION = 0.2
# Face mask for the shape: hue within this many degrees of the face hue, saturation >= half the face's.
_SHAPE_HUE_TOLERANCE = 25.0
# Height / width of the face region: on 48 clips (32x32) round faces (radii 0.33 / 0.33 of the frame) measured
# 0.96-1.05 and long ones (0.40 / 0.24) 1.56-1.69; the threshold sits near their geometric mean.
_LONG_ASPECT = 1.3

# ----------------------------------------------------------------------------- audio

# Loudest frame (mel power summed over bands) below this many dB (full-scale sine = 0 dB): a silent clip.
_SILENCE_DB = -50.0
# A mel frame is voiced when its loudness is within this many dB of the clip's loudest frame. Syllables peak within
# 4.4 dB of each other and gaps are silent, so any value in 15-40 dB counts every clip right (128 clips, own audio
# and Griffin-Lim); 25 dB leaves room for a noise floor in generated audio and keeps run durations near the
# syllables' (measured runs: fast <= 0.163 s, slow >= 0.275 s, with and without Griffin-Lim).
_VOICED_DB = 25.0
# Gaps shorter than this are merged into one run (syllables are >= 0.12 s apart); shorter runs are dropped.
_MERGE_GAP_S = 0.06
_MIN_RUN_S = 0.05
# Mean run duration above this: slow speech (syllables 0.26-0.34 s vs 0.10-0.16 s; runs measured above).
_SLOW_RUN_S = 0.21
# Frames within this many dB of the loudest frame make the mean spectrum read for the pitch.
_LOUD_DB = 12.0
# Low voices have f0 < 136 Hz, high ones > 184 Hz (synthetic._PITCHES with jitter and glide). With the tiny mel
# (32 bands over 0-8 kHz, ~91 Hz apart) the split puts band 0 (centre 91 Hz, 0-183 Hz) below and band 1 (centre
# 183 Hz, 91-274 Hz) above.
_F0_SPLIT_HZ = 150.0
_HIGH_F0_HZ = 250.0
# Fundamental-band level relative to the band above, dB: above this, a low voice. Measured on 128 clips (seeds
# 0-127): low voices read -2.8..+2.8 dB on their own audio and -2.8..+3.0 dB after Griffin-Lim; high voices
# -38.8..-22.7 dB on their own audio but only -17.7..-7.4 dB after Griffin-Lim (the mel inversion spreads band 1's
# power over its whole 91-274 Hz support, some of it into band 0). The threshold sits in the middle of the gap
# left after Griffin-Lim, ~2.3 dB from either side.
_LOW_PITCH_DB = -5.0

SYLLABLE_RANGE = (2, 5)


def _as_frames(video: np.ndarray) -> np.ndarray:
  """uint8 [T, H, W, 3] or [H, W, 3] -> float32 [T, H, W, 3] in [0, 1]."""
  video = np.asarray(video)
  if video.ndim == 3:
    video = video[None]
  if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
    raise ValueError(f'video must be uint8 [T, H, W, 3] or [H, W, 3], got {video.dtype} {video.shape}')
  return video.astype(np.float32) / 255.0


def _hsv(rgb: np.ndarray):
  """float [..., 3] RGB in [0, 1] -> hue (degrees in [0, 360)), saturation, value; each float [...]."""
  value = rgb.max(-1)
  chroma = value - rgb.min(-1)
  saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  c = np.maximum(chroma, 1e-6)
  hue = np.where(value == r, (g - b) / c % 6.0, np.where(value == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
  return hue * 60.0 % 360.0, saturation, value


def _hue_distance(a, b):
  """Angular distance in degrees [0, 180] between hues a and b (broadcast)."""
  d = np.abs(np.asarray(a) - np.asarray(b)) % 360.0
  return np.minimum(d, 360.0 - d)


def face_colour_rgb(video: np.ndarray) -> Optional[np.ndarray]:
  """Mean RGB float32 [3] in [0, 1] of the saturated pixels in the face box over all frames, or None.

  Args:
    video: uint8 [T, H, W, 3] or [H, W, 3] frames.
  Returns:
    None when fewer than _MIN_FACE_FRACTION of the box's pixels are saturated (no face drawn).
  """
  frames = _as_frames(video)
  h, w = frames.shape[1:3]
  y0, x0, y1, x1 = (int(round(f * s)) for f, s in zip(_COLOUR_BOX, (h, w, h, w)))
  box = frames[:, y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].reshape(-1, 3)
  _, saturation, value = _hsv(box)
  face = (saturation >= _MIN_SATURATION) & (value >= _MIN_VALUE)
  if face.mean() < _MIN_FACE_FRACTION:
    return None
  return box[face].mean(0)


def read_colour(video: np.ndarray) -> Optional[str]:
  """Face colour name (a key of HUES) of uint8 video [T, H, W, 3] or a frame [H, W, 3]; None if no face."""
  rgb = face_colour_rgb(video)
  if rgb is None:
    return None
  hue = _hsv(rgb)[0]
  names = list(HUES)
  return names[int(np.argmin(_hue_distance(hue, [HUES[n] for n in names])))]


def face_aspect(video: np.ndarray) -> Optional[float]:
  """Height / width of the face-coloured region (median over frames), or None if no face.

  Args:
    video: uint8 [T, H, W, 3] or [H, W, 3] frames.
  Returns:
    Ratio of the number of rows to the number of columns holding face pixels (hue within _SHAPE_HUE_TOLERANCE
    degrees of the face colour's, saturation >= half of it); rows and columns with fewer than two face pixels do
    not count, so a few stray pixels do not stretch the region.
  """
  rgb = face_colour_rgb(video)
  if rgb is None:
    return None
  face_hue, face_sat, _ = _hsv(rgb)
  frames = _as_frames(video)
  hue, saturation, value = _hsv(frames)
  mask = ((_hue_distance(hue, face_hue) <= _SHAPE_HUE_TOLERANCE) & (saturation >= 0.5 * face_sat) &
          (value >= _MIN_VALUE))
  height = (mask.sum(2) >= 2).sum(1)  # [T] rows holding the face.
  width = (mask.sum(1) >= 2).sum(1)  # [T] columns holding the face.
  valid = width > 0
  if not valid.any():
    return None
  return float(np.median(height[valid] / width[valid]))


def read_shape(video: np.ndarray) -> Optional[str]:
  """'round' or 'long' from uint8 video [T, H, W, 3] or a frame [H, W, 3]; None if no face."""
  aspect = face_aspect(video)
  if aspect is None:
    return None
  return 'long' if aspect > _LONG_ASPECT else 'round'


# ----------------------------------------------------------------------------- audio


def _mel_db(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """Normalized log-mel [T_a, n_mels] -> dB (full-scale sine in its band = 0 dB)."""
  mel = np.asarray(mel, np.float32)
  if mel.ndim != 2 or mel.shape[1] != int(data_cfg.n_mels):
    raise ValueError(f'mel must be [T_a, n_mels={data_cfg.n_mels}], got shape {mel.shape}')
  return audio_lib.denormalize_db(np.clip(mel, -1.0, 1.0), float(data_cfg.mel_db_floor))


def loudness_db(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """float32 [T_a] loudness per mel frame in dB: the mel power summed over bands."""
  power = np.power(10.0, _mel_db(mel, data_cfg) / 10.0).sum(1)
  return (10.0 * np.log10(np.maximum(power, 1e-12))).astype(np.float32)


def _mel_seconds(data_cfg: ml_collections.ConfigDict) -> float:
  """Duration of one mel frame in seconds."""
  return config_lib.mel_hop(data_cfg) / float(data_cfg.sample_rate)


def voiced_runs(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[list[tuple[int, int]]]:
  """Voiced runs of a clip: (start, end) mel frame indices, end-exclusive, in time order; None if silent.

  Args:
    mel: float [T_a, n_mels] normalized log-mel (`audio.log_mel`), T_a frames of mel_hop / sample_rate seconds.
    data_cfg: the config's `data` section.
  Returns:
    Runs of frames within _VOICED_DB of the loudest frame, gaps shorter than _MERGE_GAP_S merged, runs shorter than
    _MIN_RUN_S dropped; None when the loudest frame is below _SILENCE_DB.
  """
  loud = loudness_db(mel, data_cfg)
  if loud.size == 0 or loud.max() < _SILENCE_DB:
    return None
  voiced = loud >= loud.max() - _VOICED_DB
  edges = np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]]))
  starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
  seconds = _mel_seconds(data_cfg)
  runs: list[list[int]] = []
  for start, end in zip(starts, ends):
    if runs and (start - runs[-1][1]) * seconds < _MERGE_GAP_S:
      runs[-1][1] = int(end)
    else:
      runs.append([int(start), int(end)])
  return [(s, e) for s, e in runs if (e - s) * seconds >= _MIN_RUN_S]


def read_syllables(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[int]:
  """Number of syllables (voiced runs) of log-mel [T_a, n_mels], clamped to SYLLABLE_RANGE = (2, 5).

  A count outside the range (0 or 1 run, or more than 5) is clamped to the nearest end, so a reading of 2 or 5 can
  stand for fewer or more runs; use `voiced_runs` for the raw count. None if the clip is silent.
  """
  runs = voiced_runs(mel, data_cfg)
  if runs is None:
    return None
  return int(np.clip(len(runs), *SYLLABLE_RANGE))


def mean_run_seconds(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[float]:
  """Mean duration in seconds of the voiced runs of log-mel [T_a, n_mels]; None if silent or no run."""
  runs = voiced_runs(mel, data_cfg)
  if not runs:
    return None
  return float(np.mean([e - s for s, e in runs])) * _mel_seconds(data_cfg)


def read_rate(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[str]:
  """'slow' or 'fast' speech from log-mel [T_a, n_mels] (mean voiced run above / below _SLOW_RUN_S); None if
  silent."""
  seconds = mean_run_seconds(mel, data_cfg)
  if seconds is None:
    return None
  return 'slow' if seconds > _SLOW_RUN_S else 'fast'


def fundamental_db(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[float]:
  """Power of the low-voice fundamental band relative to the band above it, dB; None if silent.

  Args:
    mel: float [T_a, n_mels] normalized log-mel (`audio.log_mel`).
    data_cfg: the config's `data` section (mel band centres from n_mels, fmin, fmax).
  Returns:
    Over the frames within _LOUD_DB of the loudest one, the mean mel power of the bands centred below _F0_SPLIT_HZ
    over that of the bands centred in [_F0_SPLIT_HZ, _HIGH_F0_HZ), in dB: near 0 dB for a low voice (fundamental
    and second harmonic), far below for a high one (nothing below its fundamental).
  Raises:
    ValueError: if no mel band is centred in one of the two ranges (too few bands for this reader).
  """
  loud = loudness_db(mel, data_cfg)
  if loud.size == 0 or loud.max() < _SILENCE_DB:
    return None
  power = np.power(10.0, _mel_db(mel, data_cfg) / 10.0)[loud >= loud.max() - _LOUD_DB].mean(0)
  centres = librosa.mel_frequencies(int(data_cfg.n_mels) + 2, fmin=float(data_cfg.fmin),
                                    fmax=float(data_cfg.fmax))[1:-1]
  low = centres < _F0_SPLIT_HZ
  high = (centres >= _F0_SPLIT_HZ) & (centres < _HIGH_F0_HZ)
  if not low.any() or not high.any():
    raise ValueError(f'No mel band centred below {_F0_SPLIT_HZ:g} Hz or in [{_F0_SPLIT_HZ:g}, {_HIGH_F0_HZ:g}) '
                     f'Hz with n_mels={data_cfg.n_mels}, fmin={data_cfg.fmin}, fmax={data_cfg.fmax}')
  return float(10.0 * np.log10(max(power[low].mean(), 1e-12) / max(power[high].mean(), 1e-12)))


def read_pitch(mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> Optional[str]:
  """'low' or 'high' voice from log-mel [T_a, n_mels]; None if silent."""
  level = fundamental_db(mel, data_cfg)
  if level is None:
    return None
  return 'low' if level > _LOW_PITCH_DB else 'high'


# ----------------------------------------------------------------------------- clips


def clip_mel(clip: dict, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """float32 [T_a, n_mels] normalized log-mel of a clip: from `audio` (float [S] waveform) when present, else the
  clip's own `audio_mel`."""
  if clip.get('audio') is not None:
    return audio_lib.log_mel(np.asarray(clip['audio'], np.float32), data_cfg)
  if clip.get('audio_mel') is not None:
    return np.asarray(clip['audio_mel'], np.float32)
  raise ValueError('clip has neither `audio` nor `audio_mel`')


def read_attributes(clip: dict, data_cfg: ml_collections.ConfigDict) -> dict[str, Value]:
  """Every attribute of a `talking` clip, by name.

  Args:
    clip: dict with `video` uint8 [T, H, W, 3] and `audio` float32 [S] waveform at data_cfg.sample_rate (or, without
      `audio`, `audio_mel` float [T_a, n_mels] normalized log-mel). The log-mel is recomputed from `audio` with
      `audio.log_mel`, so real and generated (Griffin-Lim) audio are read the same way.
    data_cfg: the config's `data` section.
  Returns:
    {'colour': 'red'|'green'|'blue'|'yellow', 'shape': 'round'|'long', 'pitch': 'low'|'high', 'rate': 'slow'|'fast',
     'syllables': 2..5}, values as in synthetic.TALKING_ATTRIBUTES; a value is None where the clip holds nothing to
    read (no face in the frames, silent audio).
  """
  mel = clip_mel(clip, data_cfg)
  video = clip['video']
  return {'colour': read_colour(video), 'shape': read_shape(video), 'pitch': read_pitch(mel, data_cfg),
          'rate': read_rate(mel, data_cfg), 'syllables': read_syllables(mel, data_cfg)}


def agreement(read: Sequence[dict], truth: Sequence[dict], names: Optional[Sequence[str]] = None) -> dict[str, float]:
  """Fraction of clips where each attribute read equals the truth.

  Args:
    read: per clip, {name: value} as from `read_attributes` (None counts as a mismatch).
    truth: per clip, {name: value} ground truth, same order and length as `read`.
    names: attributes to score; default every name in the first truth dict.
  Returns:
    {name: fraction in [0, 1]}.
  """
  if len(read) != len(truth):
    raise ValueError(f'{len(read)} readings for {len(truth)} ground truths')
  if not truth:
    raise ValueError('agreement of no clips')
  names = list(truth[0]) if names is None else list(names)
  return {n: float(np.mean([r.get(n) is not None and r.get(n) == t[n] for r, t in zip(read, truth)])) for n in names}
