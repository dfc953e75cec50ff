"""Video files with an audio track, via PyAV: write [T, H, W, 3] frames + waveform, read back on one clock.

`write_video` picks the container from the file extension (mp4 / mkv / mov / webm) and encodes h264 (vp9 in webm)
plus the requested audio codec. `read_video` decodes both streams, places every decoded frame and audio sample
at its presentation time (stream start times, edit lists and encoder priming are honoured because ffmpeg exposes
them as timestamps), and returns video resampled to a constant frame rate and audio resampled / downmixed to mono,
both starting at the first video frame and covering the same duration.
"""

from __future__ import annotations

import fractions
import math
import os
from typing import Optional

import av
import cv2
import numpy as np

_AUDIO_CODECS = {'pcm': 'pcm_s16le', 'aac': 'aac', 'mp3': 'libmp3lame', 'opus': 'libopus', 'flac': 'flac'}
# Files read as videos everywhere (dataset builds, folder evaluation, FVD references).
VIDEO_EXTENSIONS = ('.mp4', '.mov', '.mkv', '.webm', '.m4v', '.avi')
_VIDEO_CODECS = {'.mp4': 'libx264', '.mkv': 'libx264', '.mov': 'libx264', '.webm': 'libvpx-vp9'}
_CHANNEL_LAYOUTS = {1: 'mono', 2: 'stereo', 6: '5.1'}


class UnusableClipError(Exception):
  """A media file cannot give a clip; `reason` is a short, countable cause (e.g. 'no audio stream')."""

  def __init__(self, reason: str, detail: str = ''):
    super().__init__(f'{reason}: {detail}' if detail else reason)
    self.reason = reason
    self.detail = detail


def _rate(value: float) -> fractions.Fraction:
  """29.97 -> 30000/1001, 25.0 -> 25."""
  return fractions.Fraction(value).limit_denominator(1001)


# ----------------------------------------------------------------------------- writing


def write_video(path: str, video: np.ndarray, audio: Optional[np.ndarray], fps: float, sample_rate: int,
                audio_codec: str = 'aac', *, video_codec: Optional[str] = None, crf: int = 18,
                frame_times: Optional[np.ndarray] = None, audio_start: float = 0.0) -> None:
  """Writes a video file with an optional audio track.

  Args:
    path: output file; the container follows the extension (.mp4, .mkv, .mov, .webm).
    video: uint8 [T, H, W, 3] RGB frames (H and W even for h264's 4:2:0).
    audio: float32 [S] mono or [S, C] waveform in [-1, 1] at `sample_rate`, or None for no audio stream.
    fps: frame rate, Hz (29.97 is stored as 30000/1001).
    sample_rate: audio sample rate, Hz.
    audio_codec: 'aac' (mp4's usual), 'pcm' (16-bit, mkv / mov), 'mp3', 'opus' (webm), 'flac' or an ffmpeg name.
    video_codec: ffmpeg encoder; default h264 (libx264), vp9 for webm.
    crf: x264 constant rate factor (quality; lower is better).
    frame_times: optional float [T] presentation times in seconds (variable frame rate); default f / fps.
    audio_start: presentation time of the first audio sample, seconds (streams that start apart).
  """
  video = np.asarray(video)
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'video must be uint8 [T, H, W, 3], got {video.dtype} {video.shape}')
  ext = os.path.splitext(path)[1].lower()
  if ext not in _VIDEO_CODECS:
    raise ValueError(f'Unsupported container {ext!r}; use one of {sorted(_VIDEO_CODECS)}')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  rate = _rate(fps)
  with av.open(path, mode='w') as container:
    vstream = container.add_stream(video_codec or _VIDEO_CODECS[ext], rate=rate)
    vstream.width, vstream.height = video.shape[2], video.shape[1]
    vstream.pix_fmt = 'yuv420p'
    if vstream.codec_context.name == 'libx264':
      vstream.options = {'crf': str(crf), 'preset': 'veryfast'}
    if frame_times is not None:  # Millisecond clock so irregular times can be represented.
      vstream.codec_context.time_base = fractions.Fraction(1, 1000)
    astream = None
    if audio is not None:
      audio = np.asarray(audio, np.float32)
      if audio.ndim == 1:
        audio = audio[:, None]
      codec = _AUDIO_CODECS.get(audio_codec, audio_codec)
      astream = container.add_stream(codec, rate=int(sample_rate))
      astream.layout = _CHANNEL_LAYOUTS.get(audio.shape[1], f'{audio.shape[1]}c')
    for f, frame in enumerate(video):
      out = av.VideoFrame.from_ndarray(frame, format='rgb24')
      if frame_times is not None:
        out.pts = int(round(float(frame_times[f]) * 1000))
        out.time_base = fractions.Fraction(1, 1000)
      for packet in vstream.encode(out):
        container.mux(packet)
    for packet in vstream.encode():
      container.mux(packet)
    if astream is not None:
      _encode_audio(container, astream, audio, int(sample_rate), int(round(audio_start * sample_rate)))


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, first_pts: int) -> None:
  """Encodes float [S, C] audio from sample `first_pts` on, converting to the encoder's sample format."""
  fmt = stream.codec_context.format.name if stream.codec_context.format else 'fltp'
  resampler = av.AudioResampler(format=fmt, layout=stream.layout.name, rate=sample_rate)
  chunk = stream.codec_context.frame_size or 1024
  for start in range(0, audio.shape[0], chunk):
    block = np.ascontiguousarray(audio[start:start + chunk].T)  # [C, n] planar float.
    frame = av.AudioFrame.from_ndarray(block, format='fltp', layout=stream.layout.name)
    frame.sample_rate = sample_rate
    frame.pts = first_pts + start
    frame.time_base = fractions.Fraction(1, sample_rate)
    for resampled in resampler.resample(frame):
      for packet in stream.encode(resampled):
        container.mux(packet)
  for resampled in resampler.resample(None):
    for packet in stream.encode(resampled):
      container.mux(packet)
  for packet in stream.encode():
    container.mux(packet)


