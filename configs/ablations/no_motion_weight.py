"""Lever removed: uniform weights in the video loss (diffusion.motion_loss_weight = 0; the main job uses 1).

    python -m experiments.train --config=configs/ablations/no_motion_weight.py --workdir=runs/no_motion_weight
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.motion_loss_weight = 0.0
  return c
