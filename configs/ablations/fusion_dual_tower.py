"""Ablation of configs/tiny.py: two-tower fusion (a video tower and an audio tower, bidirectional cross-attention every
model.cross_attention_every blocks) instead of one joint sequence.

    python -m experiments.train --config=configs/ablations/fusion_dual_tower.py --workdir=runs/fusion_dual_tower
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.fusion = 'dual_tower'  # Towers of model.depth blocks each.
  return c
