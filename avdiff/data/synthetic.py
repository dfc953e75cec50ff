"""Procedural audio-video clips with exact synchrony ground truth: `talking` faces and `impacts` of objects.

Every clip is a pure function of (seed, data config): sizes come from `data_cfg` (resolution, fps, clip_seconds,
sample_rate); geometry is in fractions of the frame size and physics in frame heights per second, so the same
seed gives the same scene at any resolution. Frame f is shown over [f / fps, (f + 1) / fps).

talking: a drawn face whose mouth opening at frame f is the RMS of the speech envelope over that frame. Speech is a
  voiced harmonic source (random syllable onsets, durations, pitch contours) shaped by vowel formants. Two modes
  (data.attributes): 'speaker' -- the speaker (label) sets face colour, face shape and voice pitch together;
  'independent' -- face colour, face shape, voice pitch, speaking rate and syllable count are drawn independently
  (`TALKING_ATTRIBUTES`), label = the (colour, shape, pitch) combination, and each clip has a caption
  (`avdiff.data.captions`). The (colour, pitch) pairs of `HELD_OUT_PAIRS` occur only in clips whose seed lies in
  `NOVEL_SEEDS` (the `test_novel` split), and no other clip has them.
impacts: balls dropped from rest one after another; each falls under gravity and lands dead on the floor exactly at
  a frame time, so its motion grows up to the contact frame and stops there. Each contact sounds at the start of
  that frame (modal synthesis: decaying partials + a click); there is silence before the first contact. The
  material (label) sets ball colour and timbre. Two modes (data.attributes): 'speaker' (the default; the name is
  shared with `talking`) -- a material and 1-3 balls at random drop times; 'independent' -- material, number of
  balls and rhythm (even or uneven spacing of the contacts) drawn independently (`IMPACTS_ATTRIBUTES`), label = the
  material, and each clip has a caption. The (material, balls) pairs of `IMPACTS_HELD_OUT_PAIRS` occur only in
  clips whose seed lies in `NOVEL_SEEDS`, and no other clip has them.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math

import ml_collections
import numpy as np

from avdiff import config_lib
from avdiff.data import captions

DATASETS = ('talking', 'impacts')

# ----------------------------------------------------------------------------- drawing


def _soft_ellipse(cy: np.ndarray, cx: np.ndarray, ry: np.ndarray, rx: np.ndarray, size: int) -> np.ndarray:
  """Antialiased ellipse coverage in [0, 1].

  Args:
    cy, cx, ry, rx: float arrays of one shape [...] (pixels; pixel centres at integer + 0.5 coordinates).
    size: frame height = width in pixels.
  Returns:
    float32 [..., size, size] coverage, from a first-order signed distance to the ellipse edge.
  """
  grid = np.arange(size, dtype=np.float32) + 0.5
  cy, cx, ry, rx = (np.asarray(a, np.float32)[..., None, None] for a in (cy, cx, ry, rx))
  dy = (grid[:, None] - cy) / ry
  dx = (grid[None, :] - cx) / rx
  implicit = dy**2 + dx**2 - 1.0
  grad = 2.0 * np.sqrt((dy / ry)**2 + (dx / rx)**2) + 1e-6
  return np.clip(0.5 - implicit / grad, 0.0, 1.0)


def _blend(image: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
  """image [..., H, W, 3] float, alpha [..., H, W], colour [3] or [..., 3] in [0, 1]."""
  colour = np.asarray(colour, np.float32)
  if colour.ndim > 1:
    colour = colour[..., None, None, :]
  return image + alpha[..., None] * (colour - image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
  return np.asarray(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


# ----------------------------------------------------------------------------- talking

# Vowel formants (F1, F2, F3) in Hz of an adult voice; speakers scale them.
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                    [570, 840, 2410], [660, 1720, 2410]], np.float32)
_FORMANT_BANDWIDTHS = np.array([90.0, 110.0, 170.0], np.float32)
_FORMANT_GAINS = np.array([1.0, 0.6, 0.3], np.float32)
_MAX_HARMONICS = 40


@dataclasses.dataclass(frozen=True)
class Speaker:
  """A talking-face identity: voice pitch (Hz), formant scale, face colour (RGB in [0, 1]) and face radii."""
  f0: float
  formant_scale: float
  face_colour: np.ndarray
  face_ry: float  # Fraction of the frame size.
  face_rx: float


def speaker(index: int, num_speakers: int) -> Speaker:
  """Speaker `index` of `num_speakers`: pitch from 95 to 260 Hz, hue around the colour wheel, 4 face shapes."""
  frac = index / max(1, num_speakers - 1)
  shapes = ((0.38, 0.28), (0.34, 0.33), (0.40, 0.24), (0.36, 0.30))
  ry, rx = shapes[index % len(shapes)]
  return Speaker(f0=95.0 * (260.0 / 95.0)**frac, formant_scale=1.0 + 0.2 * frac,
                 face_colour=_hsv(index / max(1, num_speakers), 0.45, 0.9), face_ry=ry, face_rx=rx)


# attributes='independent'. The table is the caption vocabulary (name -> values; a clip stores value indices).
TALKING_ATTRIBUTES = captions.TALKING_ATTRIBUTES
ATTRIBUTE_MODES = ('speaker', 'independent')
HELD_OUT_PAIRS = (('blue', 'high'), ('yellow', 'low'))  # (colour, pitch) pairs seen only in NOVEL_SEEDS clips.
# Seeds of the `test_novel` split (avdiff.data.builders), of both datasets: clips with these seeds draw only held-out
# pairs, all other seeds never do, so a clip stays a pure function of (seed, data config) and its stored key
# regenerates it.
NOVEL_SEEDS = range(3_000_000, 4_000_000)
# label = (colour * 2 + shape) * 2 + pitch: 16 classes.
NUM_INDEPENDENT_CLASSES = len(TALKING_ATTRIBUTES['colour']) * len(TALKING_ATTRIBUTES['shape']) * len(
    TALKING_ATTRIBUTES['pitch'])
# Saturated hues (value 0.9, saturation 0.6), far apart and far from the dull background (saturation 0.15).
_HUES = {'red': 0.0, 'green': 0.33, 'blue': 0.62, 'yellow': 0.15}
_SHAPES = {'round': (0.33, 0.33), 'long': (0.40, 0.24)}  # (ry, rx), fractions of the frame.
# Per-clip f0 range (Hz) and formant scale. Per-syllable jitter (x0.95-1.05) and glide (x0.925-1.075) keep every
# low syllable below 136 Hz and every high one above 184 Hz: the two pitches never overlap.
_PITCHES = {'low': ((100.0, 120.0), 1.0), 'high': ((210.0, 250.0), 1.15)}
_F0_JITTER = (0.95, 1.05)
_RATES = {'slow': (0.26, 0.34), 'fast': (0.10, 0.16)}  # Syllable duration range, seconds.
# Silence between syllables (>= 4.8 mel frames at 40 Hz: an envelope reader sees each gap) and before the first /
# after the last syllable, seconds.
MIN_SYLLABLE_GAP = 0.12
_EDGE_SECONDS = 0.05


def is_novel_seed(seed: int) -> bool:
  """Whether clip `seed` belongs to the held-out pairs (attributes='independent'): talking's (colour, pitch) pairs of
  HELD_OUT_PAIRS, impacts' (material, balls) pairs of IMPACTS_HELD_OUT_PAIRS."""
  return int(seed) in NOVEL_SEEDS


