"""Ablation: v-prediction on the cosine schedule, sampled with DDIM.

    python -m experiments.train --config=configs/ablations/objective_v.py --workdir=runs/v
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.objective = 'v'
  c.diffusion.schedule = 'cosine'
  c.diffusion.sampler = 'ddim'
  return c
