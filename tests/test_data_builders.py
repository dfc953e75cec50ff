"""TFDS builders: built-in datasets build, read back, keep their ground truth; folder builder on messy files."""

import json
import os

import numpy as np
import pytest

from avdiff import config_lib
from avdiff.data import audio, av_io, builders, synthetic
from configs import tiny


def _config(data_dir, dataset='talking', **data):
  config = tiny.get_config()
  config.data.data_dir = str(data_dir)
  config.data.dataset = dataset
  config.data.num_train, config.data.num_validation, config.data.num_test = 12, 4, 4
  for key, value in data.items():
    config.data[key] = value
  return config


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


@pytest.mark.parametrize('name', synthetic.DATASETS)
def test_builds_and_reads_back(data_dir, name):
  config = _config(data_dir, name)
  d = config.data
  sizes = {'train': d.num_train, 'validation': d.num_validation, 'test': d.num_test}
  for split, size in sizes.items():
    source = builders.load_source(config, split)
    assert len(source) == size
  example = builders.load_source(config, 'validation')[0]
  frames = config_lib.num_frames(d)
  assert example['video'].shape == (frames, d.resolution, d.resolution, 3) and example['video'].dtype == np.uint8
  assert example['audio'].shape == (config_lib.num_samples(d),) and example['audio'].dtype == np.int16
  assert example['audio_mel'].shape == (config_lib.num_mel_frames(d), d.n_mels)
  # The stored example is exactly the generator's clip for its seed.
  seed = int(example['key'])
  assert builders.SPLIT_SEED_OFFSET['validation'] <= seed < builders.SPLIT_SEED_OFFSET['test']
  clip = synthetic.make_clip(name, seed, d)
  np.testing.assert_array_equal(example['video'], clip['video'])
  np.testing.assert_allclose(example['audio'] / 32767.0, clip['audio'], atol=1 / 32767.0)
  np.testing.assert_allclose(example['audio_mel'], audio.log_mel(clip['audio'], d), atol=0.02)
  assert int(example['label']) == clip['label']
  truth = ('mouth_open', 'mouth_box') if name == 'talking' else ('impact',)
  for key in truth:
    np.testing.assert_array_equal(example[key], clip[key])
  # Built-in clips in the default mode carry a caption naming their label, and no attributes.
  label = int(example['label'])
  assert example['caption'].decode() == (f'speaker {label}' if name == 'talking' else
                                         f'{synthetic.MATERIALS[label].name} balls')
  assert 'attributes' not in example and builders.NOVEL_SPLIT not in builders.get_builder(config).info.splits
  assert builders.load_clips(config, 'validation', 1)[0]['caption'] == example['caption'].decode()


def test_splits_are_disjoint(data_dir):
  config = _config(data_dir, 'talking')
  keys = {split: {builders.load_source(config, split)[i]['key'] for i in range(len(builders.load_source(config,
                                                                                                       split)))}
          for split in builders.SPLITS}
  assert not keys['train'] & keys['validation'] and not keys['train'] & keys['test']
  assert not keys['validation'] & keys['test']
  videos = {split: {builders.load_source(config, split)[i]['video'].tobytes() for i in range(4)}
            for split in builders.SPLITS}
  assert not videos['train'] & videos['test']


def test_config_change_never_reads_a_stale_dataset(data_dir):
  base = _config(data_dir, 'talking')
  names = {builders.config_name(base.data, 'talking')}
  for field, value in (('n_mels', 16), ('num_train', 8), ('fps', 5), ('mel_db_floor', -60.0), ('num_speakers', 4),
                       ('attributes', 'independent')):
    changed = _config(data_dir, 'talking', **{field: value})
    names.add(builders.config_name(changed.data, 'talking'))
  assert len(names) == 7
  # num_test_novel makes clips only with independent attributes.
  assert builders.config_name(_config(data_dir, 'talking', num_test_novel=3).data, 'talking') in names
  # Fields that do not change examples (shuffling, batch sizes) keep the name.
  other = _config(data_dir, 'talking', shuffle=False, prefetch=7)
  assert builders.config_name(other.data, 'talking') == builders.config_name(base.data, 'talking')
  # And a changed config really builds its own data.
  small = _config(data_dir, 'talking', n_mels=16, num_train=8)
  assert builders.load_source(small, 'train')[0]['audio_mel'].shape[-1] == 16
  assert len(builders.load_source(small, 'train')) == 8


