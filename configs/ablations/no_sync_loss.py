"""Lever removed: no auxiliary sync loss (diffusion.sync_loss_weight = 0; the main job uses 0.05).

    python -m experiments.train --config=configs/ablations/no_sync_loss.py --workdir=runs/no_sync_loss
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.sync_loss_weight = 0.0
  return c
