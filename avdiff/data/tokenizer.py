"""Byte-level tokenizer of prompts: a prompt is its UTF-8 bytes, each byte b the token b + 2, after a BOS token (1)
and padded with 0 to L = max_bytes + 1.

    ids = tokenizer.tokenize(['a blue round face, high voice, four syllables'], max_bytes=96)  # int32 [1, 97]

Bytes rather than a SentencePiece model trained on the captions: nothing to train, ship or keep in step with the
data; any prompt (a paraphrase, a typo, a non-ASCII character) has a tokenization; captions are short, so the
sequence costs little. A prompt longer than max_bytes raises `PromptError` (it is never cut: a cut prompt would drop
attributes without a word). The empty prompt (BOS alone) is the null text of classifier-free guidance.
"""

from __future__ import annotations

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
