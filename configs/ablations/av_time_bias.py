"""Lever: cross-modal time locality (model.av_time_bias = 20 logits per second for the steepest of 4 heads).

Attention between a video and an audio token is penalised by slope_h * |time difference| (ALiBi slopes 20, 5, 1.25,
0.31 per second over the 4 heads; tokens are 0.2 s apart), so the steep heads read the other modality at the same
moment. Measured against the main job in benchmarks/time_to_sync.md:

    python -m experiments.train --config=configs/ablations/av_time_bias.py --workdir=runs/av_time_bias
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.av_time_bias = 20.0
  return c
