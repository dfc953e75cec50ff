"""Any-length generation: audio (or video) longer than the model's window, generated window by window.

    model = sampling.load_model('runs/tiny')
    out = long_clips.generate(model, [{'audio': wave}], 'audio_to_video')    # wave float32 [S] at data.sample_rate
    out[0]['video']   # uint8 [T, H, W, 3], T = S * fps // sample_rate frames; out[0]['audio'] is `wave`

The model is trained on one window (data.clip_seconds: its positions and TimeBias are built for that many tokens).
The given signal is cut into windows of that length which overlap by `overlap_seconds` (rounded to whole latent
frames); the last window is padded (audio with silence, video by repeating the last frame) and the padding is cut
off again, so a signal shorter than one window comes back at its own length. Every window is conditioned on the
given modality over its own span, on the clip's label and caption, and on its neighbours through the overlap,
in one of two ways (`METHODS`; measured in benchmarks/long_clips.md):
  continue  windows in order; each window's first overlap frames of the generated modality are the previous
            window's last ones, held by replacement (the continuation mechanism, `diffusion.sample` with
            cond_frames). Information flows forward only. Time: windows x one window; memory: one window.
  blend     all windows of a clip in one batch, denoised together; after every step the frames that windows share
            are averaged over them (MultiDiffusion; per-step blending as in StableAvatar), from one initial noise
            on the whole clip, and down to noise level share_above every window's still appearance is the clip's
            (against identity drift; `avdiff.diffusion.windows`). Memory grows with the number of windows. The
            default: it keeps the single window's lip-sync, shows no seam and keeps the speaker.
A file is taken to show one speaker throughout (shared appearance): a clip whose speaker changes needs one call
per speaker, or share_above=1.
Window w covers video frames [w * hop, w * hop + window), hop = window - overlap; its own frames (`Plan.own`) start
after its overlap with the previous window. A model on a mesh (`sampling.load_model(mesh=...)`) samples there.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

import jax
import librosa
import ml_collections
import numpy as np
from flax import nnx

from avdiff import config_lib
from avdiff import parallel
from avdiff import run_dir
from avdiff import sampling
from avdiff.data import audio as audio_lib
from avdiff.data import av_io
from avdiff.data import builders
from avdiff.data import frames as frames_lib

METHODS = ('continue', 'blend')
MODES = ('audio_to_video', 'video_to_audio')
DEFAULT_OVERLAP_SECONDS = 0.4
DEFAULT_METHOD = 'blend'  # benchmarks/long_clips.md
DEFAULT_SHARE_ABOVE = 0.5


@dataclasses.dataclass(frozen=True)
class Plan:
  """How a clip of `frames` video frames is cut into windows of `window` frames overlapping by `overlap`."""
  frames: int
  window: int
  overlap: int
  num_windows: int

  @property
  def hop(self) -> int:
    return self.window - self.overlap

  @property
  def padded(self) -> int:
    """Frames the windows cover (>= frames; the rest is padding)."""
    return (self.num_windows - 1) * self.hop + self.window

  def start(self, w: int) -> int:
    return w * self.hop

  def own(self, w: int) -> tuple[int, int]:
    """[first, end) frames of the clip that window w contributes (after the overlap it shares with w - 1)."""
    first = 0 if w == 0 else self.start(w) + self.overlap
    return first, min(self.start(w) + self.window, self.frames)

  @property
  def boundaries(self) -> list[int]:
    """Frames where a window's own frames begin (the first frame after each overlap), inside the clip."""
    return [self.own(w)[0] for w in range(1, self.num_windows) if self.own(w)[0] < self.frames]


def plan(config: ml_collections.ConfigDict, frames: int, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS) -> Plan:
  """The windows for a clip of `frames` video frames. The overlap is rounded to whole latent frames (the
  autoencoder's temporal stride) and must leave each window frames of its own."""
  window = config_lib.num_frames(config.data)
  stride = window // config_lib.layout(config).video_latent[0]
  if frames < 1:
    raise ValueError(f'a clip needs at least one video frame (1 / {config.data.fps:g} s), got {frames}')
  overlap = int(round(overlap_seconds * config.data.fps / stride)) * stride
  if not 0 <= overlap < window:
    raise ValueError(f'overlap {overlap_seconds:g} s = {overlap} frames must lie in [0, the window = {window} frames '
                     f'= {config.data.clip_seconds:g} s), in steps of {stride} frame(s)')
  hop = window - overlap
  return Plan(frames, window, overlap, max(1, math.ceil((frames - overlap) / hop)))


