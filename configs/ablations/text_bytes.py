"""Text as UTF-8 bytes (model.text.encoder='bytes', a byte n-gram window of a word's length) instead of
SentencePiece tokens fitted to the captions (configs/text.py): the same transformer, resampler and fusion, no
vocabulary to fit.

    python -m experiments.train --config=configs/ablations/text_bytes.py --workdir=runs/text_bytes/seed0
"""

from configs import text


def get_config():
  c = text.get_config()
  c.model.text.encoder = 'bytes'
  c.model.text.ngram = 7
  return c
