r"""The reduced ablation study whose table is in the README: three members of configs/sweeps/study.py (the
baseline, one noise level for both modalities, the dual-tower trunk), 3 seeds, 1500 training steps (the length of
the main job's outcome test, where the baseline reaches a2v r = 0.8; at 1000 steps two baseline seeds gave 0.33
and 0.05, too early to compare), in-loop evaluation every 500 steps for the time-to-sync curve, 16 held-out
clips, no FVD.

    python -m experiments.ablate --sweep=configs/sweeps/study_short.py --workdir=runs/study_short

About 10-12 minutes per run alone on 2 cores, evaluation included (9 runs).
"""

from configs.sweeps import study

MEMBERS = ('baseline', 'shared_noise_level', 'dual_tower')


def get_sweep():
  full = study.get_sweep()
  return {
      'base': full['base'],
      'seeds': (0, 1, 2),
      'members': {k: full['members'][k] for k in MEMBERS},
      'overrides': {'train.steps': 1500, 'train.eval_every': 500, 'train.sample_every': 0, 'eval.num_clips': 16,
                    'eval.fvd': False},
  }