def _write_media_folder(root):
  """Good files in messy formats plus every kind of broken one; returns {file: expected skip reason or None}."""
  rng = np.random.default_rng(0)

  def clip(name, fps, sample_rate, height, width, channels, seconds, codec, audio_seconds=None, frame_times=None):
    frames = len(frame_times) if frame_times is not None else int(round(seconds * fps))
    video = rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
    wave = 0.1 * rng.standard_normal((int((audio_seconds or seconds) * sample_rate), channels)).astype(np.float32)
    av_io.write_video(str(root / name), video, wave, fps, sample_rate, codec, frame_times=frame_times)

  os.makedirs(root / 'nested', exist_ok=True)
  clip('stereo48k.mp4', 25, 48000, 72, 128, 2, 4.2, 'aac')  # 2 clips.
  clip('surround.mkv', 29.97, 48000, 144, 176, 6, 2.5, 'aac')  # 5.1 AAC, NTSC rate: 1 clip.
  clip('nested/film.mov', 24, 44100, 90, 160, 2, 2.2, 'mp3')  # MP3 at 24 fps, odd-ish size.
  clip('short_audio.mp4', 25, 48000, 64, 64, 2, 6.0, 'aac', audio_seconds=2.3)  # Streams of different lengths.
  vfr_times = np.cumsum(np.full(70, 0.04) + 0.02 * (np.arange(70) % 3 == 0))
  clip('vfr.mkv', 25, 16000, 48, 64, 1, 0, 'pcm', audio_seconds=3.4, frame_times=vfr_times - vfr_times[0])
  clip('mute_track.mkv', 25, 16000, 32, 32, 1, 3.0, 'pcm', audio_seconds=1e-9)  # An audio stream without samples.
  clip('web.webm', 30, 48000, 64, 80, 2, 2.1, 'opus')
  clip('tiny.mp4', 25, 16000, 32, 32, 1, 1.0, 'aac')  # Shorter than one 2 s clip.
  data = (root / 'stereo48k.mp4').read_bytes()
  (root / 'truncated.mp4').write_bytes(data[:len(data) // 3])
  (root / 'notes.mp4').write_text('this is not a video\n')
  (root / 'empty.mkv').write_bytes(b'')
  av_io.write_video(str(root / 'silent.mp4'), np.zeros((50, 32, 32, 3), np.uint8), None, 25, 16000)
  (root / 'readme.txt').write_text('ignored: not a video extension')
  return {'stereo48k.mp4': None, 'surround.mkv': None, 'nested/film.mov': None, 'short_audio.mp4': None,
          'vfr.mkv': None, 'web.webm': None, 'tiny.mp4': 'shorter than one clip', 'truncated.mp4': 'corrupt',
          'notes.mp4': 'corrupt', 'empty.mkv': 'corrupt', 'silent.mp4': 'no audio stream',
          'mute_track.mkv': 'zero-length audio stream'}


def _write_audio_only(path):
  import av  # pylint: disable=g-import-not-at-top
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('aac', rate=16000)
    stream.layout = 'mono'
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 48000), np.float32), format='fltp', layout='mono')
    frame.sample_rate = 16000
    for packet in list(stream.encode(frame)) + list(stream.encode()):
      container.mux(packet)


