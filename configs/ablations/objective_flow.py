"""Ablation: rectified-flow velocity prediction (objective 'flow') instead of clean-signal prediction ('x'), same
flow schedule, logit-normal times and sampler.

    python -m experiments.train --config=configs/ablations/objective_flow.py --workdir=runs/flow
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.objective = 'flow'
  return c