def attribute_mode(data_cfg: ml_collections.ConfigDict) -> str:
  """data.attributes of `talking` and `impacts`: 'speaker' (the original generators; also for configs written before
  the field existed) | 'independent'."""
  mode = data_cfg.get('attributes', 'speaker')
  if mode not in ATTRIBUTE_MODES:
    raise config_lib.ConfigError(f'data.attributes={mode!r} must be one of {ATTRIBUTE_MODES}')
  return mode


def attribute_label(attributes) -> int:
  """Label of int [5] attribute indices (TALKING_ATTRIBUTES order): colour * 4 + shape * 2 + pitch, in [0, 16)."""
  shapes, pitches = len(TALKING_ATTRIBUTES['shape']), len(TALKING_ATTRIBUTES['pitch'])
  return (int(attributes[0]) * shapes + int(attributes[1])) * pitches + int(attributes[2])


def label_attributes(label: int) -> dict:
  """{'colour', 'shape', 'pitch'} value names of an independent-mode label (the inverse of `attribute_label`)."""
  if not 0 <= label < NUM_INDEPENDENT_CLASSES:
    raise ValueError(f'label {label} is outside [0, {NUM_INDEPENDENT_CLASSES})')
  shapes, pitches = len(TALKING_ATTRIBUTES['shape']), len(TALKING_ATTRIBUTES['pitch'])
  return {'colour': TALKING_ATTRIBUTES['colour'][label // (shapes * pitches)],
          'shape': TALKING_ATTRIBUTES['shape'][label // pitches % shapes],
          'pitch': TALKING_ATTRIBUTES['pitch'][label % pitches]}


def check_clip_fits(data_cfg: ml_collections.ConfigDict, dataset: str = 'talking') -> None:
  """Raises ConfigError when data.clip_seconds cannot hold the longest independent-mode clip of `dataset`.

  talking: the most syllables at the slow rate's shortest duration, MIN_SYLLABLE_GAP apart, with _EDGE_SECONDS of
  silence at both ends. impacts: see `check_impacts_fit`.
  """
  if dataset == 'impacts':
    check_impacts_fit(data_cfg)
    return
  most = max(TALKING_ATTRIBUTES['syllables'])
  need = most * _RATES['slow'][0] + (most - 1) * MIN_SYLLABLE_GAP + 2 * _EDGE_SECONDS
  if float(data_cfg.clip_seconds) < need - 1e-9:
    raise config_lib.ConfigError(
        f'data.clip_seconds={data_cfg.clip_seconds:g} is too short for data.attributes=\'independent\': {most} slow '
        f'syllables of >= {_RATES["slow"][0]:g} s with {MIN_SYLLABLE_GAP:g} s gaps need {need:g} s')


def _draw_attributes(rng: np.random.Generator, novel: bool) -> np.ndarray:
  """int32 [5] value indices: every attribute uniform and independent, except that (colour, pitch) is drawn among
  the held-out pairs when `novel` and among the other pairs otherwise."""
  colours, pitches = TALKING_ATTRIBUTES['colour'], TALKING_ATTRIBUTES['pitch']
  pairs = [(c, p) for c in range(len(colours)) for p in range(len(pitches))
           if ((colours[c], pitches[p]) in HELD_OUT_PAIRS) == novel]
  colour, pitch = pairs[int(rng.integers(len(pairs)))]
  shape, rate, syllables = (int(rng.integers(len(TALKING_ATTRIBUTES[n]))) for n in ('shape', 'rate', 'syllables'))
  return np.array([colour, shape, pitch, rate, syllables], np.int32)


def _attribute_voice(rng: np.random.Generator, attributes: np.ndarray) -> Speaker:
  """The face and voice of independent attributes; f0 is drawn within the pitch's range."""
  values = captions.named(attributes)
  (f0_low, f0_high), formant_scale = _PITCHES[values['pitch']]
  ry, rx = _SHAPES[values['shape']]
  return Speaker(f0=float(rng.uniform(f0_low, f0_high)), formant_scale=formant_scale,
                 face_colour=_hsv(_HUES[values['colour']], 0.6, 0.9), face_ry=ry, face_rx=rx)


def _placed_syllables(rng: np.random.Generator, count: int, rate: str, seconds: float
                      ) -> list[tuple[float, float]]:
  """`count` (onset, duration) pairs in seconds: durations in the rate's range, >= MIN_SYLLABLE_GAP of silence
  between syllables and >= _EDGE_SECONDS at the clip ends, the spare time spread at random over the gaps.

  When the drawn durations do not fit, each is pulled towards the range's low end by one common factor, so every
  duration stays in the rate's range (`check_clip_fits` guarantees that the low end fits).
  """
  low, high = _RATES[rate]
  durations = rng.uniform(low, high, count)
  room = seconds - 2 * _EDGE_SECONDS - (count - 1) * MIN_SYLLABLE_GAP
  if durations.sum() > room:
    durations = low + (durations - low) * max(0.0, room - count * low) / (durations.sum() - count * low)
  spare = max(0.0, room - durations.sum())
  spaces = spare * rng.dirichlet(np.ones(count + 1))  # Extra silence before, between and after the syllables.
  out, t = [], _EDGE_SECONDS
  for i in range(count):
    t += spaces[i]
    out.append((float(t), float(durations[i])))
    t += durations[i] + MIN_SYLLABLE_GAP
  return out


def _syllables(rng: np.random.Generator, seconds: float) -> list[tuple[float, float]]:
  """Random (onset, duration) pairs in seconds: 0.1-0.35 s syllables, 0.04-0.3 s gaps, occasional pauses."""
  out, t = [], rng.uniform(0.0, 0.3)
  while t < seconds - 0.1:
    duration = min(rng.uniform(0.1, 0.35), seconds - t)
    out.append((t, duration))
    t += duration + (rng.uniform(0.3, 0.6) if rng.random() < 0.15 else rng.uniform(0.04, 0.3))
  return out


def _speech(rng: np.random.Generator, voice: Speaker, num_samples: int, sample_rate: int, syllables=None,
            f0_jitter=(0.85, 1.2), level=(0.4, 1.0)):
  """Speech-like audio and its amplitude envelope: two float32 [num_samples] arrays.

  Args:
    syllables: (onset, duration) pairs in seconds; None draws them with `_syllables`.
    f0_jitter: range of each syllable's mean pitch as a factor of voice.f0.
    level: range of each syllable's peak envelope.
  """
  audio = np.zeros(num_samples, np.float32)
  envelope = np.zeros(num_samples, np.float32)
  if syllables is None:
    syllables = _syllables(rng, num_samples / sample_rate)
  for onset, duration in syllables:
    start = int(round(onset * sample_rate))
    n = min(int(round(duration * sample_rate)), num_samples - start)
    if n < 8:
      continue
    x = (np.arange(n, dtype=np.float32) + 0.5) / n  # Position within the syllable, 0..1.
    seconds = x * (n / sample_rate)
    # Pitch: speaker f0 x per-syllable factor, with a rising or falling glide and a 5.5 Hz vibrato.
    f0_mean = voice.f0 * rng.uniform(*f0_jitter)
    glide = 1.0 + rng.uniform(-0.15, 0.15) * (x - 0.5)
    f0 = f0_mean * glide * (1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * seconds))
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)
    num_harmonics = int(min(_MAX_HARMONICS, 0.45 * sample_rate / f0_mean))
    k = np.arange(1, num_harmonics + 1, dtype=np.float32)
    formants = _VOWELS[rng.integers(len(_VOWELS))] * voice.formant_scale
    # Harmonic amplitudes: 1/k source tilt times Lorentzian formant resonances (vocal-tract filter).
    resonance = _FORMANT_GAINS / (1.0 + ((k[:, None] * f0_mean - formants) / _FORMANT_BANDWIDTHS)**2)
    amps = (resonance.sum(-1) + 0.02) / k
    voiced = (amps[:, None] * np.sin(k[:, None] * phase[None, :])).sum(0)
    voiced += 0.03 * rng.standard_normal(n).astype(np.float32) * np.sqrt(np.mean(voiced**2))  # Breath.
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-8  # Unit RMS: loudness is carried by the envelope alone.
    env = rng.uniform(*level) * np.sin(np.pi * x)**0.7
    audio[start:start + n] += env * voiced
    envelope[start:start + n] += env
  return audio, envelope


