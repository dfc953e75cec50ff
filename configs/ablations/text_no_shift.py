"""The text recipe (configs/text.py) without its timestep shift (diffusion.flow_shift 1, the main job's time density):
the earlier recipe, whose samples ignore the prompt's face colour at 1000 steps (README 'Text prompts').

    python -m experiments.train --config=configs/ablations/text_no_shift.py --workdir=runs/text_no_shift/seed0
"""

from configs import text


def get_config():
  c = text.get_config()
  c.diffusion.flow_shift = 1.0
  return c
