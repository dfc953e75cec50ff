"""Train the sync expert contrastively on the train split, then check it recovers known audio shifts.

    python -m experiments.train_sync_expert --config=configs/tiny.py --workdir=runs/tiny/sync_expert

Trains config.eval.sync_expert.steps steps of batch config.eval.sync_expert.batch_size on the train split
(video + audio_mel + mouth_box batches from the input pipeline), saves params (Orbax) and config.json in the
workdir, then shifts the audio of validation clips by k in -K..K frames and prints how often the expert recovers
k exactly / within one frame. Point config.eval.sync_expert_workdir (or `evaluate --sync_expert`) at the workdir.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from avdiff.eval import sync_train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory of the sync expert.', required=True)
_CHECK_CLIPS = flags.DEFINE_integer('check_clips', 32, 'Validation clips for the shift-recovery check.')


def main(argv):
  del argv
  config = _CONFIG.value
  model, history = sync_train.train_from_pipeline(config, _WORKDIR.value)
  check = sync_train.shift_recovery(model, config, split='validation', num_clips=_CHECK_CLIPS.value)
  print(json.dumps({'final': history[-1] if history else {}, 'shift_recovery': check}, indent=2))


if __name__ == '__main__':
  app.run(main)
