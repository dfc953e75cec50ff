"""Folder mode on each file's own clock, on files the tests write with known sync (bouncing ball, 25 and 30 fps).

- AV-Align equals the reference algorithm run on the file (frames read by OpenCV, the waveform that was written).
- Offsets are exact or undetermined, never off by more than one frame when determined; in-sync files give 0.
- Long files are scored in windows; the protocol (native or config) is written into the result.
"""

import math

import cv2
import librosa
import numpy as np
import pytest

from avdiff.data import av_io
from avdiff.data import sync_clips
from avdiff.eval import native
from avdiff.eval import offsets
from avdiff.eval import folder as folder_eval
from avdiff.eval import shift
from configs import tiny

SR = 16000
SHIFTS = range(-5, 6)
SEEDS = range(1000, 1004)  # benchmarks/calibrate_offsets.py calibrates on seeds 0..31: these are held out.


def _config():
  c = tiny.get_config()
  c.eval.bootstrap_samples = 20
  return c


def _pcm16(audio):
  """What a 16-bit PCM track stores and gives back."""
  return np.clip(np.round(audio * 32768), -32768, 32767).astype(np.float32) / 32768


def reference_av_align(path: str, audio: np.ndarray, sample_rate: int) -> float:
  """AV-Align ('v2') as the reference implementation computes it, written out independently of avdiff.eval.

  Frames come from cv2.VideoCapture (BGR -> grey) at the container's frame rate, the audio is the file's mono track
  loaded at 22.05 kHz (librosa.load's default resampling), onsets by librosa's defaults, video peaks are strict
  local maxima >= 0.1 of the mean Farneback magnitude (first value repeated), matched one-to-one within a frame.
  """
  cap = cv2.VideoCapture(path)
  fps = cap.get(cv2.CAP_PROP_FPS)
  grey = []
  while True:
    ok, frame = cap.read()
    if not ok:
      break
    grey.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
  cap.release()
  y = librosa.resample(audio, orig_sr=sample_rate, target_sr=22050)
  onset_env = librosa.onset.onset_strength(y=y, sr=22050)
  audio_peaks = librosa.frames_to_time(librosa.onset.onset_detect(onset_envelope=onset_env, sr=22050), sr=22050)
  mags = []
  for a, b in zip(grey[:-1], grey[1:]):
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    mags.append(cv2.magnitude(flow[..., 0], flow[..., 1]).mean())
  traj = [mags[0]] + mags
  video_peaks = [i / fps for i in range(1, len(traj) - 1) if traj[i - 1] < traj[i] > traj[i + 1] and traj[i] >= 0.1]
  used, hits = set(), 0
  for t in audio_peaks:
    near = [j for j, v in enumerate(video_peaks) if abs(v - t) < 1 / fps and j not in used]
    if near:
      used.add(min(near, key=lambda j: abs(video_peaks[j] - t)))
      hits += 1
  union = len(audio_peaks) + len(video_peaks) - hits
  return hits / union if union else math.nan


@pytest.fixture(scope='module')
def known_sync(tmp_path_factory):
  """A folder of PCM .mkv files: seeds x shifts at 25 and 30 fps, plus 5.1 AAC .mp4 files; name -> answer."""
  folder = tmp_path_factory.mktemp('known_sync')
  answers = {}
  for fps in (25.0, 30.0):
    for seed in SEEDS:
      clip = sync_clips.bouncing_ball(seed, fps=fps, sample_rate=SR)
      for k in SHIFTS:
        name = f'ball{seed}_{fps:g}fps_{k:+d}.mkv'
        audio = shift.shift_audio(clip.audio, k, fps, SR)
        av_io.write_video(str(folder / name), clip.video, audio, fps, SR, 'pcm')
        answers[name] = {'k': k, 'fps': fps, 'audio': _pcm16(audio)}
  clip = sync_clips.bouncing_ball(1010, fps=30.0, sample_rate=48000)
  for k in (-3, 0, 2):  # AAC's encoder delay is only right when stream timestamps are honoured.
    name = f'surround_{k:+d}.mp4'
    audio = np.repeat(shift.shift_audio(clip.audio, k, 30.0, 48000)[:, None], 6, axis=1) * 0.5
    av_io.write_video(str(folder / name), clip.video, audio, 30.0, 48000, 'aac')
    answers[name] = {'k': k, 'fps': 30.0}
  result = folder_eval.evaluate_folder(str(folder), _config())
  return folder, answers, result


