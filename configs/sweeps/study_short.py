r"""The reduced ablation study whose table is in the README: four members of configs/sweeps/study.py (the
baseline, the dual-tower trunk, one noise level for both modalities, the flow objective), 3 seeds, 1000 training
steps (the main job reaches a2v r = 0.66 there, so differences in how fast sync is learned show), in-loop
evaluation every 250 steps for the time-to-sync curve, 16 held-out clips, no FVD.

    python -m experiments.ablate --sweep=configs/sweeps/study_short.py --workdir=runs/study_short

About 6 minutes per run alone on 2 cores (12 runs).
"""

from configs.sweeps import study

MEMBERS = ('baseline', 'dual_tower', 'shared_noise_level', 'objective_flow')


def get_sweep():
  full = study.get_sweep()
  return {
      'base': full['base'],
      'seeds': (0, 1, 2),
      'members': {k: full['members'][k] for k in MEMBERS},
      'overrides': {'train.steps': 1000, 'train.eval_every': 250, 'train.sample_every': 0, 'eval.num_clips': 16,
                    'eval.fvd': False},
  }
