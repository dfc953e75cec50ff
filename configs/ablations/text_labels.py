"""The label control of the text runs: the data of configs/text.py (independent attributes), no text encoder, the
(colour, shape, pitch) label shown with the main job's label dropout and guidance (configs/tiny.py). What the same
DiT does when its condition needs no language at all; `benchmarks.prompt_following` gives each sample the label
of its prompt's colour, shape and pitch. A held-out combination (`test_novel`) is a label never trained on.

    python -m experiments.train --config=configs/ablations/text_labels.py --workdir=runs/text_labels/seed0
"""

from configs import text
from configs import tiny


def get_config():
  c = text.get_config()
  plain = tiny.get_config()
  c.model.text.encoder = ''
  c.diffusion.label_dropout = plain.diffusion.label_dropout
  c.diffusion.guidance_video = plain.diffusion.guidance_video
  c.diffusion.guidance_audio = plain.diffusion.guidance_audio
  c.diffusion.guidance_text = 1.0
  return c