def test_offsets_are_exact_or_undetermined(known_sync):
  _, answers, result = known_sync
  assert result['num_skipped'] == 0 and result['num_scored'] == len(answers)
  exact = 0
  for name, answer in answers.items():
    m = result['clips'][name]
    assert m['fps'] == answer['fps'] and m['offset_method'] == 'onset_motion'
    if math.isnan(m['offset_frames']):
      assert m['offset_reason'], name  # Undetermined says why.
      continue
    assert m['offset_reason'] == ''
    assert abs(m['offset_frames'] - answer['k']) <= 1, (name, m['offset_frames'], m['offset_confidence'])
    if answer['k'] == 0:
      assert m['offset_frames'] == 0, name
    exact += m['offset_frames'] == answer['k']
  assert exact / len(answers) >= 0.9, exact / len(answers)
  agg = result['aggregate']
  assert agg['offset_determined_rate']['mean'] >= 0.9 and agg['offset_exact_rate']['n'] > 0


def test_av_align_equals_the_reference_at_native_rates(known_sync):
  folder, answers, result = known_sync
  checked = 0
  for name, answer in answers.items():
    if 'audio' not in answer or not name.startswith(f'ball{SEEDS[0]}_'):
      continue
    ref = reference_av_align(str(folder / name), answer['audio'], SR)
    assert result['clips'][name]['av_align'] == pytest.approx(ref, abs=1e-12), name
    checked += 1
  assert checked == 2 * len(SHIFTS)
  synced = [result['clips'][n]['av_align'] for n, a in answers.items() if a['k'] == 0]
  shifted = [result['clips'][n]['av_align'] for n, a in answers.items() if abs(a['k']) >= 3]
  assert np.mean(synced) > np.mean(shifted) + 0.2


def test_result_states_the_native_protocol(known_sync):
  _, _, result = known_sync
  p = result['protocol']
  assert p['protocol'] == 'native' and p['fps'] == 'native' and p['clip_seconds'] == 'whole file'
  assert p['offset_estimators']['onset_motion']['min_confidence'] == offsets.ONSET_MOTION_MIN_CONFIDENCE
  clip = result['clips'][f'ball{SEEDS[0]}_25fps_+0.mkv']
  assert clip['num_frames'] == 100 and clip['sample_rate'] == SR and clip['width'] == 64
  assert len(clip['windows']) == 1 and clip['windows'][0]['stop_s'] == pytest.approx(4.0)


def test_config_protocol_stays_available(known_sync):
  folder, _, _ = known_sync
  config = _config()
  config.eval.protocol = 'config'
  result = folder_eval.evaluate_folder(str(folder), config)
  p = result['protocol']
  assert p['protocol'] == 'config' and p['fps'] == config.data.fps and p['resolution'] == config.data.resolution
  config.eval.protocol = 'neither'
  with pytest.raises(ValueError, match='eval.protocol'):
    folder_eval.evaluate_folder(str(folder), config)


def test_long_file_in_windows(tmp_path):
  fps, k = 25.0, 2
  clips = [sync_clips.bouncing_ball(2000 + i, fps=fps, seconds=8.0, sample_rate=SR) for i in range(3)]
  video = np.concatenate([c.video for c in clips])
  audio = shift.shift_audio(np.concatenate([c.audio for c in clips]), k, fps, SR)
  path = str(tmp_path / 'long.mkv')
  av_io.write_video(path, video, audio, fps, SR, 'pcm')
  config = _config()
  config.eval.window_seconds = 8.0
  scan = native.scan(path, config)
  assert scan.num_frames == 600 and len(scan.flow_magnitude) == 599
  m = native.score_scan(scan, config)
  assert [w['start_s'] for w in m['windows']] == [0.0, 8.0, 16.0]
  assert m['offset_frames'] == k
  for w in m['windows']:
    assert w['offset_frames'] == k or math.isnan(w['offset_frames'])
  assert sum(w['offset_frames'] == k for w in m['windows']) >= 2


