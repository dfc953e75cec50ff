"""Captions of built-in clips (data.attributes='independent') written from the clip's own ground-truth attributes.

The attribute vocabularies live here (`avdiff.data.synthetic` draws from them and re-exports them as
`synthetic.TALKING_ATTRIBUTES` / `synthetic.IMPACTS_ATTRIBUTES`): the generator depends on the words, never the
reverse, so there is no import cycle.

A caption names every attribute it mentions with exactly one word of its dataset's table (numbers as words: 'one' ..
'five'). `talking`: some templates leave the speaking rate out. `impacts`: the rhythm is the spacing of the contacts,
which needs two gaps to be heard or seen, so a caption names it only for clips of `RHYTHM_MIN_BALLS` balls (the
bracketed part of a template); clips with fewer balls still store a drawn rhythm in `attributes`. `paraphrase` writes
the same attribute words in sentence shapes the caption templates never use, to test whether a text-conditioned model
reads the attribute words or memorized the templates.
"""

from __future__ import annotations

import re
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
# `impacts`: int32 [3] in this order. The materials are the first four of `synthetic.MATERIALS`, by name.
IMPACTS_ATTRIBUTES = {
    'material': ('wood', 'metal', 'glass', 'rubber'),
    'balls': (1, 2, 3),
    'rhythm': ('even', 'uneven'),
}
ATTRIBUTES = {'talking': TALKING_ATTRIBUTES, 'impacts': IMPACTS_ATTRIBUTES}
NUMBER_WORDS = {1: 'one', 2: 'two', 3: 'three', 4: 'four', 5: 'five'}
_COUNTS = ('syllables', 'balls')  # Attributes written as number words.
# Fewest balls whose contacts have a rhythm: three contacts make the two gaps that are equal or not.
RHYTHM_MIN_BALLS = 3

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
# `impacts` templates: fields are the attribute names plus {s} (the plural ending of 'ball'); the [bracketed] part
# names the rhythm and is written only for clips of RHYTHM_MIN_BALLS balls. Material words stay nouns ('wood balls',
# not 'wooden balls'): another word form would be a word the caption vocabulary does not have.
IMPACTS_TEMPLATES = (
    '{balls} {material} ball{s}[, {rhythm} rhythm]',
    '{balls} ball{s} of {material} dropped onto a floor[ in an {rhythm} rhythm]',
    '{material}: {balls} ball{s} falling[ in an {rhythm} rhythm]',
    '[an {rhythm} rhythm of ]{balls} {material} ball{s} hitting the floor',
    'the sound of {balls} {material} ball{s} landing[, {rhythm} rhythm]',
)
IMPACTS_PARAPHRASES = (
    'material: {material}. balls: {balls}.[ rhythm: {rhythm}.]',
    'a floor struck by {balls} ball{s} made of {material}[, with {rhythm} spacing]',
    'impacts of {balls} {material} ball{s} on the ground[; the beat is {rhythm}]',
)
_TEXTS = {'talking': (TEMPLATES, PARAPHRASES), 'impacts': (IMPACTS_TEMPLATES, IMPACTS_PARAPHRASES)}

AttributeValues = Union[Sequence[int], np.ndarray, Mapping[str, Union[str, int]]]


def _table(dataset: str) -> dict:
  if dataset not in ATTRIBUTES:
    raise ValueError(f'no caption attributes for dataset {dataset!r}; expected one of {tuple(ATTRIBUTES)}')
  return ATTRIBUTES[dataset]


def named(attributes: AttributeValues, dataset: str = 'talking') -> dict:
  """{name: value} (e.g. {'colour': 'blue', ..., 'syllables': 4}) of int value indices in the order of `dataset`'s
  table (talking: [5], impacts: [3]), or of such a dict (validated and returned as a new dict)."""
  table = _table(dataset)
  if isinstance(attributes, Mapping):
    out = {}
    for name, values in table.items():
      if name not in attributes or attributes[name] not in values:
        raise ValueError(f'attribute {name!r} must be one of {values}; got {attributes.get(name)!r}')
      out[name] = attributes[name]
    return out
  index = np.asarray(attributes).astype(int).reshape(-1)
  if len(index) != len(table):
    raise ValueError(f'expected {len(table)} {dataset} attribute indices {tuple(table)}; got {index}')
  out = {}
  for i, (name, values) in zip(index, table.items()):
    if not 0 <= i < len(values):
      raise ValueError(f'attribute {name!r} index {i} is outside [0, {len(values)})')
    out[name] = values[i]
  return out


def indices(attributes: AttributeValues, dataset: str = 'talking') -> np.ndarray:
  """int32 [len(table)]: value indices in the order of `dataset`'s table of a {name: value} dict (or of indices,
  validated)."""
  values = named(attributes, dataset)
  table = _table(dataset)
  return np.array([table[n].index(values[n]) for n in table], np.int32)


def rhythm_observable(attributes: AttributeValues) -> bool:
  """Whether an `impacts` clip's rhythm shows: it has RHYTHM_MIN_BALLS balls (two gaps between contacts)."""
  return named(attributes, 'impacts')['balls'] >= RHYTHM_MIN_BALLS


def describe(attributes: AttributeValues, template: str, dataset: str = 'talking') -> str:
  """`template` (str.format fields: the attribute names; impacts also {s} and a [rhythm] part, see
  `IMPACTS_TEMPLATES`) filled with the attribute words; numbers as words."""
  values = named(attributes, dataset)
  words = {n: NUMBER_WORDS[v] if n in _COUNTS else v for n, v in values.items()}
  if dataset == 'impacts':
    words['s'] = '' if values['balls'] == 1 else 's'
    template = re.sub(r'\[([^\]]*)\]', r'\1' if rhythm_observable(values) else '', template)
  return template.format(**words)


def caption(attributes: AttributeValues, seed: int, dataset: str = 'talking') -> str:
  """The caption of a clip: template `seed % len(templates)` of `dataset` filled with its attributes (int value
  indices or a {name: value} dict). Deterministic; e.g. 'a blue round face, high voice, four syllables',
  'three glass balls, uneven rhythm', 'one wood ball'."""
  _table(dataset)
  templates = _TEXTS[dataset][0]
  return describe(attributes, templates[int(seed) % len(templates)], dataset)


def paraphrase(attributes: AttributeValues, index: int, dataset: str = 'talking') -> str:
  """Paraphrase `index % len(paraphrases)` of `dataset`'s attributes: a wording `caption` never produces, with the
  same attribute words (see `PARAPHRASES` on why no synonyms)."""
  _table(dataset)
  forms = _TEXTS[dataset][1]
  return describe(attributes, forms[int(index) % len(forms)], dataset)
