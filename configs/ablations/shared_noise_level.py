"""Ablation: one noise level for both modalities (no independent timesteps, no clean-modality training).

Without it the joint model cannot be conditioned on a clean modality at sampling time, so `audio_to_video` and
`video_to_audio` are expected to degrade; `joint` sampling should be unaffected.

    python -m experiments.train --config=configs/ablations/shared_noise_level.py --workdir=runs/shared_noise
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.independent_t_prob = 0.0
  c.diffusion.clean_video_prob = 0.0
  c.diffusion.clean_audio_prob = 0.0
  return c