# ----------------------------------------------------------------------------- reading


def centre_square(height: int, width: int) -> tuple[int, int, int]:
  """(y0, x0, side) of the centred square crop of a height x width frame (pixels)."""
  side = min(height, width)
  return (height - side) // 2, (width - side) // 2, side


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
  """The centred square crop of RGB uint8 [h, w, 3] (in source pixels) resized to size x size."""
  y0, x0, side = centre_square(*image.shape[:2])
  square = image[y0:y0 + side, x0:x0 + side]
  if side == size:
    return np.ascontiguousarray(square)
  return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def box_in_square(box, height: int, width: int, size: int) -> tuple[int, int, int, int]:
  """A (y0, x0, y1, x1) box in the pixels of a height x width frame, mapped into the frame `square_resize` makes of
  it (size x size), rounded outwards and clipped to the frame; empty (y1 <= y0 or x1 <= x0) when outside it."""
  oy, ox, side = centre_square(height, width)
  scale = size / side
  y0, x0 = math.floor((box[0] - oy) * scale), math.floor((box[1] - ox) * scale)
  y1, x1 = math.ceil((box[2] - oy) * scale), math.ceil((box[3] - ox) * scale)
  return tuple(int(min(max(v, 0), size)) for v in (y0, x0, y1, x1))


def common_span(video_seconds: float, audio_seconds: float, fps: float, sample_rate: int,
                max_seconds: float = math.inf) -> tuple[int, int]:
  """(frames at fps, samples at sample_rate) of the span both streams cover from time 0 (at most max_seconds):
  whole frames, and the samples under them."""
  num_frames = int(math.floor(min(video_seconds, audio_seconds, max_seconds) * fps + 1e-6))
  return num_frames, int(round(num_frames * sample_rate / fps))


def _resize_crop(frame: av.VideoFrame, size: Optional[int]) -> np.ndarray:
  """RGB uint8 [h, w, 3]; with `size`, square_resize'd."""
  image = frame.to_ndarray(format='rgb24')
  return image if size is None else square_resize(image, size)


