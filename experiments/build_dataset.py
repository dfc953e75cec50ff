r"""Builds a TFDS dataset: a folder of videos with audio, or a built-in procedural dataset.

Folder of mp4 / mov / mkv / webm / m4v / avi files -> fixed-length clips at the config's fps, sample rate and
resolution, split into train / validation / test by file (seeded; a file is in one split only), with each file's
label, caption and ground truth from its sidecar (metadata.csv or <file>.json, see avdiff.data.sidecar); unusable
files are skipped and counted in the build report:

    python -m experiments.build_dataset --source=/path/to/videos --name=my_clips --config=configs/tiny.py

Train on it with `--config.data.dataset=my_clips` (and the same data fields). Without --source the built-in
dataset named by --name (or config.data.dataset) is generated:

    python -m experiments.build_dataset --name=impacts --config=configs/tiny.py
"""

from __future__ import annotations

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from absl import logging
from ml_collections import config_flags

from avdiff.data import builders

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file (its `data` section is used).')
_SOURCE = flags.DEFINE_string('source', '', 'Folder of video files (searched recursively); empty: built-in data.')
_NAME = flags.DEFINE_string('name', '', 'Dataset name (default: config.data.dataset).')
_VALIDATION_FRACTION = flags.DEFINE_float('validation_fraction', 0.1, 'Fraction of usable files in the validation '
                                          'split (in-loop evaluation; at least one file).')
_TEST_FRACTION = flags.DEFINE_float('test_fraction', 0.1, 'Fraction of usable files held out as the test split (the '
                                    'final evaluation; at least one file).')
_MAX_CLIPS = flags.DEFINE_integer('max_clips_per_file', 0, 'Cap on clips cut from one file (0: all).')
_SPLIT_SEED = flags.DEFINE_integer('split_seed', 0, 'Seed of the file-level split assignment.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Rebuild even if a dataset with this name and config exists.')


def main(argv):
  del argv
  config = _CONFIG.value
  name = _NAME.value or config.data.dataset
  summary = builders.build_dataset(config, name, _SOURCE.value, _VALIDATION_FRACTION.value, _TEST_FRACTION.value,
                                   _MAX_CLIPS.value, _SPLIT_SEED.value, _OVERWRITE.value)
  logging.info('Built %s at %s', name, summary['path'])
  print(f'dataset {name}: {summary["path"]}')
  print('examples per split: ' + ', '.join(f'{k}={v}' for k, v in sorted(summary['splits'].items())))
  report = summary['report']
  if report:
    print(f'files: {report["num_files"]} found, {report["num_used"]} used; report: {report["report_path"]}')
    print('files per split: ' + ', '.join(f'{k}={v}' for k, v in sorted(report['split_files'].items())) +
          f' (seed {report["split_seed"]}; no file is in two splits); label classes: {report["num_classes"]}')
    for reason, count in sorted(report['skipped'].items()):
      print(f'  skipped {count}: {reason}')


if __name__ == '__main__':
  console.run(main)
