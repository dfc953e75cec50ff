r"""The short study: the members of configs/sweeps/study.py without the latent encoders, 5 seeds, at the main job's
length (configs/tiny.py, 1000 steps) with in-loop evaluation every 100 steps for the time-to-sync curve, 16
held-out clips, no FVD.

    python -m experiments.ablate --sweep=configs/sweeps/study_short.py --workdir=runs/study_short
    python -m experiments.ablate --sweep=configs/sweeps/study_short.py --workdir=runs/study_smoke --seeds=0 \
        --override=train.steps=50 --override=train.eval_every=25 --override=eval.num_clips=4   # smoke test first

About 8 minutes per run alone on 2 cores, evaluation included: 65 runs, ~9 hours on one such machine; on a cluster
one job per member x seed (README 'Sweeps on a cluster').
"""

from configs.sweeps import study

MEMBERS = ('baseline', 'shared_noise_level', 'dual_tower', 'order_interleaved', 'positions_separate',
           'positions_learned', 'objective_eps', 'objective_v', 'objective_flow', 'no_time_bias', 'no_sync_loss',
           'no_motion_weight', 'no_sync_levers')


def get_sweep():
  full = study.get_sweep()
  return {
      'base': full['base'],
      'seeds': (0, 1, 2, 3, 4),
      'members': {k: full['members'][k] for k in MEMBERS},
      'overrides': {'train.eval_every': 100, 'train.sample_every': 0, 'eval.num_clips': 16, 'eval.fvd': False},
  }
