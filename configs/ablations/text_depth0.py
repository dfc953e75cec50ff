"""The text recipe (configs/text.py) with no transformer layer in the text encoder (model.text.depth 0): each word's
feature depends on its neighbours only (model.text.ngram 3), and the resampler's text tokens are weighted sums of
them, so the encoder cannot write one word's attribute as a function of another word.

    python -m experiments.train --config=configs/ablations/text_depth0.py --workdir=runs/text_depth0/seed0
"""

from configs import text


def get_config():
  c = text.get_config()
  c.model.text.depth = 0
  return c
