"""Prompt following of a text-to-audio-video model on `talking` (data.attributes='independent').

    result = prompts.prompt_following(sample_fn, config, num=32, seed=0)
    result['sets']['novel/template']['agreement']['pitch']    # fraction of samples whose voice is as prompted

Prompts are written from the attributes of held-out clips: `seen` from the validation split (colour-pitch pairs
that occur in training), `novel` from `test_novel` (pairs held out of every other split), each worded by the
caption templates (`template`) and by wordings the caption generator never uses (`paraphrase`). One joint sample
per prompt; the weight-free readers (`avdiff.eval.attributes`) read every attribute back, and an attribute named
in the prompt counts as obeyed when the reading equals it (a reading of None, nothing to read, counts as not).

Two references come with every set: `ground_truth`, the readers on the held-out clips the prompts were written
from (how often a reader is right: a sample can only be scored as well as that), and `other_prompt`, the samples'
readings against the prompt of another clip (what agreement a model that ignores its prompt gets: chance level,
not 0, for attributes with few values).
"""

from __future__ import annotations

from typing import Callable, Optional

import ml_collections
import numpy as np

from avdiff.data import builders
from avdiff.data import captions
from avdiff.data import synthetic
from avdiff.eval import attributes as attr_lib
from avdiff.eval import conditions as conditions_lib
from avdiff.eval import fvd as fvd_lib

SETS = ('seen/template', 'seen/paraphrase', 'novel/template', 'novel/paraphrase')
SPLITS = {'seen': 'validation', 'novel': 'test_novel'}
# Targets of the text-to-audio-video issue: each named attribute obeyed on this share of samples.
TARGETS = {'seen': 0.8, 'novel': 0.7}
PARAPHRASE_GAP = 0.1  # A paraphrase within this much of the template wording.
LABEL_ATTRIBUTES = ('colour', 'shape', 'pitch')  # What the label of an independent-attribute clip names.


def named_in(template: str) -> tuple[str, ...]:
  """The attributes a caption template names (e.g. some leave the speaking rate out)."""
  return tuple(n for n in captions.TALKING_ATTRIBUTES if '{' + n + '}' in template)


def prompt_set(clips: list[builders.Clip], wording: str) -> list[dict]:
  """Per held-out clip (with `attributes`), a prompt {'caption', 'truth': {name: value}, 'names': named attributes};
  templates (or paraphrases) cycled over the clips."""
  forms = captions.TEMPLATES if wording == 'template' else captions.PARAPHRASES
  out = []
  for i, clip in enumerate(clips):
    if 'attributes' not in clip:
      raise ValueError('prompt following needs clips with `attributes` (talking, data.attributes=\'independent\')')
    form = forms[i % len(forms)]
    out.append({'caption': captions.describe(clip['attributes'], form), 'truth': captions.named(clip['attributes']),
                'names': named_in(form)})
  return out


def _agreement(readings: list[dict], prompts: list[dict]) -> dict[str, float]:
  """{attribute: fraction of the prompts naming it whose reading matches; 'all': every named one matches}."""
  out = {}
  for name in captions.TALKING_ATTRIBUTES:
    hits = [r[name] == p['truth'][name] for r, p in zip(readings, prompts) if name in p['names']]
    out[name] = float(np.mean(hits)) if hits else float('nan')
  out['all'] = float(np.mean([all(r[n] == p['truth'][n] for n in p['names']) for r, p in zip(readings, prompts)]))
  return out


