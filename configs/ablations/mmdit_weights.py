"""Ablation of configs/tiny.py: one joint sequence with MM-DiT style modality-specific weights (QKV, output projection, MLP and
adaLN per modality; attention over both).

    python -m experiments.train --config=configs/ablations/mmdit_weights.py --workdir=runs/mmdit_weights
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.modality_specific_weights = True
  return c
