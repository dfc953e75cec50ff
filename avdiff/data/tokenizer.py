"""Tokenizers of prompts, two choices with one output: ids int32 [B, L = max_tokens + 1], a BOS token (1) first,
padded with 0.

    ids = tokenizer.tokenize(['a blue round face, high voice, four syllables'], max_bytes=96)  # bytes: [1, 97]
    pieces = tokenizer.Pieces(tokenizer.train_pieces(train_captions, vocab_size=384))
    ids = pieces.tokenize(['a blue round face, high voice, four syllables'], max_tokens=96)  # [1, 97]

Bytes ('bytes' encoder): each UTF-8 byte b is the token b + 2. Nothing to train, ship or keep in step with the data;
any prompt (a paraphrase, a typo, a non-ASCII character) has a tokenization; captions are short, so the sequence
costs little. SentencePiece BPE with byte fallback ('pieces' encoder), trained on the training captions: every
frequent caption word is one token, and any other text still tokenizes (`Pieces` says why both). A prompt longer
than the limit raises `PromptError` (it is never cut: a cut prompt would drop attributes without a word). The empty
prompt (BOS alone) is the null text of classifier-free guidance.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

PAD, BOS, OFFSET = 0, 1, 2
VOCAB = 256 + OFFSET  # Token ids: PAD, BOS, then the 256 byte values.


class PromptError(ValueError):
  """A prompt the model cannot take (not a string, or longer than model.text.max_bytes)."""


def tokenize(prompts: Sequence[str], max_bytes: int) -> np.ndarray:
  """Prompts -> byte ids int32 [len(prompts), max_bytes + 1] (BOS, UTF-8 bytes + 2, PAD = 0).

  Raises PromptError for a non-string or a prompt of more than max_bytes UTF-8 bytes (it is never cut silently: a
  cut prompt would drop attributes without a word). Non-ASCII text is taken as its UTF-8 bytes.
  """
  ids = np.zeros((len(prompts), max_bytes + 1), np.int32)
  ids[:, 0] = BOS
  for i, prompt in enumerate(prompts):
    if not isinstance(prompt, str):
      raise PromptError(f'prompt {i} is a {type(prompt).__name__}, not a string: {prompt!r}')
    data = prompt.encode('utf-8')
    if len(data) > max_bytes:
      raise PromptError(f'prompt {i} is {len(data)} UTF-8 bytes, longer than model.text.max_bytes={max_bytes}: '
                        f'{prompt[:60]!r}...; shorten it or train with a larger model.text.max_bytes')
    ids[i, 1:1 + len(data)] = np.frombuffer(data, np.uint8).astype(np.int32) + OFFSET
  return ids


def detokenize(ids: np.ndarray) -> list[str]:
  """Byte ids [B, L] -> prompts (the inverse of `tokenize`)."""
  ids = np.asarray(ids)
  return [bytes((row[(row >= OFFSET)] - OFFSET).astype(np.uint8).tolist()).decode('utf-8', 'replace') for row in ids]


# SentencePiece pieces ('pieces' encoder): BPE with byte fallback, trained on a dataset's training captions.
def train_pieces(captions: Sequence[str], vocab_size: int) -> bytes:
  """The serialized SentencePiece model (BPE, byte fallback) of `captions`, deterministic: the distinct captions in
  sorted order, one thread. vocab_size counts SentencePiece's own ids (unk + the 256 byte pieces + the characters
  of the captions + merges); a corpus too small to fill it gets fewer merges, not an error."""
  import sentencepiece  # pylint: disable=g-import-not-at-top  (only 'pieces' models need it)
  distinct = sorted({c for c in captions if c})
  if not distinct:
    raise ValueError('no captions to train a SentencePiece model on')
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(distinct), model_writer=model, vocab_size=int(vocab_size), model_type='bpe',
      byte_fallback=True, character_coverage=1.0, num_threads=1, hard_vocab_limit=False, unk_id=0, bos_id=-1,
      eos_id=-1, pad_id=-1, minloglevel=2)
  return model.getvalue()


class Pieces:
  """Prompts -> SentencePiece ids int32 [B, max_tokens + 1] (BOS, piece id + 2, PAD = 0): `tokenize` with pieces
  instead of bytes. Picklable (the input pipeline may send it to worker processes): it holds the serialized model.

  Why pieces as well as bytes: with a few hundred training captions a byte-level encoder trained from scratch has
  to discover where the words are before it can tell 'blue' from 'green'; a BPE vocabulary fitted to the captions
  makes every frequent word one token (an embedding row of its own, as a class label has), while a word it never
  saw still has a tokenization (sub-words, down to bytes).
  """

  def __init__(self, model_proto: bytes):
    self.model_proto = bytes(model_proto)
    self._processor = None

  def __getstate__(self):
    return {'model_proto': self.model_proto}

  def __setstate__(self, state):
    self.__init__(state['model_proto'])

  @property
  def processor(self):
    if self._processor is None:
      import sentencepiece  # pylint: disable=g-import-not-at-top
      self._processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
    return self._processor

  @property
  def vocab(self) -> int:
    """Token ids in use: PAD, BOS, then the model's pieces."""
    return OFFSET + self.processor.get_piece_size()

  def tokenize(self, prompts: Sequence[str], max_tokens: int) -> np.ndarray:
    """Prompts -> piece ids int32 [len(prompts), max_tokens + 1]. Raises PromptError for a non-string or a prompt of
    more than max_tokens pieces (never cut)."""
    ids = np.zeros((len(prompts), max_tokens + 1), np.int32)
    ids[:, 0] = BOS
    for i, prompt in enumerate(prompts):
      if not isinstance(prompt, str):
        raise PromptError(f'prompt {i} is a {type(prompt).__name__}, not a string: {prompt!r}')
      pieces = self.processor.encode(prompt) if prompt else []
      if len(pieces) > max_tokens:
        raise PromptError(f'prompt {i} is {len(pieces)} SentencePiece tokens, more than model.text.max_bytes='
                          f'{max_tokens}: {prompt[:60]!r}...; shorten it or train with a larger model.text.max_bytes')
      ids[i, 1:1 + len(pieces)] = np.asarray(pieces, np.int32) + OFFSET
    return ids

  def detokenize(self, ids: np.ndarray) -> list[str]:
    """Piece ids [B, L] -> prompts."""
    return [self.processor.decode([int(t) - OFFSET for t in row if t >= OFFSET]) for row in np.asarray(ids)]
