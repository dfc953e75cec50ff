"""TFDS builders (array_record) for the built-in `talking` / `impacts` data and folders of real videos.

Every field of `config.data` that changes the stored examples (sizes, clock, mel settings, clip counts, class
counts) is hashed into the BuilderConfig name, so a changed config never reads a stale dataset:

    <data_dir>/talking/32px_10fps_2s_<hash>/1.0.0/...
    <data_dir>/av_folder/<name>_32px_10fps_2s_<hash>/1.0.0/...

Built-in splits come from disjoint seed ranges (train: 0.., validation: 1e6.., test: 2e6..); with
data.attributes='independent' a built-in dataset has a 4th split, `test_novel` (3e6..: `synthetic.NOVEL_SEEDS`),
whose clips have only the attribute pairs held out of the other three (`talking`: the (colour, pitch) pairs of
`synthetic.HELD_OUT_PAIRS`; `impacts`: the (material, balls) pairs of `synthetic.IMPACTS_HELD_OUT_PAIRS`). A folder
dataset is
split by file (never clips of one file on both sides) and its build writes `build_report.json` (every file, its
split, clips, or the reason it was skipped) next to the dataset.

Stored features (one clip): `video` uint8 [T, H, W, 3]; `audio` int16 [S] (PCM; the pipeline returns float32);
`audio_mel` float32 [T_a, n_mels] (normalized log-mel, `audio.log_mel`); `label` int32; `key` text (seed or
file:clip); `caption` text; ground truth `mouth_open` float32 [T], `mouth_box` int32 [4] (talking), `attributes`
(attributes='independent': value indices, talking int32 [5] in `synthetic.TALKING_ATTRIBUTES` order, impacts int32
[3] in `synthetic.IMPACTS_ATTRIBUTES` order), `impact` float32 [T] (impacts); `start_seconds` float32 (folder: clip
start within its file).

Captions of built-in clips: independent mode -- the clip's own (`avdiff.data.captions`); `talking` speaker --
'speaker <label>'; `impacts` speaker -- '<material> balls' (these two name the label and nothing else).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from typing import Any, Optional

import av
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from avdiff import config_lib
from avdiff import console
from avdiff.data import audio as audio_lib
from avdiff.data import av_io
from avdiff.data import sidecar
from avdiff.data import synthetic

SPLITS = ('train', 'validation', 'test')  # Every dataset's splits; attributes='independent' adds NOVEL_SPLIT.
NOVEL_SPLIT = 'test_novel'
SPLIT_SEED_OFFSET = {'train': 0, 'validation': 1_000_000, 'test': 2_000_000, NOVEL_SPLIT: synthetic.NOVEL_SEEDS.start}
# Bump when a generator or a stored feature changes meaning; it is part of every dataset's config hash.
# 4: built-in clips store `caption`, and `talking` (attributes='independent') `attributes`.
FORMAT_VERSION = 4
# Bump when the stored features of folder datasets change (2: validation split, sidecar label/caption/ground truth;
# 3: a lower frame rate shows the frame at each interval's centre, and so does the mapped ground truth).
FOLDER_FORMAT_VERSION = 3

_CLOCK_FIELDS = ('resolution', 'fps', 'clip_seconds', 'sample_rate', 'mel_frames_per_video_frame', 'n_fft', 'n_mels',
                 'fmin', 'fmax', 'mel_db_floor')
_SYNTHETIC_FIELDS = {'talking': ('num_speakers',), 'impacts': ('num_materials',)}
_COUNT_FIELDS = ('num_train', 'num_validation', 'num_test')


def data_dir(data_cfg: ml_collections.ConfigDict) -> str:
  """data_cfg.data_dir, else $AVDIFF_DATA_DIR, else ./data/tfds."""
  return data_cfg.data_dir or os.environ.get('AVDIFF_DATA_DIR', '') or os.path.join('data', 'tfds')


def fingerprint(fields: dict) -> str:
  """10 hex digits of the SHA-1 of the fields as sorted JSON (config names of datasets and caches)."""
  return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def _clip_prefix(data_cfg) -> str:
  seconds = f'{data_cfg.clip_seconds:g}'.replace('.', 'p')
  fps = f'{data_cfg.fps:g}'.replace('.', 'p')
  return f'{data_cfg.resolution}px_{fps}fps_{seconds}s'


def dataset_fields(data_cfg: ml_collections.ConfigDict, name: str) -> dict:
  """The config fields that determine the stored examples of dataset `name`."""
  fields = {f: data_cfg[f] for f in _CLOCK_FIELDS}
  if name in synthetic.DATASETS:
    fields.update({f: data_cfg[f] for f in _SYNTHETIC_FIELDS[name] + _COUNT_FIELDS})
    # A config saved before data.attributes existed reads as 'speaker'. `impacts` hashes the field only in the
    # independent mode, which is newer than its stored datasets: their names (and stored clips) stay as they were.
    mode = synthetic.attribute_mode(data_cfg)
    if name == 'talking' or mode == 'independent':
      fields['attributes'] = mode
    if mode == 'independent':
      fields['num_test_novel'] = data_cfg.num_test_novel
  fields.update(dataset=name, format_version=FORMAT_VERSION)
  if name not in synthetic.DATASETS:
    fields['folder_format'] = FOLDER_FORMAT_VERSION
  return {k: (float(v) if isinstance(v, float) else v) for k, v in fields.items()}


def config_name(data_cfg: ml_collections.ConfigDict, name: str) -> str:
  """BuilderConfig name: readable sizes + a hash of every field that changes the examples."""
  prefix = _clip_prefix(data_cfg)
  if name not in synthetic.DATASETS:
    prefix = f'{name}_{prefix}'
  return f'{prefix}_{fingerprint(dataset_fields(data_cfg, name))}'


def _features(data_cfg, extra: dict) -> tfds.features.FeaturesDict:
  frames, size = config_lib.num_frames(data_cfg), int(data_cfg.resolution)
  # Raw bytes: TFDS would otherwise store (and parse) every pixel and sample as its own int64 proto value.
  raw = tfds.features.Encoding.BYTES
  features = {
      'video': tfds.features.Tensor(shape=(frames, size, size, 3), dtype=np.uint8, encoding=raw),
      'audio': tfds.features.Tensor(shape=(config_lib.num_samples(data_cfg),), dtype=np.int16, encoding=raw),
      'audio_mel': tfds.features.Tensor(shape=(config_lib.num_mel_frames(data_cfg), int(data_cfg.n_mels)),
                                        dtype=np.float32, encoding=raw),
      'label': tfds.features.Scalar(dtype=np.int32),
      'key': tfds.features.Text(),
  }
  features.update(extra)
  return tfds.features.FeaturesDict(features)


def _to_pcm16(wave: np.ndarray) -> np.ndarray:
  return np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)


def _example(video, wave, label, key, data_cfg, **extra) -> dict:
  """Stored form of one clip; the mel is computed from the stored (16-bit) waveform."""
  pcm = _to_pcm16(wave)
  mel = audio_lib.log_mel(pcm.astype(np.float32) / 32767.0, data_cfg)
  return dict(video=video, audio=pcm, audio_mel=mel, label=np.int32(label), key=key, **extra)


# ----------------------------------------------------------------------------- built-in datasets


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """BuilderConfig carrying the data config fields (a plain dict) it was hashed from."""
  fields: dict = dataclasses.field(default_factory=dict)


class LocalBuilder(tfds.core.GeneratorBasedBuilder):
  """A builder that downloads nothing and ships no checksums or metadata files beside its code."""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):  # pylint: disable=invalid-name
    # TFDS looks for checksum files next to the builder's module (through `importlib_resources`, not a
    # dependency here); local builders have none.
    return None


class _SyntheticBuilder(LocalBuilder):
  """Clips from `synthetic.make_clip(<dataset>, seed, data_cfg)`; splits from disjoint seed ranges."""
  VERSION = tfds.core.Version('1.0.0')
  _DATASET = ''

  def __init__(self, *, data_cfg: Optional[ml_collections.ConfigDict] = None,
               config: Optional[SyntheticConfig] = None, **kwargs):
    # Unpickling (grain worker processes) calls __init__ again with the BuilderConfig only.
    if config is None:
      fields = dataset_fields(data_cfg, self._DATASET)
      config = SyntheticConfig(name=config_name(data_cfg, self._DATASET), fields=fields,
                               description=json.dumps(fields, sort_keys=True))
    self._data_cfg = ml_collections.ConfigDict(config.fields)
    super().__init__(config=config, file_format='array_record', **kwargs)

  def _independent(self) -> bool:
    return synthetic.attribute_mode(self._data_cfg) == 'independent'

  def _ground_truth_features(self) -> dict:
    frames = config_lib.num_frames(self._data_cfg)
    out = {'caption': tfds.features.Text()}
    if self._DATASET == 'talking':
      out.update(mouth_open=tfds.features.Tensor(shape=(frames,), dtype=np.float32),
                 mouth_box=tfds.features.Tensor(shape=(4,), dtype=np.int32))
    else:
      out['impact'] = tfds.features.Tensor(shape=(frames,), dtype=np.float32)
    if self._independent():
      table = synthetic.TALKING_ATTRIBUTES if self._DATASET == 'talking' else synthetic.IMPACTS_ATTRIBUTES
      out['attributes'] = tfds.features.Tensor(shape=(len(table),), dtype=np.int32)
    return out

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, description=f'Procedural {self._DATASET} clips with exact synchrony ground truth.',
        features=_features(self._data_cfg, self._ground_truth_features()),
        metadata=tfds.core.MetadataDict(fields=self.builder_config.fields,
                                        num_classes=synthetic.num_classes(self._DATASET, self._data_cfg)))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    counts = {'train': self._data_cfg.num_train, 'validation': self._data_cfg.num_validation,
              'test': self._data_cfg.num_test}
    if self._independent():
      synthetic.check_clip_fits(self._data_cfg, self._DATASET)
      counts[NOVEL_SPLIT] = self._data_cfg.num_test_novel
    for split, n in counts.items():
      # A split's seeds must not run into the next split's range (nor, for the others, into NOVEL_SEEDS).
      room = min([v for v in SPLIT_SEED_OFFSET.values() if v > SPLIT_SEED_OFFSET[split]] + [
          synthetic.NOVEL_SEEDS.stop]) - SPLIT_SEED_OFFSET[split]
      if int(n) > room:
        raise config_lib.ConfigError(f'data.num_{split}={int(n)} is more clips than the split\'s seed range holds '
                                     f'({room})')
    return {split: self._generate_examples(SPLIT_SEED_OFFSET[split], int(n)) for split, n in counts.items()}

  def _generate_examples(self, first_seed: int, count: int):
    for seed in range(first_seed, first_seed + count):
      clip = synthetic.make_clip(self._DATASET, seed, self._data_cfg)
      truth = {k: clip[k] for k in ('mouth_open', 'mouth_box', 'impact', 'attributes') if k in clip}
      yield seed, _example(clip['video'], clip['audio'], clip['label'], str(seed), self._data_cfg,
                           caption=_caption(self._DATASET, clip), **truth)


def _caption(name: str, clip: dict) -> str:
  """A built-in clip's caption: its own where the generator wrote one, else one naming its label."""
  if 'caption' in clip:
    return clip['caption']
  label = int(clip['label'])
  return f'speaker {label}' if name == 'talking' else f'{synthetic.MATERIALS[label].name} balls'


