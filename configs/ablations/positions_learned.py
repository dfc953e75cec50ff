"""Ablation of configs/tiny.py: learned absolute position per token instead of shared-clock rotary positions.

    python -m experiments.train --config=configs/ablations/positions_learned.py --workdir=runs/positions_learned
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.positions = 'learned'
  return c