def _write_sidecars(root):
  """Labels, captions and ground truth for some files, in both sidecar forms; returns {file: metadata}."""
  meta = {'stereo48k.mp4': {'label': 3, 'caption': 'two voices, noise', 'mouth_box': [10, 30, 40, 90],
                            'mouth_open': list(np.linspace(0, 1, 105)), 'speaker_name': 'ann'},
          'nested/film.mov': {'label': 1, 'caption': 'a film'}}
  with open(root / 'metadata.csv', 'w') as f:
    f.write('file,label,caption\n')
    f.write('nested/film.mov,1,a film\n')
    f.write('surround.mkv,2,"surround, 5.1"\n')
  (root / 'stereo48k.mp4.json').write_text(json.dumps(meta['stereo48k.mp4']))
  meta['surround.mkv'] = {'label': 2, 'caption': 'surround, 5.1'}
  (root / 'vfr.json').write_text('{"label": -1}')  # A bad sidecar: the file is skipped with that reason.
  return meta


@pytest.fixture(scope='module')
def folder_dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp('videos')
  expected = _write_media_folder(root)
  _write_audio_only(root / 'podcast.mp4')
  expected['podcast.mp4'] = 'no video stream'
  expected['vfr.mkv'] = 'bad sidecar'
  config = _config(tmp_path_factory.mktemp('folder_tfds'), 'my_clips')
  _write_sidecars(root)
  summary = builders.build_dataset(config, 'my_clips', str(root), validation_fraction=0.25, test_fraction=0.25)
  return config, expected, summary


def test_folder_build_report_counts_every_file(folder_dataset):
  _, expected, summary = folder_dataset
  report = summary['report']
  assert set(report['files']) == set(expected)
  for name, reason in expected.items():
    entry = report['files'][name]
    if reason is None:
      assert entry['status'] == 'used' and entry['clips'] >= 1, (name, entry)
    else:
      assert entry['status'] == 'skipped' and entry['reason'] == reason, (name, entry)
  counts = {}
  for reason in expected.values():
    if reason:
      counts[reason] = counts.get(reason, 0) + 1
  assert report['skipped'] == counts
  assert os.path.exists(report['report_path'])
  with open(report['report_path']) as f:
    assert json.load(f)['skipped'] == counts
  assert report['files']['stereo48k.mp4']['clips'] == 2
  assert report['files']['surround.mkv']['channels'] == 6
  assert report['files']['short_audio.mp4']['clips'] == 1  # Cut to the 2.3 s the audio covers.


def _examples(config):
  """(split, example) of every stored clip of every split."""
  for split in builders.SPLITS:
    source = builders.load_source(config, split)
    for i in range(len(source)):
      yield split, source[i]


def test_folder_splits_by_file_and_reads_back(folder_dataset):
  config, expected, summary = folder_dataset
  d = config.data
  files = {}
  for split in builders.SPLITS:
    assert len(builders.load_source(config, split)) == summary['splits'][split] > 0
  for split, example in _examples(config):
    assert example['video'].shape == (config_lib.num_frames(d), d.resolution, d.resolution, 3)
    assert example['audio_mel'].shape == (config_lib.num_mel_frames(d), d.n_mels)
    assert np.abs(example['audio']).max() > 0  # Noise was written into every good file.
    files.setdefault(split, set()).add(example['key'].decode().rsplit(':', 1)[0])
  assert not files['train'] & files['test'] and not files['train'] & files['validation']
  assert not files['validation'] & files['test']
  assert files['train'] | files['validation'] | files['test'] == {k for k, v in expected.items() if v is None}
  report = summary['report']
  for split in builders.SPLITS:
    assert {f for f, e in report['files'].items() if e.get('split') == split and e['status'] == 'used'} == files[split]
    assert report['split_files'][split] == len(files[split])


def test_split_files_is_seeded_and_fills_every_split():
  files = [f'f{i}.mp4' for i in range(20)]
  a = builders.split_files(files, 0.1, 0.2, seed=0)
  assert a == builders.split_files(files, 0.1, 0.2, seed=0) != builders.split_files(files, 0.1, 0.2, seed=1)
  counts = {s: sum(v == s for v in a.values()) for s in builders.SPLITS}
  assert counts == {'train': 14, 'validation': 2, 'test': 4}
  assert {v for v in builders.split_files(files[:3], 0.0, 0.0, seed=0).values()} == set(builders.SPLITS)
  with pytest.raises(ValueError, match='cannot fill'):
    builders.split_files(files[:2], 0.1, 0.1, seed=0)


