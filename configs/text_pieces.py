r"""configs/text.py with SentencePiece tokens instead of bytes: a BPE vocabulary fitted to the training captions
(`avdiff.data.text_inputs`), so every caption word is one token with an embedding row of its own; the same text
transformer, resampler and fusion.

    python -m experiments.train --config=configs/text_pieces.py --workdir=runs/text_pieces/seed0
    python -m benchmarks.prompt_following --workdirs=runs/text_v2/seed0,runs/text_pieces/seed0 \
        --members=bytes,pieces --out=benchmarks/text_tokenizer.md

Expected result: README, 'Text prompts' (benchmarks/text_tokenizer.md).
"""

from configs import text


def get_config():
  c = text.get_config()
  c.model.text.encoder = 'pieces'
  c.model.text.ngram = 3  # A word is already a token: the window only joins neighbouring words.
  return c
