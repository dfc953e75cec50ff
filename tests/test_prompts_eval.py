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

  good = prompts.prompt_following(obedient, config, num=12, clips={'seen': seen, 'novel': novel})
  bad = prompts.prompt_following(ignoring, config, num=12, clips={'seen': seen, 'novel': novel})
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
