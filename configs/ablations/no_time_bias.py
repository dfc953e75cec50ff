"""Lever removed: no cross-modal time locality in attention (model.av_time_bias = 0; the main job uses 20).

    python -m experiments.train --config=configs/ablations/no_time_bias.py --workdir=runs/no_time_bias
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.av_time_bias = 0.0
  return c