def talking_clip(seed: int, data_cfg: ml_collections.ConfigDict) -> dict:
  """One talking-face clip.

  With data.attributes='independent' the attributes are drawn from the seed; a seed in NOVEL_SEEDS draws only the
  (colour, pitch) pairs of HELD_OUT_PAIRS, any other seed never does.

  Returns:
    dict with `video` uint8 [T, H, W, 3], `audio` float32 [S] in [-1, 1], `label` int (speaker; independent mode:
    `attribute_label`), `mouth_open` float32 [T] in [0, 1] (RMS speech envelope over each frame / its clip
    maximum) and `mouth_box` int32 [4] (y0, x0, y1, x1; pixels, end-exclusive) covering the mouth in every frame;
    independent mode adds `attributes` int32 [5] (value indices in TALKING_ATTRIBUTES order) and `caption` str
    (`captions.caption(attributes, seed)`).
  """
  rng = np.random.default_rng([int(seed), 1])
  size, fps, sr = int(data_cfg.resolution), float(data_cfg.fps), int(data_cfg.sample_rate)
  frames, samples = config_lib.num_frames(data_cfg), config_lib.num_samples(data_cfg)
  extra = {}
  if attribute_mode(data_cfg) == 'independent':
    check_clip_fits(data_cfg)
    attributes = _draw_attributes(rng, is_novel_seed(seed))
    label = attribute_label(attributes)
    voice = _attribute_voice(rng, attributes)
    values = captions.named(attributes)
    syllables = _placed_syllables(rng, values['syllables'], values['rate'], samples / sr)
    # Syllable peaks within 0.6-1.0 of each other: the quietest stays far above a syllable counter's threshold.
    audio, envelope = _speech(rng, voice, samples, sr, syllables, f0_jitter=_F0_JITTER, level=(0.6, 1.0))
    extra = {'attributes': attributes, 'caption': captions.caption(attributes, seed)}
  else:  # The draws of the original generator, in their order: its clips stay bit-identical.
    label = int(rng.integers(data_cfg.num_speakers))
    voice = speaker(label, int(data_cfg.num_speakers))
    audio, envelope = _speech(rng, voice, samples, sr)
  peak = np.abs(audio).max()
  gain = rng.uniform(0.5, 0.9) / peak if peak > 0 else 1.0
  audio = (audio * gain).astype(np.float32)
  per_frame = samples // frames
  frame_env = np.sqrt(np.mean(envelope[:frames * per_frame].reshape(frames, per_frame)**2, axis=1))
  mouth_open = (frame_env / frame_env.max() if frame_env.max() > 0 else frame_env).astype(np.float32)

  # Geometry in pixels; the head sways slowly by up to 3% of the frame.
  t = np.arange(frames, dtype=np.float32) / fps
  sway = 0.03 * size * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
  cy = size * (0.5 + rng.uniform(-0.04, 0.04)) + np.zeros(frames, np.float32)
  cx = size * (0.5 + rng.uniform(-0.04, 0.04)) + sway
  face_ry, face_rx = voice.face_ry * size, voice.face_rx * size
  eye_r = max(0.045 * size, 0.6)
  blink = np.zeros(frames, bool)
  for start in rng.integers(0, frames, size=rng.integers(0, 3)):
    blink[start:start + max(1, int(round(0.1 * fps)))] = True
  eye_ry = np.where(blink, 0.25 * eye_r, eye_r)
  mouth_y = cy + 0.55 * face_ry
  mouth_rx = 0.45 * face_rx
  mouth_ry_closed, mouth_ry_open = 0.012 * size, 0.1 * size
  mouth_ry = mouth_ry_closed + (mouth_ry_open - mouth_ry_closed) * mouth_open

  background = _hsv(rng.uniform(), 0.15, rng.uniform(0.25, 0.45))
  shade = np.linspace(0.85, 1.1, size, dtype=np.float32)[:, None, None]  # Vertical light gradient.
  image = np.broadcast_to(background * shade, (frames, size, size, 3)).astype(np.float32)
  image = _blend(image, _soft_ellipse(cy, cx, np.full(frames, face_ry), np.full(frames, face_rx), size),
                 voice.face_colour)
  eye_colour = np.array([0.1, 0.1, 0.12], np.float32)
  for side in (-1.0, 1.0):
    eyes = _soft_ellipse(cy - 0.3 * face_ry, cx + side * 0.42 * face_rx, eye_ry, np.full(frames, eye_r), size)
    image = _blend(image, eyes, eye_colour)
  image = _blend(image, _soft_ellipse(mouth_y, cx, mouth_ry, np.full(frames, mouth_rx), size),
                 np.array([0.45, 0.05, 0.08], np.float32))

  margin = 1.0
  box = (np.floor(mouth_y.min() - mouth_ry_open - margin), np.floor(cx.min() - mouth_rx - margin),
         np.ceil(mouth_y.max() + mouth_ry_open + margin), np.ceil(cx.max() + mouth_rx + margin))
  mouth_box = np.clip(np.array(box), 0, size).astype(np.int32)
  return {'video': _to_uint8(image), 'audio': audio, 'label': label, 'mouth_open': mouth_open,
          'mouth_box': mouth_box, **extra}


