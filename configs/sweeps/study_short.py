r"""The reduced ablation study whose table is in the README: the members of configs/sweeps/study.py that need no
stage-1 autoencoder, 2 seeds, 1000 training steps (the main job reaches a2v r = 0.66 there, so differences in how
fast sync is learned show), 16 held-out clips, no FVD.

    python -m experiments.ablate --sweep=configs/sweeps/study_short.py --workdir=runs/study_short

About 6 minutes per run alone on 2 cores.
"""

from configs.sweeps import study


def get_sweep():
  full = study.get_sweep()
  members = {k: v for k, v in full['members'].items() if not k.startswith('encoder_')}
  return {
      'base': full['base'],
      'seeds': (0, 1),
      'members': members,
      'overrides': {'train.steps': 1000, 'train.sample_every': 0, 'eval.num_clips': 16, 'eval.fvd': False},
  }
