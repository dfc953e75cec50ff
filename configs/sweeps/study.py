r"""The ablation study of the README ('Ablation study'): one delta of configs/tiny.py per member, 3 seeds each, at
the main job's scale (2500 steps, 32 held-out clips, FVD on).

    python -m experiments.ablate --sweep=configs/sweeps/study.py --workdir=runs/study

Each run costs about a main job (13 minutes alone on 2 cores), so the whole study is about 6 hours on one such
machine; on a cluster run one job per member x seed (README 'Sweeps on a cluster'). configs/sweeps/study_short.py
is the reduced version whose table is in the README. The two latent-encoder members need a stage-1 autoencoder
first (model.autoencoder_workdir; `python -m experiments.train_autoencoder`, about 21 minutes each).
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
          'av_time_bias': 'configs/ablations/av_time_bias.py',
          'objective_flow': 'configs/ablations/objective_flow.py',
          'objective_eps': 'configs/ablations/objective_eps.py',
          'encoder_separate_ae': 'configs/ablations/encoder_separate_ae.py',
          'encoder_joint_ae': 'configs/ablations/encoder_joint_ae.py',
      },
  }
