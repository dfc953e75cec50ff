"""Captions of `talking` clips (attributes='independent') written from the clip's own ground-truth attributes.

The attribute vocabulary lives here (`avdiff.data.synthetic` draws from it and re-exports it as
`synthetic.TALKING_ATTRIBUTES`): the generator depends on the words, never the reverse, so there is no import cycle.

A caption names every attribute with exactly one word of `TALKING_ATTRIBUTES` (numbers as words: 'two' .. 'five');
some templates leave the speaking rate out. `paraphrase` writes the same attribute words in sentence shapes the
caption templates never use, to test whether a text-conditioned model reads the attribute words or memorized the
templates.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np

# Attribute name -> the values it takes; a clip stores the index of its value (int32 [5] in this order).
TALKING_ATTRIBUTES = {
    'colour': ('red', 'green', 'blue', 'yellow'),
    'shape': ('round', 'long'),
    'pitch': ('low', 'high'),
    'rate': ('slow', 'fast'),
    'syllables': (2, 3, 4, 5),
}
NUMBER_WORDS = {2: 'two', 3: 'three', 4: 'four', 5: 'five'}

# Caption templates, chosen by a clip's seed. The first is the short canonical form; the first and fourth omit the
# rate. Fields: the attribute names, each filled with its word.
TEMPLATES = (
    'a {colour} {shape} face, {pitch} voice, {syllables} syllables',
    'a {colour} {shape} face says {syllables} {rate} syllables in a {pitch} voice',
    '{syllables} {rate} syllables from a {shape} {colour} face with a {pitch} voice',
    'a {shape} face, {colour}, talking in a {pitch} voice: {syllables} syllables',
    'a {colour} face, {shape}, with a {pitch} voice speaking {syllables} {rate} syllables',
)
# Wordings no template uses (other function words, order and punctuation), same attribute words: a byte-level text
# encoder trained from scratch has never seen a synonym ('crimson', 'deep', 'quick'), so a paraphrase that swapped
# the attribute words would test vocabulary it cannot have, not whether it reads the words it was trained on.
PARAPHRASES = (
    'voice: {pitch}. face: {colour} and {shape}. {syllables} syllables, {rate}.',
    'the speaker has a {pitch} pitch and a {shape}, {colour} head, and utters {syllables} {rate} syllables',
    '{pitch} pitched speech of {syllables} {rate} syllables; the face is {colour} and {shape}',
)

AttributeValues = Union[Sequence[int], np.ndarray, Mapping[str, Union[str, int]]]


def named(attributes: AttributeValues) -> dict:
  """{name: value} (e.g. {'colour': 'blue', ..., 'syllables': 4}) of int [5] value indices in `TALKING_ATTRIBUTES`
  order, or of such a dict (validated and returned as a new dict)."""
  if isinstance(attributes, Mapping):
    out = {}
    for name, values in TALKING_ATTRIBUTES.items():
      if name not in attributes or attributes[name] not in values:
        raise ValueError(f'attribute {name!r} must be one of {values}; got {attributes.get(name)!r}')
      out[name] = attributes[name]
    return out
  index = np.asarray(attributes).astype(int).reshape(-1)
  if len(index) != len(TALKING_ATTRIBUTES):
    raise ValueError(f'expected {len(TALKING_ATTRIBUTES)} attribute indices {tuple(TALKING_ATTRIBUTES)}; got {index}')
  out = {}
  for i, (name, values) in zip(index, TALKING_ATTRIBUTES.items()):
    if not 0 <= i < len(values):
      raise ValueError(f'attribute {name!r} index {i} is outside [0, {len(values)})')
    out[name] = values[i]
  return out


def indices(attributes: AttributeValues) -> np.ndarray:
  """int32 [5]: value indices in `TALKING_ATTRIBUTES` order of a {name: value} dict (or of indices, validated)."""
  values = named(attributes)
  return np.array([TALKING_ATTRIBUTES[n].index(values[n]) for n in TALKING_ATTRIBUTES], np.int32)


def describe(attributes: AttributeValues, template: str) -> str:
  """`template` (str.format fields: the attribute names) filled with the attribute words; numbers as words."""
  values = named(attributes)
  words = {n: NUMBER_WORDS[v] if n == 'syllables' else v for n, v in values.items()}
  return template.format(**words)


def caption(attributes: AttributeValues, seed: int) -> str:
  """The caption of a clip: template `seed % len(TEMPLATES)` filled with its attributes (int [5] value indices or a
  {name: value} dict). Deterministic; e.g. 'a blue round face, high voice, four syllables'."""
  return describe(attributes, TEMPLATES[int(seed) % len(TEMPLATES)])


def paraphrase(attributes: AttributeValues, index: int) -> str:
  """Paraphrase `index % len(PARAPHRASES)` of the attributes: a wording `caption` never produces, with the same
  attribute words (see `PARAPHRASES` on why no synonyms)."""
  return describe(attributes, PARAPHRASES[int(index) % len(PARAPHRASES)])