class Stream:
  """One pass over a media file: video frames as they decode, audio gathered whole on the way.

  Memory holds one video frame at a time (plus what the caller keeps) and the audio track, which is small next to
  the video (mono float32: 11.5 MB per minute at 48 kHz). Iterate `frames()` once, then read `audio()`.

      with av_io.Stream(path) as s:
        for time, image in s.frames():   # seconds from the first frame, uint8 [h, w, 3]
          ...
        wave = s.audio()                 # float32 [S] mono from the first frame's time, at s.sample_rate Hz

  Downmixing averages the channels (as librosa.load does); ffmpeg's 'mono' layout would weight them instead.
  """

  def __init__(self, path: str, size: Optional[int] = None, sample_rate: Optional[int] = None,
               max_seconds: Optional[float] = None):
    """size: short side scaled to size, centre square crop (None = native frames); sample_rate: None = native."""
    try:
      self._container = av.open(path)
    except av.error.FFmpegError as e:
      raise UnusableClipError('corrupt', str(e)) from e
    if not self._container.streams.video:
      self._container.close()
      raise UnusableClipError('no video stream')
    if not self._container.streams.audio:
      self._container.close()
      raise UnusableClipError('no audio stream')
    self._v, self._a = self._container.streams.video[0], self._container.streams.audio[0]
    self._v.thread_type = 'AUTO'
    cc = self._a.codec_context
    self.info = {'source_fps': float(self._v.average_rate or 0.0), 'source_width': self._v.codec_context.width,
                 'source_height': self._v.codec_context.height, 'source_sample_rate': cc.sample_rate,
                 'channels': cc.channels, 'video_codec': self._v.codec_context.name, 'audio_codec': cc.name}
    self.sample_rate = int(sample_rate or cc.sample_rate)
    self._size, self._max_seconds = size, max_seconds
    self._chunks, self._audio_start, self._first, self._done = [], None, None, False
    self.times = []  # Presentation times (s, stream clock) of the frames yielded so far.

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._container.close()

  @property
  def nominal_fps(self) -> float:
    if self._v.average_rate:
      return float(self._v.average_rate)
    if len(self.times) > 1:
      return float(1.0 / np.median(np.diff(self.times)))
    return 25.0

  def frames(self):
    """Yields (seconds from the first video frame, RGB uint8 [h, w, 3]) in presentation order."""
    channels = max(1, self._a.codec_context.channels)
    resampler = av.AudioResampler(format='flt', layout=self._a.layout.name if channels > 1 else 'mono',
                                  rate=self.sample_rate)
    latest = {'video': -math.inf, 'audio': -math.inf}
    try:
      for packet in self._container.demux(self._v, self._a):
        for frame in packet.decode():
          if frame.pts is None:
            continue
          time = float(frame.pts * frame.time_base)
          kind = packet.stream.type
          latest[kind] = max(latest[kind], time)
          if kind == 'video':
            if self._first is None:
              self._first = time
            self.times.append(time)
            yield time - self._first, _resize_crop(frame, self._size)
          else:
            if self._audio_start is None:
              self._audio_start = time
            self._chunks.extend(out.to_ndarray().reshape(-1, channels).mean(1) for out in resampler.resample(frame))
        if (self._max_seconds is not None and self._first is not None
            and min(latest.values()) > self._first + self._max_seconds + 0.5):
          break
      if self._audio_start is not None:
        self._chunks.extend(out.to_ndarray().reshape(-1, channels).mean(1) for out in resampler.resample(None))
    except (av.error.FFmpegError, ValueError) as e:
      raise UnusableClipError('corrupt', f'decode failed: {e}') from e
    self._done = True
    if self._first is None:
      raise UnusableClipError('zero-length video stream')

  def audio(self) -> np.ndarray:
    """Mono float32 [S] at self.sample_rate; sample 0 is at the first video frame's time (silence-padded before an
    audio stream that starts later, cut where it starts earlier, e.g. an encoder's priming samples)."""
    if not self._done:
      raise RuntimeError('Stream.audio() is available once frames() has been iterated to the end')
    wave = np.concatenate(self._chunks).astype(np.float32) if self._chunks else np.zeros(0, np.float32)
    if wave.size == 0:
      raise UnusableClipError('zero-length audio stream')
    offset = int(round((self._audio_start - self._first) * self.sample_rate))
    return np.concatenate([np.zeros(offset, np.float32), wave]) if offset > 0 else wave[-offset:]

  @property
  def audio_start(self) -> float:
    return float(self._audio_start or 0.0)

  @property
  def video_start(self) -> float:
    return float(self._first or 0.0)


