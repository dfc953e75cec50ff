"""Train the sync expert contrastively on the train split, then check it recovers known audio shifts.

    python -m experiments.train_sync_expert --config=configs/tiny.py --workdir=runs/tiny/sync_expert

Trains config.eval.sync_expert.steps steps of batch config.eval.sync_expert.batch_size on the train split
(video + audio_mel (+ mouth_box) batches from the input pipeline) with the shared training loop (default) or a
small standalone loop (--loop=standalone), saves params (Orbax) and config.json in the workdir, then shifts
the audio of validation clips by k in -5..5 frames and prints how often the expert recovers k exactly / within one
frame, and LSE-C / LSE-D of true vs shuffled audio. Evaluation finds the expert in W/sync_expert of a training run,
or where config.eval.sync_expert_workdir / `evaluate --sync_expert` points.
"""

import json

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import app
from absl import flags
from ml_collections import config_flags

from avdiff.eval import sync_train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory of the sync expert.', required=True)
_CHECK_CLIPS = flags.DEFINE_integer('check_clips', 32, 'Validation clips for the shift-recovery check.')
_LOOP = flags.DEFINE_enum('loop', 'shared', ['shared', 'standalone'],
                          'shared: avdiff.train.loop.train with SyncExpertTask (resumable; trains on one fixed mouth '
                          'region, eval.crop_box or the union of the training mouth boxes, because the loop sends '
                          'no mouth_box to the device). standalone: a small optax loop on per-clip mouth boxes.')


def main(argv):
  del argv
  config = _CONFIG.value
  if _LOOP.value == 'shared':
    sync_train.train_with_shared_loop(config, _WORKDIR.value)
  else:
    sync_train.train_from_pipeline(config, _WORKDIR.value)
  scorer = sync_train.load_scorer(_WORKDIR.value, config)
  check = sync_train.shift_recovery(scorer, config, split='validation', num_clips=_CHECK_CLIPS.value)
  print(json.dumps({'shift_recovery': check}, indent=2))


if __name__ == '__main__':
  app.run(main)
