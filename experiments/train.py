"""Trains a model with the shared loop; rerunning the same command resumes from the workdir's latest checkpoint.

    python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny [--config.train.steps=20]
    python -m experiments.train --config=configs/tiny.py --workdir=runs/ae --task=autoencoder \
        --config.model.encoder=separate_ae
    # Two processes on one machine (CPU, gloo collectives), same command with --process_id=0 and 1:
    python -m experiments.train --config=configs/tiny.py --workdir=runs/mp --coordinator_address=localhost:12355 \
        --num_processes=2 --process_id=0
    # Cloud TPU pod / SLURM: --num_processes=-1 (everything from the environment).

A latent config (model.encoder 'separate_ae' / 'joint_ae') first finds the autoencoder trained for its data and
model.ae fields, or trains it (avdiff.train.stage1), and caches its latents. --task=autoencoder trains the stage-1
autoencoder alone with config.model.ae.{seed, steps, learning_rate, warmup_steps, ema_decay, batch_size} in place
of the train section's values (unmarked: experiments.train_autoencoder also evaluates and marks it),
--task=sync_expert the sync expert with config.eval.sync_expert.*, --task=vocoder the neural vocoder with
config.model.vocoder.* (unmarked: experiments.train_vocoder finds or trains, evaluates and marks it).
"""

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from ml_collections import config_flags

from avdiff import parallel
from avdiff.train import loop
from avdiff.train import tasks

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Training config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics, samples).', required=True)
_TASK = flags.DEFINE_enum('task', 'diffusion', list(tasks.NAMES), 'What to train.')
_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID = parallel.process_flags()


def main(argv):
  del argv
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config, task = tasks.build(_TASK.value, _CONFIG.value)
  result = loop.train(config, _WORKDIR.value, task)
  console.say(f"Finished at step {result['step']} ({result['stopped']}); run directory {_WORKDIR.value}")


if __name__ == '__main__':
  console.run(main)
