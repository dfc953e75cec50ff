"""Ablation: epsilon prediction on the cosine schedule instead of rectified flow, sampled with DPM-Solver++(2M).

    python -m experiments.train --config=configs/ablations/objective_eps.py --workdir=runs/eps
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.diffusion.objective = 'eps'
  c.diffusion.schedule = 'cosine'
  c.diffusion.sampler = 'dpmpp_2m'
  return c
