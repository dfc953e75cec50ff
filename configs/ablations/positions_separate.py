"""Ablation of configs/tiny.py: no shared clock: separate 1D rotary positions per modality (audio indices continue after video).

    python -m experiments.train --config=configs/ablations/positions_separate.py --workdir=runs/positions_separate
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.positions = 'rope_separate'
  return c
