"""Ablation of configs/tiny.py: tokens interleaved per latent frame (its video tokens, then the audio tokens of the same span)
instead of modality blocks. With full attention and per-token positions the two orders compute the same function;
the order matters once the sequence is sharded over devices or attention is windowed.

    python -m experiments.train --config=configs/ablations/order_interleaved.py --workdir=runs/order_interleaved
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.sequence_order = 'interleaved'
  return c