def _pad_frames(x: np.ndarray, length: int, repeat: bool) -> np.ndarray:
  """[T, ...] -> [length, ...]: zeros (silence) or the last frame repeated after the end."""
  if x.shape[0] >= length:
    return x[:length]
  pad = np.repeat(x[-1:], length - x.shape[0], 0) if repeat else np.zeros((length - x.shape[0],) + x.shape[1:],
                                                                            x.dtype)
  return np.concatenate([x, pad])


def _given(config: ml_collections.ConfigDict, clip: builders.Clip, mode: str, p: Plan) -> np.ndarray:
  """The given modality over the padded windows: audio_to_video log-mel [padded * m, n_mels] (m mel frames per
  video frame), video_to_audio frames float [padded, H, W, 3] in [-1, 1]."""
  d = config.data
  if mode == 'audio_to_video':
    per_frame = config_lib.num_samples(d) // config_lib.num_frames(d)
    wave = _pad_frames(np.asarray(clip['audio'], np.float32), p.padded * per_frame, repeat=False)
    return audio_lib.log_mel(wave, d)
  return np.asarray(frames_lib.to_float(_pad_frames(np.asarray(clip['video']), p.padded, repeat=True)))


def clip_frames(config: ml_collections.ConfigDict, clip: builders.Clip, mode: str) -> int:
  """Video frames of the output for a given clip: its frames, or the whole frames its audio spans."""
  if mode == 'video_to_audio':
    return len(clip['video'])
  per_frame = config_lib.num_samples(config.data) // config_lib.num_frames(config.data)
  return len(clip['audio']) // per_frame


def _assemble(windows: list[np.ndarray], p: Plan, rate: int) -> np.ndarray:
  """Per-window outputs [B, window * rate, ...] -> the clip [B, frames * rate, ...] (each window's own frames)."""
  parts = [win[:, (p.own(w)[0] - p.start(w)) * rate:] for w, win in enumerate(windows)]
  return np.concatenate(parts, 1)[:, :p.frames * rate]


