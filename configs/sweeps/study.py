r"""The ablation study of the README ('Sweeps and comparisons'): one delta of configs/tiny.py per member, 3 seeds
each, at the main job's scale (1000 steps, 32 held-out clips, FVD on).

    python -m experiments.ablate --sweep=configs/sweeps/study.py --workdir=runs/study

Each run costs about a main job (~10 minutes alone on 2 cores with its evaluation), so the 16 members x 3 seeds are
about 8 hours on one such machine; on a cluster run one job per member x seed (README 'Sweeps on a cluster').
configs/sweeps/study_short.py is the version without the latent encoders, with 5 seeds. The two latent-encoder
members train their stage-1 autoencoder first, once for all their seeds (about 21 minutes each; avdiff.train.stage1). The `no_*` members each remove one of the main job's sync levers (README 'Diffusion').
"""


def get_sweep():
  return {
      'base': 'configs/tiny.py',
      'seeds': (0, 1, 2),
      'members': {
          'baseline': {},  # Joint sequence, shared weights, shared-clock RoPE, blocks order, x objective, pixels.
          'dual_tower': 'configs/ablations/fusion_dual_tower.py',
          'mmdit_weights': 'configs/ablations/mmdit_weights.py',
          'positions_separate': 'configs/ablations/positions_separate.py',
          'positions_learned': 'configs/ablations/positions_learned.py',
          'order_interleaved': 'configs/ablations/order_interleaved.py',
          'shared_noise_level': 'configs/ablations/shared_noise_level.py',
          'no_time_bias': 'configs/ablations/no_time_bias.py',
          'no_sync_loss': 'configs/ablations/no_sync_loss.py',
          'no_motion_weight': 'configs/ablations/no_motion_weight.py',
          'no_sync_levers': 'configs/ablations/no_sync_levers.py',
          'objective_flow': 'configs/ablations/objective_flow.py',
          'objective_eps': 'configs/ablations/objective_eps.py',
          'objective_v': 'configs/ablations/objective_v.py',
          'encoder_separate_ae': 'configs/ablations/encoder_separate_ae.py',
          'encoder_joint_ae': 'configs/ablations/encoder_joint_ae.py',
      },
  }
