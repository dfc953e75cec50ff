"""Captions -> a text model's inputs, for every text encoder (model.text.encoder) in one place: the input pipeline,
sampling and the benchmarks all go through `TextInputs`.

    inputs = text_inputs.TextInputs(config)
    inputs.check(['a blue round face, high voice, four syllables'])   # PromptError before anything compiles
    arrays = inputs(['a blue round face, high voice, four syllables'])  # {'text': int32 [1, L]} or embeddings
    text = text_inputs.model_text(config, arrays)                       # what the DiT takes (`models.text.Text`)

Encoders and their arrays:
  'bytes'        `text` int32 [B, max_bytes + 1]: UTF-8 byte ids (`tokenizer.tokenize`).
  'pieces'       `text` int32 [B, max_bytes + 1]: SentencePiece ids (`tokenizer.Pieces`) of a BPE model trained on
                 the dataset's training captions, stored once at <dataset data_path>/text_pieces/bpe_<vocab>.model.
                 Training it is deterministic (sorted captions, one thread), so the file is a cache: a run and its
                 sampling read the same model as long as the dataset is the same version.
  'precomputed'  `text_embeddings` float32 [B, L, D] + `text_mask` bool [B, L]: rows of the stored table of a frozen
                 encoder (`text_embeddings`, written by `python -m experiments.embed_text`).
The empty caption is the null text of classifier-free guidance for each of them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import ml_collections
import numpy as np
from etils import epath

from avdiff import config_lib
from avdiff import console
from avdiff.data import builders
from avdiff.data import text_embeddings
from avdiff.data import tokenizer

# Batch keys of each encoder's arrays.
KEYS = {'bytes': ('text',), 'pieces': ('text',), 'precomputed': ('text_embeddings', 'text_mask')}


def pieces_path(config: ml_collections.ConfigDict) -> str:
  """<data_path of config.data's dataset>/text_pieces/bpe_<model.text.vocab_size>.model."""
  root = epath.Path(builders.get_builder(config).data_path)
  return str(root / 'text_pieces' / f'bpe_{int(config.model.text.vocab_size)}.model')


def load_pieces(config: ml_collections.ConfigDict) -> tokenizer.Pieces:
  """The SentencePiece model of config.data's training captions (trained and stored on first use; written to a
  temporary file and renamed, so a concurrent reader never sees half of it)."""
  path = epath.Path(pieces_path(config))
  if not path.exists():
    captions = text_embeddings.dataset_captions(config, splits=('train',))
    if not captions:
      raise console.UserError(f"model.text.encoder='pieces' needs captions in the train split of "
                              f'{config.data.dataset!r}; it has none')
    proto = tokenizer.train_pieces(captions, int(config.model.text.vocab_size))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f'{path.name}.tmp'
    tmp.write_bytes(proto)
    tmp.replace(path)
    console.say(f'Trained a SentencePiece model ({tokenizer.Pieces(proto).vocab - tokenizer.OFFSET} pieces) on '
                 f'{len(captions)} training captions: {path}')
  return tokenizer.Pieces(path.read_bytes())


class TextInputs:
  """Captions (B strings) -> the arrays of config.model.text.encoder (module docstring). Picklable: the input
  pipeline may send it to worker processes."""

  def __init__(self, config: ml_collections.ConfigDict):
    self.encoder = config_lib.text_encoder(config)
    if not self.encoder:
      raise tokenizer.PromptError('this model takes no prompts (model.text.encoder is empty)')
    self.max_tokens = int(config.model.text.max_bytes)
    self.pieces: Optional[tokenizer.Pieces] = None  # The SentencePiece model ('pieces').
    self._table: Optional[text_embeddings.Table] = None
    if self.encoder == 'pieces':
      self.pieces = load_pieces(config)
      capacity = tokenizer.OFFSET + int(config.model.text.vocab_size)
      if self.pieces.vocab > capacity:
        raise config_lib.ConfigError(f'the SentencePiece model {pieces_path(config)} has {self.pieces.vocab} ids, '
                                     f'more than model.text.vocab_size={config.model.text.vocab_size} + 2 allow')
    elif self.encoder == 'precomputed':
      self._table = text_embeddings.load(config)  # A missing table: a UserError naming experiments.embed_text.

  @property
  def keys(self) -> tuple[str, ...]:
    return KEYS[self.encoder]

  def __call__(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
    """Raises tokenizer.PromptError for an over-long prompt or one without a stored embedding."""
    if self.encoder == 'precomputed':
      embeddings, mask = self._table.lookup(captions)
      return {'text_embeddings': embeddings, 'text_mask': mask}
    if self.encoder == 'pieces':
      return {'text': self.pieces.tokenize(captions, self.max_tokens)}
    return {'text': tokenizer.tokenize(captions, self.max_tokens)}

  def check(self, prompts: Sequence[str]) -> None:
    """Raises tokenizer.PromptError for an empty, non-string or over-long prompt, or (precomputed) one without a
    stored embedding; prompts to sample from, so the empty (null) prompt is an error here."""
    for i, p in enumerate(prompts):
      if not isinstance(p, str) or not p.strip():
        raise tokenizer.PromptError(f'prompt {i} is empty: give a description (the null prompt is what guidance '
                                    'compares against, not something to sample from)')
    self(prompts)


def model_text(config: ml_collections.ConfigDict, arrays: dict):
  """A batch's text arrays -> the DiT's text input (`avdiff.models.text.Text`): ids [B, L], or {'embeddings':
  [B, L, D], 'mask': [B, L]}; None for a model without text. Raises ValueError naming missing keys."""
  encoder = config_lib.text_encoder(config)
  if not encoder:
    return None
  missing = [k for k in KEYS[encoder] if k not in arrays]
  if missing:
    raise ValueError(f'model.text.encoder={encoder!r} needs batch keys {missing} (captions in the dataset)')
  if encoder == 'precomputed':
    return {'embeddings': arrays['text_embeddings'], 'mask': arrays['text_mask']}
  return arrays['text']
