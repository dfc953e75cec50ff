"""Prompt-following evaluation (avdiff.eval.prompts): prompts written from held-out clips' attributes name what
their template names; a model that returns the prompted clip scores 1, one that ignores its prompt scores near
chance; the other-prompt reference is that chance level."""

import numpy as np

from avdiff.data import captions, synthetic
from avdiff.eval import prompts
from configs import text


def _clips(seeds):
  cfg = text.get_config().data
  return [synthetic.talking_clip(s, cfg) for s in seeds]


def test_prompts_name_the_clip_attributes_and_paraphrases_differ():
  clips = _clips(range(6))
  for wording, forms in (('template', captions.TEMPLATES), ('paraphrase', captions.PARAPHRASES)):
    for i, (p, clip) in enumerate(zip(prompts.prompt_set(clips, wording), clips)):
      assert p['truth'] == captions.named(clip['attributes'])
      assert p['caption'] == captions.describe(clip['attributes'], forms[i % len(forms)])
      for name, value in p['truth'].items():
        word = captions.NUMBER_WORDS[value] if name == 'syllables' else value
        assert (name in p['names']) == (word in p['caption'].split(' ') or word + ',' in p['caption'] or
                                        word + '.' in p['caption'] or word + ':' in p['caption']
                                        or word + ';' in p['caption']), (name, p['caption'])
  assert prompts.named_in(captions.TEMPLATES[0]) == ('colour', 'shape', 'pitch', 'syllables')


def test_an_obedient_model_scores_one_and_an_ignoring_one_chance():
  seen = _clips(range(12))
  novel = _clips(range(synthetic.NOVEL_SEEDS.start, synthetic.NOVEL_SEEDS.start + 12))
  config = text.get_config()
  by_caption = {}
  for group in (seen, novel):
    for wording in ('template', 'paraphrase'):
      for p, c in zip(prompts.prompt_set(group, wording), group):
        by_caption[p['caption']] = c

  def obedient(clips, mode, seed):
    assert mode == 'joint' and seed == 0
    return [by_caption[c['caption']] for c in clips]

  def ignoring(clips, mode, seed):
    return [seen[0] for _ in clips]

  # Stand-in video features (the mean colour per channel and its spread over time): the obedient model returns the
  # held-out clips themselves (FVD ~0; two clips with one caption swap places), the ignoring one a single clip over
  # and over (far).
  feats = lambda videos: np.stack([np.concatenate([np.mean(v, (0, 1, 2)), np.std(np.mean(v, (1, 2)), 0)])
                                   for v in videos])
  good = prompts.prompt_following(obedient, config, num=12, clips={'seen': seen, 'novel': novel},
                                  fvd_features=feats)
  bad = prompts.prompt_following(ignoring, config, num=12, clips={'seen': seen, 'novel': novel}, fvd_features=feats)
  assert all(abs(good['sets'][n]['fvd']) < 0.01 * bad['sets'][n]['fvd'] for n in prompts.SETS)
  for name in prompts.SETS:
    assert good['sets'][name]['agreement']['all'] == 1.0
    assert bad['sets'][name]['agreement']['all'] < 0.3
    assert good['sets'][name]['ground_truth']['all'] == 1.0
    # A model that obeys every prompt agrees with another clip's prompt only by chance.
    assert good['sets'][name]['other_prompt']['all'] < 0.3
  assert np.isfinite(good['sets']['seen/template']['agreement']['rate'])


def test_the_label_control_gets_the_prompted_label_and_scores_what_it_names():
  """condition='label': each sample gets the label of its prompt's (colour, shape, pitch), and only those are
  scored; a model that draws the clip of its label scores 1 on them, the rest are not scored."""
  seen = _clips(range(12))
  by_label = {int(c['label']): c for c in seen}

  def label_model(clips, mode, seed):
    assert all(set(c) == {'label'} for c in clips)
    return [by_label[c['label']] for c in clips]

  out = prompts.prompt_following(label_model, text.get_config(), num=12, clips={'seen': seen},
                                 sets=('seen/template',), condition='label')
  agreement = out['sets']['seen/template']['agreement']
  assert out['condition'] == 'label'
  assert [agreement[n] for n in prompts.LABEL_ATTRIBUTES] == [1.0, 1.0, 1.0] and agreement['all'] == 1.0
  assert np.isnan(agreement['rate']) and np.isnan(agreement['syllables'])


def _caption_sets(seed=0, n=200):
  """Attribute indices [N, 5] of train / validation captions (no held-out pair) and test_novel ones (only those)."""
  rng = np.random.default_rng(seed)
  colours, pitches = captions.TALKING_ATTRIBUTES['colour'], captions.TALKING_ATTRIBUTES['pitch']
  held = {(colours.index(c), pitches.index(p)) for c, p in synthetic.HELD_OUT_PAIRS}
  sizes = [len(v) for v in captions.TALKING_ATTRIBUTES.values()]
  draw = lambda: np.stack([rng.integers(0, s, 4 * n) for s in sizes], 1)
  pairs = lambda a: np.array([(c, p) in held for c, p in a[:, [0, 2]]])
  a, v = draw(), draw()
  return a[~pairs(a)][:n], v[~pairs(v)][:n], a[pairs(a)][:n // 4]


def test_pitch_binding_tells_a_factored_representation_from_one_that_binds_pitch_to_colour():
  """One-hot word features read the held-out pitch (novel 1.0); features whose pitch part is the colour's training
  partner for the held-out pairs' colours (as an encoder that learned the shortcut writes it) read seen and fail
  novel."""
  train, seen, novel = _caption_sets()
  colours, pitches = captions.TALKING_ATTRIBUTES['colour'], captions.TALKING_ATTRIBUTES['pitch']
  partner = {colours.index(c): 1 - pitches.index(p) for c, p in synthetic.HELD_OUT_PAIRS}

  def features(a, bind):
    pitch = np.array([partner.get(c, p) if bind else p for c, p in a[:, [0, 2]]])
    sizes = [len(v) for v in captions.TALKING_ATTRIBUTES.values()]
    onehots = [np.eye(s)[a[:, j]] for j, s in enumerate(sizes)]
    onehots[2] = np.eye(2)[pitch]
    return np.concatenate(onehots + [np.ones((len(a), 1))], 1)

  factored = prompts.pitch_binding(*((features(a, False), a) for a in (train, seen, novel)))
  assert factored == {'seen': 1.0, 'novel': 1.0}
  bound = prompts.pitch_binding(*((features(a, True), a) for a in (train, seen, novel)))
  assert bound['seen'] == 1.0 and bound['novel'] == 0.0