class Talking(_SyntheticBuilder):
  """`talking`: drawn faces whose mouth opening follows speech-like audio; label = speaker."""
  _DATASET = 'talking'


class Impacts(_SyntheticBuilder):
  """`impacts`: dropped balls with a percussive sound at each contact frame; label = material (independent mode:
  also number of balls and rhythm as `attributes`)."""
  _DATASET = 'impacts'


# ----------------------------------------------------------------------------- folder of videos


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  source: str = ''
  validation_fraction: float = 0.1
  test_fraction: float = 0.1
  max_clips_per_file: int = 0  # 0 = every whole clip of a file.
  split_seed: int = 0
  fields: dict = dataclasses.field(default_factory=dict)


def split_files(files: list[str], validation_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
  """{file: 'train' | 'validation' | 'test'}: a seeded permutation of the files cut by the fractions (rounded, at
  least one file per split), so no source file is in two splits. Needs at least 3 files."""
  if len(files) < len(SPLITS):
    raise ValueError(f'{len(files)} usable files cannot fill the {len(SPLITS)} splits {SPLITS}')
  order = np.random.default_rng(seed).permutation(len(files))
  num_val = max(1, int(round(validation_fraction * len(files))))
  num_test = max(1, int(round(test_fraction * len(files))))
  num_val = min(num_val, len(files) - 2)
  num_test = min(num_test, len(files) - 1 - num_val)
  split_of = {}
  for rank, i in enumerate(order):
    split_of[files[i]] = 'test' if rank < num_test else 'validation' if rank < num_test + num_val else 'train'
  return split_of


def _probe(path: str, min_seconds: float) -> Optional[str]:
  """Cheap container-level check; returns a skip reason or None (full decoding may still fail later)."""
  try:
    with av.open(path) as container:
      if not container.streams.video:
        return 'no video stream'
      if not container.streams.audio:
        return 'no audio stream'
      durations = []
      for stream in (container.streams.video[0], container.streams.audio[0]):
        if stream.duration is not None and stream.time_base is not None:
          durations.append(float(stream.duration * stream.time_base))
      if not durations and container.duration is not None:
        durations.append(container.duration / 1e6)
      if durations and min(durations) <= 0:
        return 'zero-length stream'
      if durations and min(durations) < min_seconds - 1e-3:
        return 'shorter than one clip'
  except Exception as e:  # pylint: disable=broad-except  # Any container failure means an unusable file.
    del e
    return 'corrupt'
  return None


def list_videos(folder: str) -> list[str]:
  """Paths (relative to `folder`, searched recursively, sorted) of the files with a video extension."""
  return sorted(os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files
                if os.path.splitext(f)[1].lower() in av_io.VIDEO_EXTENSIONS)


class AvFolder(LocalBuilder):
  """Fixed-length clips cut from a folder of video files with audio (`experiments.build_dataset`), with the
  label, caption and ground truth of each file's sidecar (`avdiff.data.sidecar`)."""
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, data_cfg: Optional[ml_collections.ConfigDict] = None, name: str = '', source: str = '',
               validation_fraction: float = 0.1, test_fraction: float = 0.1, max_clips_per_file: int = 0,
               split_seed: int = 0, config: Optional[FolderConfig] = None, **kwargs):
    if config is None:
      fields = dataset_fields(data_cfg, name)
      config = FolderConfig(name=config_name(data_cfg, name), source=os.path.abspath(source) if source else '',
                            validation_fraction=validation_fraction, test_fraction=test_fraction,
                            max_clips_per_file=max_clips_per_file, split_seed=split_seed, fields=fields,
                            description=json.dumps(fields, sort_keys=True))
    self._data_cfg = ml_collections.ConfigDict(config.fields)
    self.report: dict[str, Any] = {}
    self._meta: dict[str, dict] = {}
    super().__init__(config=config, file_format='array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    frames = config_lib.num_frames(self._data_cfg)
    extra = {'start_seconds': tfds.features.Scalar(dtype=np.float32), 'caption': tfds.features.Text(),
             'mouth_open': tfds.features.Tensor(shape=(frames,), dtype=np.float32),
             'mouth_box': tfds.features.Tensor(shape=(4,), dtype=np.int32), 'extra': tfds.features.Text()}
    return tfds.core.DatasetInfo(
        builder=self, description='Clips cut from a folder of videos with audio.',
        features=_features(self._data_cfg, extra), metadata=tfds.core.MetadataDict(fields=self.builder_config.fields))

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    if not cfg.source or not os.path.isdir(cfg.source):
      raise FileNotFoundError(f'Folder dataset {cfg.name!r} is not built and its source folder {cfg.source!r} does '
                              'not exist; build it with `python -m experiments.build_dataset --source=DIR --name=...`')
    self.report = {'source': cfg.source, 'dataset': cfg.name, 'files': {}, 'skipped': {}, 'clips': {},
                   'split_files': {}, 'split_seed': cfg.split_seed}
    csv_rows = sidecar.read_csv(cfg.source)
    good = []
    for rel in list_videos(cfg.source):
      try:
        self._meta[rel] = sidecar.read(cfg.source, rel, csv_rows)
      except sidecar.SidecarError as e:
        self._record(rel, reason='bad sidecar', detail=str(e)[:200])
        continue
      reason = _probe(os.path.join(cfg.source, rel), float(self._data_cfg.clip_seconds))
      if reason:
        self._record(rel, reason=reason)
      else:
        good.append(rel)
    if len(good) < len(SPLITS):
      self._write_report()
      raise console.UserError(f'{cfg.source}: need at least {len(SPLITS)} usable video files (one per split: '
                       f'{", ".join(SPLITS)}), found {len(good)}; see {self._report_path()}')
    labels = [self._meta[f].get('label', 0) for f in good]
    self.report['num_classes'] = int(max(labels)) + 1
    # The generator whose readers evaluation may use: only when every usable file's sidecar names the same one.
    generators = {str(self._meta[f].get('generator', '')) for f in good}
    self.report['generator'] = generators.pop() if len(generators) == 1 and '' not in generators else None
    split_of = split_files(good, cfg.validation_fraction, cfg.test_fraction, cfg.split_seed)
    return {split: self._generate_examples(sorted(f for f in good if split_of[f] == split), split)
            for split in SPLITS}

  def _record(self, rel: str, *, reason: Optional[str] = None, **fields):
    entry = {'status': 'skipped' if reason else 'used', **fields}
    if reason:
      entry['reason'] = reason
      self.report['skipped'][reason] = self.report['skipped'].get(reason, 0) + 1
    self.report['files'][rel] = entry

  def _generate_examples(self, files: list[str], split: str):
    d = self._data_cfg
    clip_frames, clip_samples = config_lib.num_frames(d), config_lib.num_samples(d)
    limit = self.builder_config.max_clips_per_file
    self.report['split_files'][split] = 0
    for rel in files:
      try:
        video, wave, info = av_io.read_video(os.path.join(self.builder_config.source, rel), fps=d.fps,
                                             sample_rate=d.sample_rate, size=d.resolution,
                                             max_seconds=limit * d.clip_seconds if limit else None)
      except av_io.UnusableClipError as e:
        self._record(rel, reason=e.reason, split=split, detail=e.detail[:200])
        continue
      count = video.shape[0] // clip_frames
      count = min(count, limit) if limit else count
      if count == 0:
        self._record(rel, reason='shorter than one clip', split=split, seconds=info['duration'])
        continue
      meta = self._meta.get(rel, {})
      box = np.asarray(sidecar.clip_mouth_box(meta, info['source_height'], info['source_width'], d.resolution),
                       np.int32)
      for k in range(count):
        frames = video[k * clip_frames:(k + 1) * clip_frames]
        samples = wave[k * clip_samples:(k + 1) * clip_samples]
        key = f'{rel}:{k}'
        yield key, _example(frames, samples, meta.get('label', 0), key, d,
                            start_seconds=np.float32(k * clip_frames / d.fps), caption=meta.get('caption', ''),
                            mouth_open=sidecar.clip_mouth_open(meta, info['source_fps'], k * clip_frames,
                                                               clip_frames, d.fps),
                            mouth_box=box, extra=sidecar.extra(meta))
      self.report['clips'][split] = self.report['clips'].get(split, 0) + count
      self.report['split_files'][split] += 1
      self._record(rel, split=split, clips=count, label=int(meta.get('label', 0)), **{k: info[k] for k in (
          'source_fps', 'source_width', 'source_height', 'source_sample_rate', 'channels', 'video_codec',
          'audio_codec', 'video_seconds', 'audio_seconds')})

  def _report_path(self) -> str:
    return os.path.join(os.path.dirname(str(self.data_path)), 'build_report.json')

  def _write_report(self) -> str:
    path = self._report_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self.report['num_files'] = len(self.report['files'])
    self.report['num_used'] = sum(e['status'] == 'used' for e in self.report['files'].values())
    with open(path, 'w') as f:
      json.dump(self.report, f, indent=2, sort_keys=True)
    return path

  def build(self, overwrite: bool = False) -> str:
    """Builds the dataset (again, with `overwrite`); returns the path of the build report JSON."""
    if self.is_prepared() and not overwrite and os.path.exists(self._report_path()):
      return self._report_path()
    modes = tfds.download.GenerateMode
    mode = modes.FORCE_REDOWNLOAD if overwrite else modes.REUSE_CACHE_IF_EXISTS
    tfds.disable_progress_bar()
    self.download_and_prepare(download_config=tfds.download.DownloadConfig(download_mode=mode))
    return self._write_report()


# ----------------------------------------------------------------------------- loading

_SYNTHETIC_BUILDERS = {'talking': Talking, 'impacts': Impacts}


def get_builder(config: ml_collections.ConfigDict, **folder_kwargs) -> tfds.core.GeneratorBasedBuilder:
  """Builder of config.data.dataset: a built-in one, or a folder dataset of that name."""
  d = config.data if 'data' in config else config
  kwargs = dict(data_cfg=d, data_dir=data_dir(d))
  if d.dataset in _SYNTHETIC_BUILDERS:
    return _SYNTHETIC_BUILDERS[d.dataset](**kwargs)
  return AvFolder(name=d.dataset, **kwargs, **folder_kwargs)


def prepare(config: ml_collections.ConfigDict) -> tfds.core.GeneratorBasedBuilder:
  """The prepared builder of config.data.dataset; built-in datasets are generated here on first use.

  With several JAX processes, process 0 builds first while the others wait at a barrier; a process that still
  finds no dataset afterwards (no shared filesystem) builds its own identical copy.
  """
  tfds.disable_progress_bar()
  builder = get_builder(config)
  if jax.process_count() > 1:
    if jax.process_index() == 0 and not builder.is_prepared():
      _build_missing(config, builder)
    multihost_utils.sync_global_devices(f'avdiff.data.prepare:{builder.builder_config.name}')
    builder = get_builder(config)
  if not builder.is_prepared():
    _build_missing(config, builder)
  return builder


def _build_missing(config, builder) -> None:
  if isinstance(builder, AvFolder):
    raise FileNotFoundError(
        f'Folder dataset {config.data.dataset!r} ({builder.builder_config.name}) is not built in '
        f'{data_dir(config.data)}; run `python -m experiments.build_dataset --source=DIR '
        f'--name={config.data.dataset}` with the same data config.')
  logging.info('Building %s in %s', builder.builder_config.name, builder.data_dir)
  builder.download_and_prepare()


def build_dataset(config: ml_collections.ConfigDict, name: str, source: str = '', validation_fraction: float = 0.1,
                  test_fraction: float = 0.1, max_clips_per_file: int = 0, split_seed: int = 0,
                  overwrite: bool = False) -> dict:
  """Builds dataset `name` (a folder of videos `source`, or the built-in dataset of that name when source is
  empty); returns a summary (data path, examples per split, build report for folders)."""
  config.data.dataset = name
  if not source:
    if name not in synthetic.DATASETS:
      raise config_lib.ConfigError(f'{name!r} is not a built-in dataset ({synthetic.DATASETS}); give a folder of '
                                   'videos as source (--source=DIR)')
    builder = prepare(config)
    report = None
  else:
    builder = get_builder(config, source=source, validation_fraction=validation_fraction,
                          test_fraction=test_fraction, max_clips_per_file=max_clips_per_file, split_seed=split_seed)
    report_path = builder.build(overwrite=overwrite)
    with open(report_path) as f:
      report = json.load(f)
    report['report_path'] = report_path
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  empty = [k for k in SPLITS if not splits.get(k)]
  if empty:
    raise console.UserError(f'Dataset {name!r} has no clips in split(s) {", ".join(empty)} (files failed to decode or were '
                     f'too short); add usable files or change the split fractions. Examples per split: {splits}')
  return {'dataset': name, 'path': str(builder.data_path), 'splits': splits, 'report': report}


def load_source(config: ml_collections.ConfigDict, split: str):
  """Random-access source of one split (tfds ArrayRecord data source; examples are dicts of numpy arrays)."""
  builder = prepare(config)
  if split not in builder.info.splits:
    raise console.UserError(f'Dataset {config.data.dataset!r} has no split {split!r}; it has {list(builder.info.splits)}')
  return builder.as_data_source(split=split)


# One clip on the host, as datasets, samplers and evaluators pass it around (a plain dict):
#   'video'       uint8 [T, H, W, 3]         frames at data.fps
#   'audio'       float32 [S] in [-1, 1]     waveform at data.sample_rate
# and, where the clip has them:
#   'label'       int                        class / speaker id (joint sampling reads only this)
#   'mouth_box'   int [4]                    the mouth's box in the frame (ground truth or face tracking)
#   'mouth_open'  float32 [T]                ground-truth mouth opening per frame (talking data)
#   'caption'     str                        text describing the clip
#   'attributes'  int32 [5] | [3]            value indices in synthetic.TALKING_ATTRIBUTES (talking) or
#                                            IMPACTS_ATTRIBUTES (impacts) order (attributes='independent')
#   'audio_mel'   float32 [T_a, n_mels]      normalized log-mel of `audio` (stored datasets)
# A synthetic clip may carry its generator's other ground truth (e.g. 'impact' float32 [T]).
Clip = dict


def load_clips(config: ml_collections.ConfigDict, split: str, num: int) -> list[Clip]:
  """The first `num` clips of a dataset split (`Clip`): video, audio, label, and mouth_box / mouth_open / caption /
  attributes / audio_mel where the clip has them."""
  source = load_source(config, split)
  clips = []
  for i in range(min(num, len(source))):
    rec = source[i]
    audio = np.asarray(rec['audio'])
    # Stored as 16-bit PCM (wave * 32767, avdiff.data.builders); floats pass through.
    audio = audio.astype(np.float32) / 32767.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    clip = {'video': np.asarray(rec['video']), 'audio': audio, 'label': int(rec['label'])}
    if 'attributes' in rec:
      clip['attributes'] = np.asarray(rec['attributes'], np.int32)
    # Ground truth where the dataset has it; a folder clip without it stores NaN / NO_BOX, which are left out.
    if 'mouth_box' in rec and sidecar.has_box(np.asarray(rec['mouth_box'])):
      clip['mouth_box'] = np.asarray(rec['mouth_box'])
    if 'mouth_open' in rec and np.all(np.isfinite(rec['mouth_open'])):
      clip['mouth_open'] = np.asarray(rec['mouth_open'])
    if rec.get('caption'):
      clip['caption'] = rec['caption'].decode() if isinstance(rec['caption'], bytes) else str(rec['caption'])
    if 'audio_mel' in rec:
      clip['audio_mel'] = np.asarray(rec['audio_mel'], np.float32)
    clips.append(clip)
  return clips


def num_examples(config: ml_collections.ConfigDict, split: str) -> int:
  return prepare(config).info.splits[split].num_examples


def folder_report(config: ml_collections.ConfigDict) -> Optional[dict]:
  """The build report of a folder dataset, or None for built-in datasets."""
  builder = get_builder(config)
  if not isinstance(builder, AvFolder):
    return None
  with open(builder._report_path()) as f:  # pylint: disable=protected-access
    return json.load(f)


def num_classes(config: ml_collections.ConfigDict) -> int:
  """Label classes of config.data.dataset: a built-in dataset's from its config, a folder's (largest sidecar label
  + 1) from its build report."""
  if config.data.dataset in synthetic.DATASETS:
    return synthetic.num_classes(config.data.dataset, config.data)
  report = folder_report(config) if get_builder(config).is_prepared() else None
  return int(report.get('num_classes', 1)) if report else 1


def check_labels(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when the dataset has more label classes than model.num_classes: label num_classes is the
  classifier-free-guidance null class, and a larger one would be read out of the embedding table's range."""
  classes = num_classes(config)
  if classes > config.model.num_classes:
    if config.data.dataset == 'talking':
      what = ('data.attributes=\'independent\': colour x shape x pitch'
              if synthetic.attribute_mode(config.data) == 'independent' else 'data.num_speakers')
    else:
      what = ('data.num_materials' if config.data.dataset == 'impacts'
              else f'the labels of folder dataset {config.data.dataset!r}')
    raise config_lib.ConfigError(
        f'model.num_classes={config.model.num_classes} is smaller than the dataset\'s {classes} label classes '
        f'({what}): label {config.model.num_classes} would act as the guidance null class. Set '
        f'--config.model.num_classes={classes}.')


def ground_truth_generator(config: ml_collections.ConfigDict) -> Optional[str]:
  """The procedural generator whose ground truth and readers apply to config.data.dataset: the built-in dataset's
  name, or for a folder dataset the `generator` every file's sidecar names (one exported from `talking`); None for
  real videos."""
  if config.data.dataset in synthetic.DATASETS:
    return config.data.dataset
  return (folder_report(config) or {}).get('generator')