def _face_radii(label: int, data_cfg: ml_collections.ConfigDict) -> tuple[float, float]:
  """(ry, rx) of label's face, fractions of the frame."""
  if attribute_mode(data_cfg) == 'independent':
    return _SHAPES[label_attributes(int(label))['shape']]
  voice = speaker(int(label), int(data_cfg.num_speakers))
  return voice.face_ry, voice.face_rx


def talking_mouth_region(label: int, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """int32 [4] (y0, x0, y1, x1; pixels, end-exclusive): where label `label`'s mouth can be in any `talking` clip.

  The union over every head position the generator draws (centre jitter and sway), for reading the mouth of a clip
  whose own geometry is unknown, e.g. a generated one; `talking_clip`'s `mouth_box` is the tighter box of one clip.
  The label fixes the face shape in both attribute modes (speaker, or colour * 4 + shape * 2 + pitch).
  """
  size = int(data_cfg.resolution)
  ry, rx = _face_radii(label, data_cfg)
  face_ry, face_rx = ry * size, rx * size
  mouth_y = size * 0.5 + 0.55 * face_ry
  reach_y, reach_x = 0.04 * size + 0.1 * size + 1.0, (0.04 + 0.03) * size + 0.45 * face_rx + 1.0
  box = (np.floor(mouth_y - reach_y), np.floor(size * 0.5 - reach_x), np.ceil(mouth_y + reach_y),
         np.ceil(size * 0.5 + reach_x))
  return np.clip(np.array(box), 0, size).astype(np.int32)


# ----------------------------------------------------------------------------- impacts


@dataclasses.dataclass(frozen=True)
class Material:
  """Timbre and look of one material: partial frequencies (Hz, for a ball of radius 0.1 frame), decay (s)."""
  name: str
  base_hz: float
  ratios: tuple
  decay_s: float
  click: float  # Relative level of the broadband contact click.
  colour: tuple


MATERIALS = (
    Material('wood', 480.0, (1.0, 2.3, 4.1, 6.2), 0.07, 0.5, (0.55, 0.35, 0.18)),
    Material('metal', 1100.0, (1.0, 2.76, 5.40, 8.93), 0.45, 0.1, (0.65, 0.7, 0.8)),
    Material('glass', 2100.0, (1.0, 2.32, 4.25), 0.22, 0.15, (0.6, 0.9, 0.95)),
    Material('rubber', 170.0, (1.0, 1.6, 2.1), 0.035, 0.8, (0.85, 0.15, 0.15)),
    Material('stone', 750.0, (1.0, 1.9, 3.3, 5.1), 0.04, 0.9, (0.5, 0.5, 0.48)),
    Material('plastic', 880.0, (1.0, 2.1, 3.7), 0.09, 0.4, (0.95, 0.8, 0.2)),
)
_GRAVITY = 1.5  # Frame heights / s^2; small enough that Farneback flow tracks the fastest (contact) frame.
_FLOOR = 0.85  # Floor height, fraction of the frame from the top.
_FALL_SECONDS = (0.35, 0.5)  # Range of drop durations; at least _MIN_FALL_FRAMES frames.
# A fall of >= 4 frames makes the per-frame displacement (and so the optical flow) rise over >= 3 frames up to the
# contact, and with >= 1 still frame before the next drop puts contacts >= 5 frames apart.
_MIN_FALL_FRAMES = 4
_FIRST_RELEASE_FRAMES = 3  # The first drop starts in frames [0, 3): no contact and no sound near the clip start.
_MAX_PAUSE_FRAMES = 3  # Still frames between a contact and the next drop: [1, 3].
# Ball radii and column centres (fractions of the frame). Columns 1/3 apart keep >= 0.11 of background between
# balls: a resting neighbour's static edge inside the flow window would damp the flow of a ball landing next to it.
_RADIUS = (0.07, 0.1)
_COLUMNS = (0.17, 0.5, 0.83)
_MAX_BALLS = len(_COLUMNS)
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # RGB -> grey, as OpenCV.
_REF_IMPACT_SPEED = 1.0  # Frame heights / s; contacts this fast sound at full level.

# attributes='independent' (the table is the caption vocabulary; a clip stores value indices, int32 [3]).
IMPACTS_ATTRIBUTES = captions.IMPACTS_ATTRIBUTES
IMPACTS_HELD_OUT_PAIRS = (('glass', 3), ('rubber', 1))  # (material, balls) pairs seen only in NOVEL_SEEDS clips.
# An uneven rhythm's long gap between contacts is >= this many times its short gap. Not 2: a 2 s clip at 10 fps
# (20 frames) cannot hold gaps of 5 and 10 frames after a first contact at frame >= 4 and before frame 19.
UNEVEN_RATIO = 1.5


@dataclasses.dataclass
class _Contact:
  frame: int
  speed: float  # Normal speed at contact, frame heights / s.
  radius: float  # Radius of the sounding ball, fraction of the frame.


def _fall_frames(seconds: float, fps: float) -> int:
  """Frames of a fall lasting about `seconds`: a whole number (the contact lands on a frame time), >= 4."""
  return max(_MIN_FALL_FRAMES, int(round(seconds * fps)))


def _random_schedule(rng: np.random.Generator, frames: int, fps: float) -> list[tuple[int, int]]:
  """(release frame, fall frames) of 1-3 balls at random times: falls of _FALL_SECONDS, 1-3 still frames between a
  contact and the next release, as many balls as fit before frame T - 2 (attributes='speaker')."""
  schedule, release = [], int(rng.integers(0, _FIRST_RELEASE_FRAMES))
  for _ in range(_MAX_BALLS):
    fall = _fall_frames(rng.uniform(*_FALL_SECONDS), fps)
    if release + fall > frames - 2:  # The contact frame needs a following frame to be seen as the end of motion.
      break
    schedule.append((release, fall))
    release += fall + int(rng.integers(1, _MAX_PAUSE_FRAMES + 1))
  return schedule


def _contact_frames(values: list[int], balls: int, rhythm: str, long_first: bool) -> list[int]:
  """Contact frames of a rhythm schedule; values = [fall frames of each ball..., first release, short-gap extra,
  long-gap extra]. A gap between contacts is >= the next ball's fall + 1 still frame, so every drop starts after
  the previous ball has landed; 'uneven' (3 balls) makes one gap >= UNEVEN_RATIO x the other, in either order."""
  falls, release, extra_short, extra_long = values[:balls], values[balls], values[balls + 1], values[balls + 2]
  short = max(falls[1:], default=0) + 1 + extra_short
  gaps = [short] * (balls - 1)
  if rhythm == 'uneven' and balls >= captions.RHYTHM_MIN_BALLS:
    gaps[0 if long_first else 1] = math.ceil(UNEVEN_RATIO * short) + extra_long
  return [int(c) for c in release + falls[0] + np.cumsum([0] + gaps)]


def _schedule_bounds(balls: int, fps: float) -> tuple[list[int], list[int]]:
  """Lowest and highest values of each entry of `_contact_frames`'s `values`."""
  falls = (_fall_frames(_FALL_SECONDS[0], fps), _fall_frames(_FALL_SECONDS[1], fps))
  low = [falls[0]] * balls + [0, 0, 0]
  high = [falls[1]] * balls + [_FIRST_RELEASE_FRAMES - 1, _MAX_PAUSE_FRAMES - 1, _MAX_PAUSE_FRAMES - 1]
  return low, high


def check_impacts_fit(data_cfg: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when independent `impacts` clips cannot be drawn: data.num_materials is not the number of
  IMPACTS_ATTRIBUTES materials, or the clip cannot hold the longest schedule at its lowest values (3 balls,
  uneven: shortest falls, the first released at frame 0, one still frame before each next drop) with its last
  contact at frame <= T - 2."""
  materials = IMPACTS_ATTRIBUTES['material']
  if int(data_cfg.num_materials) != len(materials) or tuple(m.name for m in MATERIALS[:len(materials)]) != materials:
    raise config_lib.ConfigError(f'data.num_materials={data_cfg.num_materials} must be {len(materials)} for '
                                 f'data.attributes=\'independent\' with impacts (materials {materials})')
  frames, fps = config_lib.num_frames(data_cfg), float(data_cfg.fps)
  balls = max(IMPACTS_ATTRIBUTES['balls'])
  last = _contact_frames(_schedule_bounds(balls, fps)[0], balls, 'uneven', False)[-1]
  if last > frames - 2:
    raise config_lib.ConfigError(
        f'data.clip_seconds={data_cfg.clip_seconds:g} at data.fps={fps:g} ({frames} frames) is too short for '
        f'data.attributes=\'independent\' with impacts: {balls} balls in an uneven rhythm (one gap between '
        f'contacts >= {UNEVEN_RATIO:g}x the other) need a last contact at frame {last} or later, and it must be '
        f'<= {frames - 2}')


def _rhythm_schedule(rng: np.random.Generator, balls: int, rhythm: str, frames: int, fps: float
                     ) -> list[tuple[int, int]]:
  """(release frame, fall frames) of exactly `balls` balls whose contacts are evenly or unevenly spaced.

  Every value is drawn from its range as in `_random_schedule` (falls of _FALL_SECONDS, first release in
  [0, _FIRST_RELEASE_FRAMES), up to _MAX_PAUSE_FRAMES - 1 extra frames per gap); then, in that order, each is
  lowered until the schedule with the values not yet fixed at their lowest ends by frame T - 2, which
  `check_impacts_fit` guarantees is possible. With fewer than RHYTHM_MIN_BALLS balls the rhythm is drawn but not
  observable: the timing is the same for both values.
  """
  low, high = _schedule_bounds(balls, fps)
  long_first = bool(rng.integers(2))
  drawn = [_fall_frames(rng.uniform(*_FALL_SECONDS), fps) for _ in range(balls)] + [
      int(rng.integers(lo, hi + 1)) for lo, hi in zip(low[balls:], high[balls:])]
  values = list(low)
  for i, value in enumerate(drawn):
    values[i] = value
    while values[i] > low[i] and _contact_frames(values, balls, rhythm, long_first)[-1] > frames - 2:
      values[i] -= 1
  contacts = _contact_frames(values, balls, rhythm, long_first)
  return [(contact - fall, fall) for contact, fall in zip(contacts, values[:balls])]


def _draw_impacts_attributes(rng: np.random.Generator, novel: bool) -> np.ndarray:
  """int32 [3] value indices (material, balls, rhythm): uniform and independent, except that (material, balls) is
  drawn among IMPACTS_HELD_OUT_PAIRS when `novel` and among the other pairs otherwise."""
  materials, counts = IMPACTS_ATTRIBUTES['material'], IMPACTS_ATTRIBUTES['balls']
  pairs = [(m, b) for m in range(len(materials)) for b in range(len(counts))
           if ((materials[m], counts[b]) in IMPACTS_HELD_OUT_PAIRS) == novel]
  material, balls = pairs[int(rng.integers(len(pairs)))]
  return np.array([material, balls, int(rng.integers(len(IMPACTS_ATTRIBUTES['rhythm'])))], np.int32)


def _simulate(rng: np.random.Generator, frames: int, fps: float, schedule: list[tuple[int, int]]):
  """Balls dropped from rest one after another; each falls under gravity and lands dead on the floor.

  Ball i hangs still until its release frame, falls for a whole number of frames so that it touches the floor
  exactly at a frame time (that frame shows the first contact and its fastest motion), then rests. The next ball is
  released only after the previous one has landed, so the scene's motion rises to each contact and stops there.
  Balls sit in separate columns, so they never touch each other.

  Args:
    schedule: (release frame, fall frames) per ball, in order (`_random_schedule` or `_rhythm_schedule`).
  Returns:
    positions float32 [T, N, 2] (y, x as fractions of the frame), radii float32 [N], list of _Contact (one per
    ball, in frame order; every contact frame lies in [_MIN_FALL_FRAMES, T - 2]).
  """
  dt = 1.0 / fps
  n = len(schedule)
  radius = rng.uniform(*_RADIUS, n)
  x = np.asarray(_COLUMNS)[rng.permutation(len(_COLUMNS))[:n]] + rng.uniform(-0.01, 0.01, n)
  positions, contacts = np.zeros((frames, n, 2), np.float32), []
  f = np.arange(frames, dtype=np.float64)
  for i, (release, fall) in enumerate(schedule):
    rest_y = _FLOOR - radius[i]
    drop = 0.5 * _GRAVITY * (fall * dt)**2
    elapsed = np.clip(f - release, 0, fall) * dt
    positions[:, i, 0] = rest_y - drop + 0.5 * _GRAVITY * elapsed**2
    positions[:, i, 1] = x[i]
    contacts.append(_Contact(release + fall, _GRAVITY * fall * dt, float(radius[i])))
  return positions, radius.astype(np.float32), contacts


def _impact_sound(rng: np.random.Generator, material: Material, contact: _Contact, length: int,
                  sample_rate: int) -> np.ndarray:
  """Percussive sound of one contact, float32 [length] starting at sample 0: decaying partials + a click."""
  n = min(length, int(6 * material.decay_s * sample_rate) + 1)
  t = np.arange(n, dtype=np.float32) / sample_rate
  level = 0.3 + 0.7 * min(1.0, contact.speed / _REF_IMPACT_SPEED)
  base = material.base_hz * (0.1 / contact.radius)**0.5 * rng.uniform(0.97, 1.03)
  freqs = np.minimum(base * np.asarray(material.ratios, np.float32), 0.45 * sample_rate)
  m = np.arange(len(freqs), dtype=np.float32)
  decays = material.decay_s / (1.0 + 0.6 * m)  # Higher partials die faster.
  amps = 1.0 / (1.0 + m)
  partials = amps[:, None] * np.exp(-t[None, :] / decays[:, None]) * np.sin(
      2 * np.pi * freqs[:, None] * t[None, :] + rng.uniform(0, 2 * np.pi, len(freqs))[:, None])
  click = material.click * rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.004)
  sound = np.zeros(length, np.float32)
  sound[:n] = level * (partials.sum(0) / amps.sum() + click)
  return sound


def impacts_clip(seed: int, data_cfg: ml_collections.ConfigDict) -> dict:
  """One impacts clip.

  With data.attributes='independent' the material, number of balls and rhythm are drawn from the seed; a seed in
  NOVEL_SEEDS draws only the (material, balls) pairs of IMPACTS_HELD_OUT_PAIRS, any other seed never does.

  Returns:
    dict with `video` uint8 [T, H, W, 3], `audio` float32 [S] in [-1, 1], `label` int (material index) and
    `impact` float32 [T] (1.0 at frames where some contact happens; its sound starts at sample f * S / T);
    independent mode adds `attributes` int32 [3] (value indices in IMPACTS_ATTRIBUTES order) and `caption` str
    (`captions.caption(attributes, seed, 'impacts')`).
  """
  rng = np.random.default_rng([int(seed), 2])
  size, fps, sr = int(data_cfg.resolution), float(data_cfg.fps), int(data_cfg.sample_rate)
  frames, samples = config_lib.num_frames(data_cfg), config_lib.num_samples(data_cfg)
  if not 0 < data_cfg.num_materials <= len(MATERIALS):
    raise ValueError(f'data.num_materials={data_cfg.num_materials} must lie in [1, {len(MATERIALS)}]')
  extra = {}
  if attribute_mode(data_cfg) == 'independent':
    check_impacts_fit(data_cfg)
    attributes = _draw_impacts_attributes(rng, is_novel_seed(seed))
    values = captions.named(attributes, 'impacts')
    label = int(attributes[0])
    schedule = _rhythm_schedule(rng, values['balls'], values['rhythm'], frames, fps)
    extra = {'attributes': attributes, 'caption': captions.caption(attributes, seed, 'impacts')}
  else:  # The draws of the original generator, in their order: its clips stay bit-identical.
    label = int(rng.integers(data_cfg.num_materials))
    schedule = _random_schedule(rng, frames, fps)
  material = MATERIALS[label]
  positions, radius, contacts = _simulate(rng, frames, fps, schedule)

  per_frame = samples // frames
  # Silence between sounds: a noise floor that starts at t = 0 reads as an onset at the clip start.
  audio = np.zeros(samples, np.float32)
  impact = np.zeros(frames, np.float32)
  for contact in contacts:
    start = contact.frame * per_frame
    audio[start:] += _impact_sound(rng, material, contact, samples - start, sr)
    impact[contact.frame] = 1.0
  peak = np.abs(audio).max()
  audio = (audio * min(1.0, 0.9 / peak)).astype(np.float32)

  # Balls and background differ by ~0.3-0.4 in grey level whatever the material: optical flow sees grey frames.
  luma = float(np.dot(material.colour, _LUMA_WEIGHTS))
  background = _hsv(rng.uniform(), 0.2, luma + (-1.0 if luma > 0.55 else 1.0) * rng.uniform(0.3, 0.4))
  # The floor is not drawn as a band: its static edge would damp the optical flow of a ball landing on it.
  shade = np.linspace(1.1, 0.85, size, dtype=np.float32)[:, None, None]
  image = np.broadcast_to(background * shade, (frames, size, size, 3)).astype(np.float32).copy()
  colour = np.asarray(material.colour, np.float32)
  for i in range(positions.shape[1]):
    r = np.full(frames, radius[i] * size)
    disc = _soft_ellipse(positions[:, i, 0] * size, positions[:, i, 1] * size, r, r, size)
    image = _blend(image, disc, colour * rng.uniform(0.93, 1.03))
    glint = _soft_ellipse((positions[:, i, 0] - 0.4 * radius[i]) * size, (positions[:, i, 1] - 0.4 * radius[i]) *
                          size, 0.3 * r, 0.3 * r, size)
    image = _blend(image, 0.5 * glint, np.ones(3, np.float32))
  return {'video': _to_uint8(image), 'audio': audio, 'label': label, 'impact': impact, **extra}


# ----------------------------------------------------------------------------- dispatch

_GENERATORS = {'talking': talking_clip, 'impacts': impacts_clip}


def num_classes(name: str, data_cfg: ml_collections.ConfigDict) -> int:
  """Label classes of a built-in dataset (`talking` with attributes='independent': the 16 (colour, shape, pitch)
  combinations)."""
  if name not in _GENERATORS:
    raise ValueError(f'Unknown synthetic dataset {name!r}; expected one of {DATASETS}')
  if name == 'talking':
    return NUM_INDEPENDENT_CLASSES if attribute_mode(data_cfg) == 'independent' else int(data_cfg.num_speakers)
  return int(data_cfg.num_materials)


def make_clip(name: str, seed: int, data_cfg: ml_collections.ConfigDict) -> dict:
  """Clip `seed` of built-in dataset `name` ('talking' | 'impacts'), drawn procedurally (no model); see
  `talking_clip` / `impacts_clip`."""
  if name not in _GENERATORS:
    raise ValueError(f'Unknown synthetic dataset {name!r}; expected one of {DATASETS}')
  return _GENERATORS[name](seed, data_cfg)