class Regrid:
  """Sample-and-hold of a (time, image) stream onto a frame rate, pushed frame by frame.

  Output frame k stands for the interval [k / fps, (k + 1) / fps), as the audio under it does, and shows the source
  frame on screen at the interval's centre (k + 0.5) / fps (1e-4 s tolerance for rounded timestamps). Taking the
  frame at the interval's start instead makes the picture lead the sound by half an output frame minus half a
  source frame when the rate goes down (30 ms from 25 to 10 fps). A constant-rate file at its own rate comes out
  frame for frame. The last frame stays on screen for one median frame interval.
  """

  def __init__(self, fps: float):
    self.fps, self._held, self._time, self._k, self._gaps = float(fps), None, 0.0, 0, []

  def _centre(self) -> float:
    return (self._k + 0.5) / self.fps

  def push(self, time: float, image) -> list:
    """Frames for the output intervals centred before `time` (seconds); `image` is held until the next push."""
    out = []
    if self._held is not None:
      self._gaps.append(time - self._time)
      while self._centre() < time - 1e-4:
        out.append(self._held)
        self._k += 1
    self._held, self._time = image, time
    return out

  def finish(self) -> list:
    """Frames for the intervals centred before the last frame leaves the screen."""
    out = []
    if self._held is not None:
      while self._centre() < self._time + self.last_interval() - 1e-6:
        out.append(self._held)
        self._k += 1
    return out

  def last_interval(self) -> float:
    """How long the last frame stays on screen (s): the median frame interval so far."""
    return float(np.median(self._gaps)) if self._gaps else 1.0 / self.fps


def read_video(path: str, fps: Optional[float] = None, sample_rate: Optional[int] = None,
               size: Optional[int] = None, max_seconds: Optional[float] = None) -> tuple[np.ndarray, np.ndarray, dict]:
  """Decodes a video file with audio onto one clock.

  Output frame k stands for [t0 + k / fps, t0 + (k + 1) / fps) (t0: first video frame) and shows the source frame
  on screen at that interval's centre (`Regrid`), so variable frame rates and frame-rate changes are resampled by
  sample-and-hold without moving the picture against the sound. Audio sample j is the source audio at
  t0 + j / sample_rate: the audio stream's own start time (including an encoder's priming delay, which the
  container's edit list moves before zero) is honoured, a later audio start is padded with silence.

  Args:
    path: media file.
    fps: output frame rate (Hz); None keeps the stream's average rate.
    sample_rate: output sample rate (Hz); None keeps the stream's rate.
    size: output frames are size x size pixels (short side scaled to `size`, centre crop); None keeps the size.
    max_seconds: decode only about this much from the start (long files); None decodes everything.
  Returns:
    video uint8 [T, H, W, 3], audio float32 [S] mono with S = round(T * sample_rate / fps) (both cut to the
    duration both streams cover), and an info dict: source fps / size / sample_rate / channels / codecs,
    video_start / audio_start (s), video_seconds / audio_seconds (source stream durations), duration (s),
    fps and sample_rate of the output.
  Raises:
    UnusableClipError: unreadable or corrupt file, no video stream, no audio stream, or a zero-length stream.
  """
  with Stream(path, size, sample_rate, max_seconds) as stream:
    decoded = list(stream.frames())
    wave = stream.audio()
    info = dict(stream.info)
    out_rate, nominal = stream.sample_rate, stream.nominal_fps
    audio_start, t0 = stream.audio_start, stream.video_start
  out_fps = float(fps or nominal)
  regrid = Regrid(out_fps)
  frames = [held for time, image in decoded for held in regrid.push(time, image)]
  frames += regrid.finish()
  video_seconds = float(decoded[-1][0] + regrid.last_interval())
  audio_seconds = wave.size / out_rate
  num_frames, num_samples = common_span(video_seconds, audio_seconds, out_fps, out_rate, max_seconds or math.inf)
  if num_frames <= 0:
    raise UnusableClipError('zero-length overlap', f'video {video_seconds:.3f} s, audio {audio_seconds:.3f} s')
  video = np.stack(frames[:num_frames])  # Regrid covers video_seconds, so it holds at least num_frames.
  wave = wave[:num_samples]
  if wave.size < num_samples:  # Rounding at the very end only.
    wave = np.pad(wave, (0, num_samples - wave.size))
  info.update(video_start=t0, audio_start=audio_start, video_seconds=video_seconds, audio_seconds=audio_seconds,
              duration=num_frames / out_fps, fps=out_fps, sample_rate=out_rate)
  return video, wave.astype(np.float32), info


