"""The text recipe (configs/text.py) with caption word dropout (diffusion.word_dropout 0.25): every training caption
loses each word with probability 0.25, so a pitch word is also seen without the colour word it always occurs with in
training (blue faces speak low, yellow high: synthetic.HELD_OUT_PAIRS).

    python -m experiments.train --config=configs/ablations/text_word_dropout.py --workdir=runs/text_word_dropout/seed0
"""

from configs import text


def get_config():
  c = text.get_config()
  c.diffusion.word_dropout = 0.25
  return c
