"""PyAV video io: round trips, and audio/video staying in sync through codec delays and stream offsets."""

import av
import numpy as np
import pytest

from avdiff.data import av_io

OUT_FPS, OUT_SR = 10, 16000


def _flash_and_click(fps, sample_rate, seconds, event, channels=1, frame_times=None, audio_start=0.0, size=(48, 64)):
  """A grey clip that turns white at time `event` (for 0.2 s), with an audio click at the same instant."""
  times = np.arange(int(round(seconds * fps))) / fps if frame_times is None else np.asarray(frame_times)
  video = np.full((len(times),) + size + (3,), 40, np.uint8)
  video[(times >= event - 1e-6) & (times < event + 0.2)] = 255
  num = int(round((times[-1] + 1 / fps - audio_start) * sample_rate))
  audio = np.zeros((num, channels), np.float32)
  click = int(round((event - audio_start) * sample_rate))
  audio[click:click + sample_rate // 100] = 0.8
  return video, audio, times


def _event_frames(video, audio):
  """(first bright output frame, click position in output frames)."""
  flash = int(np.flatnonzero(video.mean(axis=(1, 2, 3)) > 150)[0])
  click = np.flatnonzero(np.abs(audio) > 0.3)[0] * OUT_FPS / OUT_SR
  return flash, click


@pytest.mark.parametrize('ext,codec', [('mp4', 'aac'), ('mkv', 'pcm'), ('mov', 'pcm'), ('webm', 'opus')])
def test_round_trip_keeps_click_on_its_frame(tmp_path, ext, codec):
  """A click written at the start of frame 7 reads back within a frame of frame 7 (AAC priming included)."""
  frames, click_frame = 20, 7
  video = np.stack([np.full((32, 32, 3), 10 * f, np.uint8) for f in range(frames)])
  audio = np.zeros(frames * OUT_SR // OUT_FPS, np.float32)
  start = click_frame * OUT_SR // OUT_FPS
  audio[start:start + 80] = 0.9
  path = str(tmp_path / f'clip.{ext}')
  av_io.write_video(path, video, audio, OUT_FPS, OUT_SR, audio_codec=codec)
  got_video, got_audio, info = av_io.read_video(path, sample_rate=OUT_SR)  # Opus decodes at 48 kHz.
  assert got_video.shape == video.shape and got_video.dtype == np.uint8
  assert got_audio.shape == audio.shape and got_audio.dtype == np.float32
  assert info['fps'] == OUT_FPS and info['sample_rate'] == OUT_SR
  np.testing.assert_allclose(got_video.mean(axis=(1, 2, 3)), video.mean(axis=(1, 2, 3)), atol=3)
  onset = np.flatnonzero(np.abs(got_audio) > 0.3)[0] / (OUT_SR / OUT_FPS)
  assert abs(onset - click_frame) < 1.0
  if codec == 'pcm':  # Lossless: exact to the sample.
    np.testing.assert_allclose(got_audio, audio, atol=1e-4)


@pytest.mark.parametrize(
    'ext,codec,fps,sample_rate,channels,video_start,audio_start',
    [
        ('mp4', 'aac', 29.97, 48000, 2, 0.0, 0.0),  # NTSC rate, stereo 48 kHz AAC.
        ('mp4', 'aac', 25, 48000, 6, 0.2, 0.5),  # 5.1 AAC; streams start at different times.
        ('mkv', 'mp3', 24, 44100, 2, 0.0, 0.4),  # MP3 starting after the video.
        ('mkv', 'pcm', 25, 48000, 2, 0.3, 0.0),  # Video starting after the audio.
    ])
def test_sync_survives_rates_channels_and_start_times(tmp_path, ext, codec, fps, sample_rate, channels, video_start,
                                                       audio_start):
  event = 1.5
  times = video_start + np.arange(int(3 * fps)) / fps
  video, audio, times = _flash_and_click(fps, sample_rate, 3.0, event, channels, times, audio_start)
  path = str(tmp_path / f'clip.{ext}')
  av_io.write_video(path, video, audio, fps, sample_rate, codec, frame_times=times if video_start else None,
                    audio_start=audio_start)
  got_video, got_audio, info = av_io.read_video(path, fps=OUT_FPS, sample_rate=OUT_SR, size=16)
  assert got_video.shape[1:] == (16, 16, 3)
  assert got_audio.ndim == 1 and got_audio.shape[0] == got_video.shape[0] * OUT_SR // OUT_FPS
  assert info['channels'] == channels and info['source_sample_rate'] == sample_rate
  assert info['video_start'] == pytest.approx(video_start, abs=1e-3)
  flash, click = _event_frames(got_video, got_audio)
  expected = (event - video_start) * OUT_FPS  # Output time 0 is the first video frame.
  assert abs(click - expected) < 0.05
  assert abs(flash - expected) <= 1.0


def test_variable_frame_rate_is_resampled_by_presentation_time(tmp_path):
  rng = np.random.default_rng(0)
  times = np.cumsum(rng.uniform(0.02, 0.07, 60))  # VFR between 14 and 50 fps.
  times -= times[0]
  video = np.stack([np.full((32, 48, 3), 4 * i, np.uint8) for i in range(len(times))])
  audio = np.zeros(int((times[-1] + 0.05) * OUT_SR), np.float32)
  path = str(tmp_path / 'vfr.mp4')
  av_io.write_video(path, video, audio, 25, OUT_SR, frame_times=times)
  got, _, _ = av_io.read_video(path, fps=OUT_FPS, sample_rate=OUT_SR)
  centres = (np.arange(len(got)) + 0.5) / OUT_FPS
  source = np.searchsorted(np.round(times, 3), centres + 1e-4, side='right') - 1  # On screen mid-interval.
  np.testing.assert_allclose(got.mean(axis=(1, 2, 3)), 4 * source, atol=3)


def test_lower_rate_shows_the_frame_at_each_interval_centre(tmp_path):
  """25 -> 10 fps: output frame k (the 100 ms under audio samples [k, k+1) / 10 s) shows the 25 fps frame on screen
  at the interval's centre, so the picture is off its sound by at most half a source frame (20 ms) and by 0 on
  average; the frame at the interval's start would lead the sound by 30 ms on average."""
  source_fps, out_fps = 25, 10
  video = np.stack([np.full((32, 32, 3), 4 * i, np.uint8) for i in range(60)])  # Frame i has value 4i.
  path = str(tmp_path / 'rate.mp4')
  av_io.write_video(path, video, np.zeros(int(2.4 * OUT_SR), np.float32), source_fps, OUT_SR)
  got, _, _ = av_io.read_video(path, fps=out_fps, sample_rate=OUT_SR)
  assert len(got) == 24
  shown = np.round(got.mean(axis=(1, 2, 3)) / 4)
  lag = (shown + 0.5) / source_fps - (np.arange(len(got)) + 0.5) / out_fps  # Shown frame's centre - interval's (s).
  assert np.abs(lag).max() <= 0.5 / source_fps + 1e-6
  assert abs(lag.mean()) < 0.005


def test_odd_sizes_are_centre_cropped(tmp_path):
  video = np.zeros((10, 144, 176, 3), np.uint8)
  video[:, :, 16:160] = 200  # The centre 144 x 144 square is bright, the side bands dark.
  path = str(tmp_path / 'qcif.mkv')
  av_io.write_video(path, video, np.zeros(16000, np.float32), OUT_FPS, OUT_SR, 'pcm')
  got, _, info = av_io.read_video(path, size=24)
  assert got.shape == (10, 24, 24, 3)
  assert (info['source_width'], info['source_height']) == (176, 144)
  assert got.min() > 150


def test_audio_and_video_cut_to_common_duration(tmp_path):
  video = np.zeros((30, 32, 32, 3), np.uint8)  # 3 s of video, 1.55 s of audio.
  path = str(tmp_path / 'short_audio.mkv')
  av_io.write_video(path, video, np.full(int(1.55 * OUT_SR), 0.1, np.float32), OUT_FPS, OUT_SR, 'pcm')
  got_video, got_audio, info = av_io.read_video(path, fps=OUT_FPS, sample_rate=OUT_SR)
  assert got_video.shape[0] == 15 and got_audio.shape[0] == 15 * OUT_SR // OUT_FPS
  assert info['video_seconds'] == pytest.approx(3.0) and info['audio_seconds'] == pytest.approx(1.55, abs=0.01)


def _write_audio_only(path, seconds=1.0):
  with av.open(path, 'w') as container:
    stream = container.add_stream('aac', rate=OUT_SR)
    stream.layout = 'mono'
    frame = av.AudioFrame.from_ndarray(np.zeros((1, int(seconds * OUT_SR)), np.float32), format='fltp',
                                       layout='mono')
    frame.sample_rate = OUT_SR
    for packet in stream.encode(frame):
      container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _write_zero_video(path):
  with av.open(path, 'w') as container:
    video = container.add_stream('libx264', rate=OUT_FPS)
    video.width, video.height, video.pix_fmt = 32, 32, 'yuv420p'
    audio = container.add_stream('pcm_s16le', rate=OUT_SR)
    audio.layout = 'mono'
    frame = av.AudioFrame.from_ndarray(np.zeros((1, OUT_SR), np.int16), format='s16', layout='mono')
    frame.sample_rate = OUT_SR
    for packet in audio.encode(frame):
      container.mux(packet)
    for packet in audio.encode():
      container.mux(packet)


def test_unusable_files_raise_with_reason(tmp_path):
  good = str(tmp_path / 'good.mp4')
  av_io.write_video(good, np.zeros((20, 32, 32, 3), np.uint8), np.zeros(32000, np.float32), OUT_FPS, OUT_SR)
  data = open(good, 'rb').read()
  (tmp_path / 'truncated.mp4').write_bytes(data[:len(data) // 2])
  (tmp_path / 'text.mp4').write_text('not a video\n' * 50)
  (tmp_path / 'empty.mkv').write_bytes(b'')
  av_io.write_video(str(tmp_path / 'silent.mp4'), np.zeros((20, 32, 32, 3), np.uint8), None, OUT_FPS, OUT_SR)
  _write_audio_only(str(tmp_path / 'audio_only.mkv'))
  _write_zero_video(str(tmp_path / 'zero_video.mkv'))
  expected = {'truncated.mp4': 'corrupt', 'text.mp4': 'corrupt', 'empty.mkv': 'corrupt',
              'silent.mp4': 'no audio stream', 'audio_only.mkv': 'no video stream',
              'zero_video.mkv': 'zero-length video stream'}
  for name, reason in expected.items():
    with pytest.raises(av_io.UnusableClipError) as error:
      av_io.read_video(str(tmp_path / name), fps=OUT_FPS, sample_rate=OUT_SR)
    assert error.value.reason == reason, name
  with pytest.raises(av_io.UnusableClipError):
    av_io.read_video(str(tmp_path / 'missing.mp4'))


def test_max_seconds_stops_decoding_early(tmp_path):
  video = np.stack([np.full((32, 32, 3), 5 * f, np.uint8) for f in range(40)])
  path = str(tmp_path / 'long.mkv')
  av_io.write_video(path, video, np.zeros(4 * OUT_SR, np.float32), OUT_FPS, OUT_SR, 'pcm')
  full, _, _ = av_io.read_video(path)
  part, audio, info = av_io.read_video(path, max_seconds=1.5)
  assert len(full) == 40 and len(part) == 15 and audio.shape == (15 * OUT_SR // OUT_FPS,)
  np.testing.assert_array_equal(part, full[:15])
  assert info['video_seconds'] < 4.0