def _open(path: str, kind: str):
  """The container and its first `kind` ('audio' / 'video') stream; UnusableClipError when unreadable or absent."""
  try:
    container = av.open(path)
  except (av.error.FFmpegError, OSError) as e:
    raise UnusableClipError('corrupt', str(e)) from e
  streams = getattr(container.streams, kind)
  if not streams:
    container.close()
    raise UnusableClipError(f'no {kind} stream')
  return container, streams[0]


def read_audio(path: str, sample_rate: Optional[int] = None, mono: bool = True) -> tuple[np.ndarray, int]:
  """The first audio stream of any file ffmpeg reads (wav, flac, mp3, the audio of an mp4, ...), from its first
  sample.

  Args:
    path: media file.
    sample_rate: output rate (Hz); None keeps the stream's.
    mono: average the channels (as `Stream` and librosa.load do); else keep them.
  Returns:
    (float32 [S] (mono) or [S, C] in [-1, 1], sample rate).
  Raises:
    UnusableClipError: unreadable or corrupt file, no audio stream, no samples.
  """
  container, stream = _open(path, 'audio')
  with container:
    channels = max(1, stream.codec_context.channels)
    rate = int(sample_rate or stream.codec_context.sample_rate)
    resampler = av.AudioResampler(format='flt', layout=stream.layout.name if channels > 1 else 'mono', rate=rate)
    chunks = []
    try:
      for frame in container.decode(stream):
        chunks.extend(out.to_ndarray().reshape(-1, channels) for out in resampler.resample(frame))
      chunks.extend(out.to_ndarray().reshape(-1, channels) for out in resampler.resample(None))
    except (av.error.FFmpegError, ValueError) as e:
      raise UnusableClipError('corrupt', f'decode failed: {e}') from e
  if not chunks or sum(len(c) for c in chunks) == 0:
    raise UnusableClipError('zero-length audio stream')
  wave = np.concatenate(chunks).astype(np.float32)
  return (wave.mean(1) if mono else wave), rate


def read_frames(path: str, fps: float, size: Optional[int] = None) -> np.ndarray:
  """The first video stream's frames resampled to `fps` (`Regrid`: output frame k shows the frame on screen at
  (k + 0.5) / fps from the first frame), short side scaled to `size` and centre-cropped square (None keeps the size):
  uint8 [T, H, W, 3]. An audio stream, if any, is ignored.

  Raises:
    UnusableClipError: unreadable or corrupt file, no video stream, no frames.
  """
  container, stream = _open(path, 'video')
  regrid, frames, first = Regrid(fps), [], None
  with container:
    stream.thread_type = 'AUTO'
    try:
      for frame in container.decode(stream):
        if frame.pts is None:
          continue
        time = float(frame.pts * frame.time_base)
        first = time if first is None else first
        frames += regrid.push(time - first, _resize_crop(frame, size))
    except (av.error.FFmpegError, ValueError) as e:
      raise UnusableClipError('corrupt', f'decode failed: {e}') from e
  frames += regrid.finish()
  if not frames:
    raise UnusableClipError('zero-length video stream')
  return np.stack(frames)
