"""configs/text.py with a bag of words in the pooled text vector (model.text.bag): the mean of the prompt's piece
embeddings, projected, is added to the resampled tokens' mean, so each word moves every block's conditioning along
its own direction from the first step, as a label embedding does.

    python -m experiments.train --config=configs/ablations/text_bag.py --workdir=runs/text_bag/seed0
"""

from configs import text


def get_config():
  c = text.get_config()
  c.model.text.bag = True
  return c
