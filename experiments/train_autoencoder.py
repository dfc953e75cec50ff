"""Stage 1 by hand: trains the latent autoencoder of config.model.encoder with the shared loop, then measures its
reconstruction on held-out clips and writes `ae_eval.json`, `ae_reconstruction.png` and the completion marker
`stage1.json` in the workdir. Not needed before a latent run: `experiments.train` finds or trains the config's
autoencoder itself (avdiff.train.stage1). Use this to train one into a directory of your choice:

    python -m experiments.train_autoencoder --config=configs/tiny.py --workdir=runs/ae_sep \
        --config.model.encoder=separate_ae [--config.model.ae.steps=300]
    # then the diffusion stage on its latents (refused if runs/ae_sep was trained for other data / model.ae fields):
    python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny_sep \
        --config.model.encoder=separate_ae --config.model.autoencoder_workdir=runs/ae_sep

Training uses config.model.ae.{seed, steps, learning_rate, warmup_steps, ema_decay, batch_size} in place of the
train section's values (as `experiments.train --task=autoencoder` does). Rerunning resumes. The evaluation reports, per parameter set
(raw params and EMA params): video PSNR (dB, frames in [-1, 1], peak-to-peak 2) and mel mean absolute error /
RMSE (normalized log-mel units, roughly [-1, 1]).
"""

import json

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from ml_collections import config_flags

from avdiff import parallel
from avdiff.train.tasks import autoencoder

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.', required=True)
_SPLIT = flags.DEFINE_string('split', 'validation', 'Held-out split for the reconstruction metrics.')
_EVAL_CLIPS = flags.DEFINE_integer('eval_clips', 32, 'Clips scored.')
_EVAL_ONLY = flags.DEFINE_bool('eval_only', False, 'Skip training; evaluate the latest checkpoint.')


def main(argv):
  del argv
  parallel.initialize('', 1, 0)
  results = autoencoder.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _SPLIT.value, _EVAL_CLIPS.value,
                                           train=not _EVAL_ONLY.value)
  print(json.dumps(results))


if __name__ == '__main__':
  console.run(main)
