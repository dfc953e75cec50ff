"""All three sync levers removed: the main job's recipe before them (no time bias, no sync loss, uniform video
loss weights), at the main job's length. On the built-in data the coupling then switches on late and seed by seed
(benchmarks/time_to_sync.md, lever 'baseline'): expect a2v r far below the main job's at this length.

    python -m experiments.train --config=configs/ablations/no_sync_levers.py --workdir=runs/no_sync_levers
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.av_time_bias = 0.0
  c.diffusion.sync_loss_weight = 0.0
  c.diffusion.motion_loss_weight = 0.0
  return c
