"""Find or train the neural vocoder of a config (a stage-1 model: avdiff.vocoders, avdiff.train.tasks.vocoder).

    python -m experiments.train_vocoder --config=configs/tiny.py [--config.model.vocoder.steps=...]

Prints "Using trained vocoder at X" when the vocoder of the config's data and model.vocoder fields is finished in
<model.autoencoder_root>/vocoder-<fingerprint> (default runs/stage1; or model.vocoder.workdir), else trains it
there ("Training vocoder at X first"; a killed run resumes), scores it and Griffin-Lim on 32 validation clips
(vocoder_eval.json: mel L1, pyin f0 error and voicing) and marks it finished (stage1.json). Sampling uses it with
--config.model.vocoder.use=True.
"""

import json

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from ml_collections import config_flags

from avdiff import autoencoders
from avdiff import parallel
from avdiff.train.tasks import vocoder

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file.', lock_config=True)


def main(argv):
  del argv
  parallel.initialize('', 1, 0)
  vocoder_dir = vocoder.find_or_train(_CONFIG.value)
  print(json.dumps(autoencoders.read_marker(vocoder_dir).get('eval', {}), indent=1))


if __name__ == '__main__':
  console.run(main)
