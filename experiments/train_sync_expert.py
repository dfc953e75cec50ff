"""Train the sync expert contrastively on the train split, then check it recovers known audio shifts.

    python -m experiments.train_sync_expert --config=configs/tiny.py --workdir=runs/tiny/sync_expert

Trains config.eval.sync_expert.steps steps of batch config.eval.sync_expert.batch_size on the train split
(video + audio_mel + each clip's mouth_box where the data has one) with the training loop, the same as
`experiments.train --task=sync_expert` (checkpoints and config.json in the workdir; rerunning resumes), then shifts
the audio of validation clips by k in -5..5 frames and prints how often the expert recovers k exactly / within one
frame, and LSE-C / LSE-D of true vs shuffled audio. Evaluation finds the expert in W/sync_expert of a training run,
or where config.eval.sync_expert_workdir / `evaluate --sync_expert` points.
"""

import json

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from ml_collections import config_flags

from avdiff.train.tasks import sync_expert

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory of the sync expert.', required=True)
_CHECK_CLIPS = flags.DEFINE_integer('check_clips', 32, 'Validation clips for the shift-recovery check.')


def main(argv):
  del argv
  result = sync_expert.train_and_check(_CONFIG.value, _WORKDIR.value, _CHECK_CLIPS.value)
  print(json.dumps({'shift_recovery': result['shift_recovery']}, indent=2))


if __name__ == '__main__':
  console.run(main)