def _onset_motion(video, audio):
  onsets = offsets.onset_events(audio, SR, 25.0)
  return offsets.estimate_offset(offsets.flow_change_trajectory(video), onsets, 6, offsets.ONSET_MOTION_MIN_CONFIDENCE)


def test_undetermined_when_there_is_nothing_to_align():
  clip = sync_clips.bouncing_ball(3000, fps=25.0, sample_rate=SR)
  still = np.repeat(clip.video[:1], len(clip.video), axis=0)
  est = _onset_motion(still, clip.audio)
  assert math.isnan(est.offset_frames) and est.reason == 'no visible motion'
  hiss = np.random.default_rng(0).normal(0, 1e-3, len(clip.audio)).astype(np.float32)
  est = _onset_motion(clip.video, hiss)
  assert math.isnan(est.offset_frames) and est.reason
  # Audio of other clips: almost always undetermined (a determined offset here is a confident wrong number).
  others = [sync_clips.bouncing_ball(3001 + i, fps=25.0, sample_rate=SR) for i in range(8)]
  determined = sum(_onset_motion(o.video, others[(i + 1) % 8].audio).determined
                   for i, o in enumerate(others))
  assert determined <= 1


def _iou(a, b):
  y0, x0, y1, x1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
  inter = max(0, y1 - y0) * max(0, x1 - x0)
  area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
  return inter / (area(a) + area(b) - inter)


def test_talking_head_folder_needs_no_crop_box(tmp_path):
  """Faces found, not given: the mouth region drives the offset and the sync expert; faceless files are skipped."""
  from flax import nnx
  from avdiff.data import synthetic
  from avdiff.eval import scoring
  from avdiff.eval import sync_expert as se_lib
  config = _config()
  d = config.data
  d.resolution = 96
  boxes = {}
  for seed, k in ((5000, 0), (5001, 0), (5002, 2)):
    c = synthetic.talking_clip(seed, d)
    name = f'talk{seed}_{k:+d}.mkv'
    av_io.write_video(str(tmp_path / name), c['video'], shift.shift_audio(c['audio'], k, d.fps, d.sample_rate),
                      d.fps, d.sample_rate, 'pcm')
    boxes[name] = (k, [int(b) for b in c['mouth_box']])
  ball = sync_clips.bouncing_ball(5003, fps=25.0, size=96, sample_rate=SR)
  av_io.write_video(str(tmp_path / 'ball.mkv'), ball.video, ball.audio, 25.0, SR, 'pcm')
  # An untrained expert: this checks that LSE-C / LSE-D run on the found mouth box, not what they are worth.
  expert = scoring.ExpertScorer(se_lib.build_sync_expert(config, nnx.Rngs(0)), config)
  assert not config.eval.crop_box and config.eval.faces == 'auto'
  result = folder_eval.evaluate_folder(str(tmp_path), config, expert)
  assert result['protocol']['face_tracking'] is True
  assert 'no face detected' in result['skipped']['ball.mkv']
  ious = []
  for name, (k, box) in boxes.items():
    m = result['clips'][name]
    assert m['face_found'] and m['offset_method'] == 'mouth_envelope'
    assert m['offset_frames'] == k or math.isnan(m['offset_frames']), (name, m['offset_frames'])
    assert math.isfinite(m['lse_c']) and math.isfinite(m['lse_d']) and m['expert_windows'] == 1
    ious.append(_iou(m['mouth_box'], box))
  assert min(ious) >= 0.4, ious
  assert sum(math.isfinite(result['clips'][n]['offset_frames']) for n in boxes) >= 2