def prompt_following(sample_fn: conditions_lib.SampleFn, config: ml_collections.ConfigDict, num: int = 32,
                     seed: int = 0, sets: tuple[str, ...] = SETS, clips: Optional[dict] = None,
                     condition: str = 'prompt', fvd_features: Optional[Callable] = None) -> dict:
  """Samples one joint clip per prompt of each set and scores it (module docstring).

  Args:
    sample_fn: (clips, mode, seed) -> sampled clips (`sampling.sample_clips` bound to a model).
    config: the model's config (data: the `talking` independent-attribute dataset).
    num: held-out clips (prompts) per set.
    seed: sampling seed.
    sets: which of SETS.
    clips: {'seen': [...], 'novel': [...]} held-out clips to write prompts from (default: the first `num` of each
      split).
    condition: 'prompt' (each sample gets its prompt as `caption`), or 'label' (the control of a label-conditioned
      model: each sample gets the label of the prompt's (colour, shape, pitch), `synthetic.attribute_label`, and
      only those attributes are scored; how far the same DiT gets when its condition needs no text encoder).
    fvd_features: None, or videos [uint8 [T, H, W, 3]] -> I3D features [N, 400] (`avdiff.eval.fvd.I3DFeatures`):
      each set's FVD, its samples against the held-out clips its prompts were written from (N = num: compare only
      at equal N, see avdiff.eval.fvd on small N).
  Returns:
    {'num': num, 'seed': seed, 'condition': condition, 'sets': {set: {'agreement': {attribute | 'all': fraction},
     'ground_truth': {...}, 'other_prompt': {...}, 'prompts': [caption, ...], 'fvd': float (with fvd_features)}}};
    an attribute not scored (condition='label': rate, syllables) has agreement NaN.
  """
  clips = dict(clips or {})
  result = {'num': num, 'seed': seed, 'condition': condition, 'sets': {}}
  for name in sets:
    group, wording = name.split('/')
    if group not in clips:
      clips[group] = builders.load_clips(config, SPLITS[group], num)
    held_out = clips[group][:num]
    prompts = prompt_set(held_out, wording)
    if condition == 'label':
      prompts = [{**p, 'names': tuple(n for n in p['names'] if n in LABEL_ATTRIBUTES)} for p in prompts]
      given = [{'label': synthetic.attribute_label(captions.indices(p['truth']))} for p in prompts]
    elif condition == 'prompt':
      given = [{'caption': p['caption']} for p in prompts]
    else:
      raise ValueError(f"condition must be 'prompt' or 'label', got {condition!r}")
    samples = sample_fn(given, 'joint', seed)
    readings = [attr_lib.read_attributes(s, config.data) for s in samples]
    truth_readings = [attr_lib.read_attributes(c, config.data) for c in held_out]
    shift = max(1, len(prompts) // 2)  # Another clip's prompt (a fixed derangement).
    others = prompts[shift:] + prompts[:shift]
    result['sets'][name] = {'agreement': _agreement(readings, prompts),
                            'ground_truth': _agreement(truth_readings, prompts),
                            'other_prompt': _agreement(readings, others),
                            'prompts': [p['caption'] for p in prompts],
                            'readings': [{k: v for k, v in r.items()} for r in readings]}
    if fvd_features is not None:
      result['sets'][name]['fvd'] = fvd_lib.fvd(fvd_features([c['video'] for c in held_out]),
                                                fvd_features([s['video'] for s in samples]))
  return result


def ridge(x: np.ndarray, values: np.ndarray, num: int) -> np.ndarray:
  """Weights [F, num] of a ridge regression (closed form, lambda 1) of features x [N, F] onto one-hot values [N]."""
  return np.linalg.solve(x.T @ x + 1.0 * np.eye(x.shape[1]), x.T @ np.eye(num)[values])


def pitch_binding(train: tuple, seen: tuple, novel: tuple) -> dict[str, float]:
  """Whether a prompt representation writes the voice pitch apart from the face colour.

  Each argument is (features [N, F] of captions, e.g. a text encoder's output tokens flattened, with a constant
  column; attribute value indices int [N, 5] in `captions.TALKING_ATTRIBUTES` order) of the train, validation and
  test_novel captions. A linear pitch read-out (`ridge`) is fitted only on the train captions whose face colour is
  in no held-out pair (`synthetic.HELD_OUT_PAIRS`: there the colour tells nothing of the pitch), then reads the
  captions whose colour is in one: -> {'seen': accuracy on those validation captions (their training pitch),
  'novel': accuracy on the test_novel captions (the held-out pitch)}. A representation that writes the pitch word
  the same whatever the colour reads both; one that writes those colours' pitch from the colour word reads seen and
  fails novel.
  """
  names = list(captions.TALKING_ATTRIBUTES)
  colour, pitch = names.index('colour'), names.index('pitch')
  bound = [captions.TALKING_ATTRIBUTES['colour'].index(c) for c, _ in synthetic.HELD_OUT_PAIRS]
  (x, a), (xs, as_), (xn, an) = train, seen, novel
  free = ~np.isin(a[:, colour], bound)
  w = ridge(x[free], a[free, pitch], len(captions.TALKING_ATTRIBUTES['pitch']))
  held = np.isin(as_[:, colour], bound)
  return {'seen': float(np.mean(np.argmax(xs[held] @ w, 1) == as_[held, pitch])),
          'novel': float(np.mean(np.argmax(xn @ w, 1) == an[:, pitch]))}
