"""Writes built-in `talking` clips as ordinary video files with JSON sidecars (label, caption, ground truth), in a
file protocol of their own, to try the folder-dataset path end to end:

    python -m experiments.export_dataset --out=data/talking_files --num=320
    python -m experiments.build_dataset --source=data/talking_files --name=talking_files
    python -m experiments.train --config=configs/tiny.py --config.data.dataset=talking_files --workdir=runs/files

Default protocol: h264 + AAC mp4, 25 fps, 44.1 kHz stereo, 96 x 96 (the training config reads 10 fps, 16 kHz mono,
32 x 32, so the build resamples everything). Speakers follow the config's data.num_speakers.
"""

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from ml_collections import config_flags

from avdiff.data import export

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config (its data section: speakers, clip '
                                          'length).')
_OUT = flags.DEFINE_string('out', None, 'Folder to write the files to.', required=True)
_NUM = flags.DEFINE_integer('num', 320, 'Files to write.')
_SECONDS = flags.DEFINE_float('seconds', 0.0, 'Length of each file (default: data.clip_seconds).')
_FPS = flags.DEFINE_float('fps', 25.0, 'Frame rate of the files, Hz.')
_SAMPLE_RATE = flags.DEFINE_integer('sample_rate', 44100, 'Sample rate of the files, Hz.')
_CHANNELS = flags.DEFINE_integer('channels', 2, 'Audio channels of the files.')
_SIZE = flags.DEFINE_integer('size', 96, 'Frame size of the files (square), pixels.')


def main(argv):
  del argv
  protocol = export.FileProtocol(fps=_FPS.value, sample_rate=_SAMPLE_RATE.value, channels=_CHANNELS.value,
                                 size=_SIZE.value)
  names = export.export_talking(_OUT.value, _CONFIG.value.data, _NUM.value, _SECONDS.value, (protocol,))
  console.say(f'Wrote {len(names)} files with sidecars to {_OUT.value}')


if __name__ == '__main__':
  console.run(main)