def test_folder_sidecars_give_label_caption_and_ground_truth(folder_dataset):
  config, _, summary = folder_dataset
  d = config.data
  seen = {ex['key'].decode(): ex for _, ex in _examples(config)}
  # A JSON sidecar: label, caption, the box mapped into the 32 px frame, mouth_open on the 10 fps clip grid (the
  # 25 fps value at each 100 ms interval's centre, as the frames are read).
  first = seen['stereo48k.mp4:0']
  assert int(first['label']) == 3 and first['caption'].decode() == 'two voices, noise'
  # 72 x 128 source: a centred 72 px square from x = 28, scaled by 32 / 72.
  np.testing.assert_array_equal(first['mouth_box'], [4, 0, 18, 28])
  truth = np.linspace(0, 1, 105).astype(np.float32)
  np.testing.assert_allclose(first['mouth_open'], truth[np.floor((np.arange(20) + 0.5) / d.fps * 25 + 1e-4).astype(int)])
  second = seen['stereo48k.mp4:1']
  np.testing.assert_allclose(second['mouth_open'], truth[np.floor((20.5 + np.arange(20)) / d.fps * 25 + 1e-4)
                                                         .astype(int)])
  assert json.loads(first['extra']) == {'speaker_name': 'ann'}
  # CSV rows; a file without a sidecar gets label 0, no caption and no ground truth.
  assert int(seen['surround.mkv:0']['label']) == 2 and seen['surround.mkv:0']['caption'].decode() == 'surround, 5.1'
  assert int(seen['nested/film.mov:0']['label']) == 1
  assert int(seen['web.webm:0']['label']) == 0 and seen['web.webm:0']['caption'].decode() == ''
  assert np.all(np.isnan(seen['web.webm:0']['mouth_open'])) and seen['web.webm:0']['mouth_box'].tolist() == [-1] * 4
  assert summary['report']['num_classes'] == 4 and builders.num_classes(config) == 4
  assert summary['report']['files']['vfr.mkv']['reason'] == 'bad sidecar'
  assert 'label must be an integer' in summary['report']['files']['vfr.mkv']['detail']
  assert builders.ground_truth_generator(config) is None


def test_label_classes_are_checked_against_the_model(folder_dataset, data_dir):
  config, _, _ = folder_dataset
  config.model.num_classes = 3
  with pytest.raises(config_lib.ConfigError, match='num_classes=4'):
    builders.check_labels(config)
  config.model.num_classes = 8
  builders.check_labels(config)
  talking = _config(data_dir, 'talking', num_speakers=9)
  with pytest.raises(config_lib.ConfigError, match='data.num_speakers'):
    builders.check_labels(talking)


def test_folder_dataset_missing_says_how_to_build(tmp_path):
  config = _config(tmp_path, 'never_built')
  with pytest.raises(FileNotFoundError, match='build_dataset'):
    builders.load_source(config, 'train')


def test_build_dataset_command_line(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.build_dataset', '--name=impacts', '--config=configs/tiny.py',
       f'--config.data.data_dir={tmp_path}', '--config.data.num_train=3', '--config.data.num_validation=2',
       '--config.data.num_test=2'], cwd=root, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'test=2, train=3, validation=2' in result.stdout
  assert os.path.isdir(tmp_path / 'impacts')


def test_folder_dataset_feeds_the_pipeline(folder_dataset):
  from avdiff.data import pipeline  # pylint: disable=g-import-not-at-top
  config, _, summary = folder_dataset
  for split in builders.SPLITS:
    batch = next(pipeline.InputPipeline(config, split, batch_size=1, with_waveform=True))
    assert set(batch) == {'video', 'audio_mel', 'label', 'audio', 'mouth_open', 'mouth_box'}
    assert batch['video'].shape[0] == 1 and 0 <= batch['label'][0] < 4
  assert summary['splits']['train'] >= 1