def generate(model: sampling.Model, clips: list[builders.Clip], mode: str = 'audio_to_video', seed: int = 0,
             overlap_seconds: float = DEFAULT_OVERLAP_SECONDS, method: str = DEFAULT_METHOD,
             share_above: float = DEFAULT_SHARE_ABOVE, batch_size: int = 8) -> list[builders.Clip]:
  """One clip of the given clip's length per clip: video uint8 [T, H, W, 3] + waveform float32 [S] + label
  (+ caption, mouth_box) + `plan` (`Plan`).

  clips: audio_to_video: each with `audio` float32 [S] at data.sample_rate (any S); video_to_audio: `video` uint8
    [T, H, W, 3] at data.fps and data.resolution. Optional `label` (default: the null label) and `caption`.
    Clips of different lengths are padded to the longest of their batch.
  share_above: blend: the noise level down to which every window shares the clip's still appearance
    (`diffusion.fuse_overlaps`); 1 turns it off.
  batch_size: windows per sampler call (continue: clips per call; blend: one clip's windows, or several clips').
  audio_to_video returns each clip's own waveform; video_to_audio its frames with Griffin-Lim of the generated mel.
  """
  config = model.config
  if mode not in MODES:
    raise ValueError(f'long clips are generated in {MODES}, not {mode!r}')
  if method not in METHODS:
    raise ValueError(f'method {method!r} is not one of {METHODS}')
  m = int(config.data.mel_frames_per_video_frame)
  graphdef, state = nnx.split(model.dit)
  ae_def, ae_state = nnx.split(model.ae) if model.ae is not None else (None, None)
  inputs = sampling.text_inputs_of(config)
  rng = jax.random.key(seed)
  plans = [plan(config, clip_frames(config, c, mode), overlap_seconds) for c in clips]
  per_call = batch_size if method == 'continue' else max(1, batch_size // max(p.num_windows for p in plans))
  out = []
  for s in range(0, len(clips), per_call):
    chunk = clips[s:s + per_call]
    p = max(plans[s:s + per_call], key=lambda q: q.frames)
    given = np.stack([_given(config, c, mode, p) for c in chunk])
    args = (sampling.clip_labels(config, chunk), sampling.clip_text(config, inputs, chunk))
    key = jax.random.fold_in(rng, s)
    if method == 'continue':
      video, mel = _continue(config, (graphdef, state, ae_def, ae_state), mode, given, args, p, key, m, model.mesh)
    else:
      video, mel = _blend(config, (graphdef, state, ae_def, ae_state), mode, given, args, p, key, m, model.mesh,
                          share_above)
    for i, c in enumerate(chunk):
      q = plans[s + i]
      gen = {'plan': q, 'label': c.get('label', config.model.num_classes)}
      if mode == 'audio_to_video':
        gen.update(video=frames_lib.to_uint8(video[i, :q.frames]), audio=np.asarray(c['audio'], np.float32))
      else:
        wave = sampling.waveforms(model, mel[i:i + 1, :q.frames * m])[0]
        gen.update(video=np.asarray(c['video']), audio=np.asarray(wave, np.float32))
      gen.update({k: c[k] for k in ('caption', 'mouth_box') if k in c})
      out.append(gen)
  return out


def _unknown(config: ml_collections.ConfigDict, num: int, p: Plan, m: int) -> dict:
  """The generated modality's placeholder for `num` windows: {'video': zeros [num, window, H, W, 3], 'audio': zeros
  [num, window * m, n_mels]} (the sampler reads only the known prefix of it)."""
  res = int(config.data.resolution)
  return {'video': np.zeros((num, p.window, res, res, 3), np.float32),
          'audio': np.zeros((num, p.window * m, int(config.data.n_mels)), np.float32)}


def _window_inputs(mode: str, given: np.ndarray, p: Plan, w: int, m: int, template: dict):
  """(cond_video, cond_mel) of window w: the given modality's span, the generated one's `template` (zeros or the
  previous tail)."""
  a, b = p.start(w), p.start(w) + p.window
  if mode == 'audio_to_video':
    return template['video'], given[:, a * m:b * m]
  return given[:, a:b], template['audio']


def _continue(config, model_state, mode, given, args, p: Plan, rng, m, mesh):
  """Windows in order, each continuing the previous one's tail -> (video [B, frames', ...], mel [B, frames' m, ...])
  as float, frames' = p.frames."""
  graphdef, state, ae_def, ae_state = model_state
  label, text = args
  first = sampling.jitted_sample_batch(config, graphdef, ae_def, mode, mesh)
  later = sampling.jitted_sample_batch(config, graphdef, ae_def, mode, mesh, p.overlap) if p.overlap else first
  zeros = _unknown(config, given.shape[0], p, m)
  videos, mels = [], []
  template = zeros
  for w in range(p.num_windows):
    cond_video, cond_mel = _window_inputs(mode, given, p, w, m, template)
    fn = first if w == 0 else later
    video, mel = jax.device_get(fn(state, ae_state, label, jax.random.fold_in(rng, w), cond_video, cond_mel, text))
    videos.append(np.asarray(video))
    mels.append(np.asarray(mel))
    # The next window starts with this one's last `overlap` frames of the generated modality.
    template = {'video': np.concatenate([videos[-1][:, p.hop:], zeros['video'][:, p.overlap:]], 1),
                'audio': np.concatenate([mels[-1][:, p.hop * m:], zeros['audio'][:, p.overlap * m:]], 1)}
  return _assemble(videos, p, 1), _assemble(mels, p, m)


def _blend(config, model_state, mode, given, args, p: Plan, rng, m, mesh, share_above: float):
  """All windows of the clips in one batch, fused after every step -> as `_continue`."""
  graphdef, state, ae_def, ae_state = model_state
  label, text = args
  n, num = p.num_windows, given.shape[0]
  zeros = _unknown(config, num, p, m)
  windows = [_window_inputs(mode, given, p, w, m, zeros) for w in range(n)]
  cond_video = np.stack([v for v, _ in windows], 1).reshape((num * n,) + windows[0][0].shape[1:])
  cond_mel = np.stack([a for _, a in windows], 1).reshape((num * n,) + windows[0][1].shape[1:])
  label = np.repeat(np.asarray(label), n, 0)
  text = jax.tree.map(lambda x: np.repeat(np.asarray(x), n, 0), text)
  fn = sampling.jitted_sample_batch(config, graphdef, ae_def, mode, mesh, windows=(n, p.hop, share_above))
  video, mel = jax.device_get(fn(state, ae_state, label, rng, cond_video, cond_mel, text))
  video = np.asarray(video).reshape((num, n) + video.shape[1:])
  mel = np.asarray(mel).reshape((num, n) + mel.shape[1:])
  return _assemble([video[:, w] for w in range(n)], p, 1), _assemble([mel[:, w] for w in range(n)], p, m)


# ----------------------------------------------------------------------------- files

SILENCE_PEAK = 1e-3  # -60 dBFS: below it the given audio counts as silence.


class InputError(ValueError):
  """A file that cannot be generated from (unreadable, without the needed stream, shorter than one frame)."""


@dataclasses.dataclass
class Given:
  """A file's signal, read before any model loads: `clip` for `generate` (the model's rate / frames), the
  original audio to put back (float32 [S, C] at `rate`; None for video_to_audio), notes for the user."""
  clip: builders.Clip
  original: Optional[np.ndarray]
  rate: int
  notes: list


def read_given(config: ml_collections.ConfigDict, path: str, mode: str, label: Optional[int] = None,
               caption: Optional[str] = None) -> Given:
  """The file's audio (audio_to_video; any rate, mono or stereo: downmixed and resampled to data.sample_rate) or
  frames (video_to_audio; any fps and size: resampled to data.fps, centre-cropped and scaled to data.resolution).

  Raises InputError for an unreadable file, a file without the needed stream, or less than one video frame of it
  (1 / data.fps seconds). Documented behaviours instead of errors: a signal shorter than one window is generated
  in one padded window and cut back to its length; silent audio (peak below -60 dBFS) gives a closed mouth, noted.
  """
  d = config.data
  kind = 'audio' if mode == 'audio_to_video' else 'video'
  try:
    if kind == 'audio':  # Decoded once: the original track to put back, downmixed and resampled for the model.
      original, rate = av_io.read_audio(path, mono=False)
      wave = librosa.resample(original.mean(1), orig_sr=rate, target_sr=int(d.sample_rate)).astype(np.float32)
      clip, seconds = {'audio': wave}, len(wave) / d.sample_rate
    else:
      original, rate = None, int(d.sample_rate)
      clip = {'video': av_io.read_frames(path, float(d.fps), int(d.resolution))}
      seconds = len(clip['video']) / d.fps
  except av_io.UnusableClipError as e:
    raise InputError(f'cannot read {kind} from {path}: {e}') from None
  if clip_frames(config, clip, mode) < 1:
    raise InputError(f'{path} holds {seconds:.3f} s of {kind}, less than one video frame (1 / {d.fps:g} s)')
  notes = []
  if seconds < float(d.clip_seconds):
    notes.append(f'{seconds:.2f} s is shorter than one window ({d.clip_seconds:g} s): generated in one window padded '
                 f'with {"silence" if kind == "audio" else "its last frame"}, cut back to {seconds:.2f} s')
  if kind == 'audio' and float(np.abs(clip['audio']).max()) < SILENCE_PEAK:
    notes.append(f'{path} is silent (peak below -60 dBFS): the face will keep its mouth closed')
  if label is not None:
    clip['label'] = int(label)
  if caption is not None:
    clip['caption'] = caption
  return Given(clip, original, rate, notes)


def write(config: ml_collections.ConfigDict, given: Given, clip: builders.Clip, out: str) -> str:
  """Writes the generated clip to `out` (mp4; a local path or gs://): audio_to_video with the file's own audio at
  its own rate and channels, video_to_audio with the generated audio."""
  audio, rate = (given.original, given.rate) if given.original is not None else (clip['audio'], config.data.sample_rate)
  folder, name = os.path.split(out)
  with run_dir.staged(folder or '.') as local:
    sampling.write_mp4(os.path.join(local, name), clip['video'], audio, config.data.fps, rate)
  return out


def sample_file(workdir: str, path: str, mode: str, config: ml_collections.ConfigDict, *, out: Optional[str] = None,
                label: Optional[int] = None, prompt: Optional[str] = None,
                overlap_seconds: float = DEFAULT_OVERLAP_SECONDS, method: str = DEFAULT_METHOD,
                share_above: float = DEFAULT_SHARE_ABOVE, seed: int = 0, params: str = 'ema',
                step: Optional[int] = None, mesh: Optional[jax.sharding.Mesh] = None, say=print) -> tuple[str, Plan]:
  """The sample command for a file: everything checked and read (`read_given`; its notes passed to `say`) before
  the model of the run in `workdir` loads (`sampling.load_model`, on `mesh`), the whole length generated, and the mp4
  written to `out` (default W/samples/<step>/<file name>_<mode>.mp4) by process 0. Returns (out, the windows).
  Raises InputError (the file, the label) or tokenizer.PromptError (the prompt) before anything loads."""
  if label is not None and not 0 <= label < config.model.num_classes:
    raise InputError(f'label {label} is not one of the model\'s labels 0..{config.model.num_classes - 1}')
  if prompt is not None:
    sampling.prompt_clips([prompt], config)
  try:
    plan(config, 1, overlap_seconds)
  except ValueError as e:
    raise InputError(str(e)) from None
  given = read_given(config, path, mode, label, prompt)
  for note in given.notes:
    say(note)
  model = sampling.load_model(workdir, config, params=params, step=step, mesh=mesh)
  clip = generate(model, [given.clip], mode, seed, overlap_seconds, method, share_above)[0]
  stem = os.path.splitext(os.path.basename(path))[0]
  out = out or str(run_dir.RunDir(workdir).samples(model.step) / f'{stem}_{mode}.mp4')
  if parallel.is_primary():
    write(config, given, clip, out)
  return out, clip['plan']
