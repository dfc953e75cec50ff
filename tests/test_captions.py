"""Independent attributes (data.attributes='independent') of `talking` and `impacts`: captions match the ground truth
they describe, paraphrases differ from every caption, the held-out pairs occur only in `test_novel`, and each
attribute is what the clip shows."""

import colorsys
import itertools
import re

import librosa
import numpy as np
import pytest

from avdiff import config_lib
from avdiff.data import audio, builders, captions, synthetic
from configs import tiny

SEEDS = range(200)
ALL_ATTRIBUTES = [np.array(v, np.int32) for v in itertools.product(
    *(range(len(values)) for values in synthetic.TALKING_ATTRIBUTES.values()))]
_WORD_VALUES = {(captions.NUMBER_WORDS[v] if name == 'syllables' else v): (name, i)
                for name, values in synthetic.TALKING_ATTRIBUTES.items() for i, v in enumerate(values)}


def _data_cfg(**fields):
  d = tiny.get_config().data
  d.attributes = 'independent'
  for key, value in fields.items():
    d[key] = value
  return d


@pytest.fixture(scope='module')
def data_cfg():
  return _data_cfg()


@pytest.fixture(scope='module')
def clips(data_cfg):
  return {seed: synthetic.talking_clip(seed, data_cfg) for seed in SEEDS}


def _read_words(text, vocabulary=None):
  """{attribute name: value index} of the attribute words (default: talking's) in `text`; each attribute named at
  most once."""
  vocabulary = _WORD_VALUES if vocabulary is None else vocabulary
  found = {}
  for word in re.findall(r'[a-z]+', text):
    if word in vocabulary:
      name, index = vocabulary[word]
      assert name not in found, (text, name)
      found[name] = index
  return found


def test_table_and_vocabulary():
  assert synthetic.TALKING_ATTRIBUTES is captions.TALKING_ATTRIBUTES
  assert list(synthetic.TALKING_ATTRIBUTES) == ['colour', 'shape', 'pitch', 'rate', 'syllables']
  assert len(_WORD_VALUES) == sum(len(v) for v in synthetic.TALKING_ATTRIBUTES.values())  # Words are unambiguous.
  assert synthetic.HELD_OUT_PAIRS == (('blue', 'high'), ('yellow', 'low'))
  for attributes in ALL_ATTRIBUTES:
    np.testing.assert_array_equal(captions.indices(captions.named(attributes)), attributes)
    label = synthetic.attribute_label(attributes)
    assert 0 <= label < 16
    assert synthetic.label_attributes(label) == {k: v for k, v in captions.named(attributes).items()
                                                 if k in ('colour', 'shape', 'pitch')}


def test_canonical_caption_form():
  attributes = captions.indices({'colour': 'blue', 'shape': 'round', 'pitch': 'high', 'rate': 'fast', 'syllables': 4})
  assert captions.caption(attributes, 0) == 'a blue round face, high voice, four syllables'


def test_every_caption_and_paraphrase_names_exactly_its_attributes():
  for attributes in ALL_ATTRIBUTES:
    texts = {captions.caption(attributes, seed) for seed in range(len(captions.TEMPLATES))}
    paraphrases = {captions.paraphrase(attributes, i) for i in range(len(captions.PARAPHRASES))}
    assert len(texts) == len(captions.TEMPLATES) >= 4
    assert len(paraphrases) == len(captions.PARAPHRASES) >= 3
    assert not texts & paraphrases
    for text in texts | paraphrases:
      assert text == text.lower()
      found = _read_words(text)
      assert found.items() <= dict(zip(synthetic.TALKING_ATTRIBUTES, attributes.tolist())).items(), text
      assert set(found) >= {'colour', 'shape', 'pitch', 'syllables'}, text
  omit_rate = [t for t in captions.TEMPLATES if '{rate}' not in t]
  assert 0 < len(omit_rate) < len(captions.TEMPLATES)
  assert all('{rate}' in p for p in captions.PARAPHRASES)
  # No paraphrase is a template with other attribute values either.
  outputs = {captions.describe(a, t) for a in ALL_ATTRIBUTES for t in captions.TEMPLATES}
  assert not outputs & {captions.paraphrase(a, i) for a in ALL_ATTRIBUTES for i in range(len(captions.PARAPHRASES))}


def test_clip_captions_are_deterministic_and_true(data_cfg, clips):
  templates = set()
  for seed, clip in clips.items():
    assert clip['caption'] == captions.caption(clip['attributes'], seed)
    assert _read_words(clip['caption']).items() <= dict(zip(synthetic.TALKING_ATTRIBUTES,
                                                            clip['attributes'].tolist())).items()
    templates.add(seed % len(captions.TEMPLATES))
  assert templates == set(range(len(captions.TEMPLATES)))
  again = synthetic.talking_clip(7, data_cfg)
  assert again['caption'] == clips[7]['caption']
  np.testing.assert_array_equal(again['attributes'], clips[7]['attributes'])
  np.testing.assert_array_equal(again['video'], clips[7]['video'])


def _pair(attributes):
  return (synthetic.TALKING_ATTRIBUTES['colour'][attributes[0]], synthetic.TALKING_ATTRIBUTES['pitch'][attributes[2]])


def test_held_out_pairs_only_in_novel_seeds(data_cfg, clips):
  for seed, clip in clips.items():
    assert _pair(clip['attributes']) not in synthetic.HELD_OUT_PAIRS, seed
    assert clip['label'] == synthetic.attribute_label(clip['attributes'])
    assert clip['attributes'].dtype == np.int32 and clip['attributes'].shape == (5,)
  for offset in ('validation', 'test'):
    for seed in range(builders.SPLIT_SEED_OFFSET[offset], builders.SPLIT_SEED_OFFSET[offset] + 40):
      assert _pair(synthetic.talking_clip(seed, data_cfg)['attributes']) not in synthetic.HELD_OUT_PAIRS
  novel = [_pair(synthetic.talking_clip(s, data_cfg)['attributes']) for s in synthetic.NOVEL_SEEDS[:40]]
  assert set(novel) == set(synthetic.HELD_OUT_PAIRS)


def test_attributes_vary_independently(clips):
  attrs = np.stack([c['attributes'] for c in clips.values()])
  labels = {c['label'] for c in clips.values()}
  allowed = {synthetic.attribute_label(a) for a in ALL_ATTRIBUTES if _pair(a) not in synthetic.HELD_OUT_PAIRS}
  assert labels == allowed and len(allowed) == 12
  # Every value of every attribute appears, and shape / rate / syllables appear with every (colour, pitch) pair.
  for i, values in enumerate(synthetic.TALKING_ATTRIBUTES.values()):
    assert set(attrs[:, i]) == set(range(len(values)))
  for i in (1, 3, 4):
    combos = {(_pair(a), a[i]) for a in attrs}
    assert len(combos) == 6 * len(list(synthetic.TALKING_ATTRIBUTES.values())[i])


def test_independent_mode_has_sixteen_classes(data_cfg):
  assert synthetic.num_classes('talking', data_cfg) == 16
  assert synthetic.num_classes('talking', tiny.get_config().data) == tiny.get_config().data.num_speakers


def _syllable_runs(wave, sample_rate):
  """Lengths (s) of the runs of 25 ms frames (40 Hz, the mel frame rate) above 10% of the clip's loudest."""
  hop = sample_rate // 40
  rms = audio.frame_rms(wave, hop)
  on = np.concatenate([[False], rms > 0.1 * rms.max(), [False]])
  edges = np.flatnonzero(np.diff(on.astype(int)))
  return (edges[1::2] - edges[::2]) * hop / sample_rate


def test_syllable_count_and_rate_are_heard(data_cfg, clips):
  lengths = {0: [], 1: []}
  for seed, clip in clips.items():
    runs = _syllable_runs(clip['audio'], data_cfg.sample_rate)
    assert len(runs) == synthetic.TALKING_ATTRIBUTES['syllables'][clip['attributes'][4]], seed
    lengths[int(clip['attributes'][3])] += list(runs)
  slow, fast = np.array(lengths[0]), np.array(lengths[1])
  assert slow.min() > fast.max(), (slow.min(), fast.max())


def test_pitch_is_heard(data_cfg, clips):
  for seed in list(SEEDS)[:16]:
    clip = clips[seed]
    f0 = librosa.yin(clip['audio'], fmin=60, fmax=500, sr=data_cfg.sample_rate, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=clip['audio'], frame_length=1024, hop_length=256)[0][:len(f0)]
    median = np.median(f0[rms > 0.5 * rms.max()])
    if synthetic.TALKING_ATTRIBUTES['pitch'][clip['attributes'][2]] == 'low':
      assert 90 < median < 140, (seed, median)
    else:
      assert 180 < median < 270, (seed, median)


def test_colour_and_shape_are_seen(data_cfg, clips):
  """The face's hue is nearest its colour's, and a long face is taller than wide, a round one as tall as wide."""
  size = data_cfg.resolution
  hues = {'red': 0.0, 'green': 0.33, 'blue': 0.62, 'yellow': 0.15}
  for seed, clip in list(clips.items())[:40]:
    values = captions.named(clip['attributes'])
    frame = clip['video'][0].astype(np.float32) / 255.0
    centre = frame[size // 2:size // 2 + 2, size // 2 - 2:size // 2 + 2].reshape(-1, 3).mean(0)
    hue, saturation, _ = colorsys.rgb_to_hsv(*centre)
    assert saturation > 0.5, (seed, centre)
    nearest = min(hues, key=lambda k: min(abs(hue - hues[k]), 1 - abs(hue - hues[k])))
    assert nearest == values['colour'], (seed, values, hue)
    # Face height / width from the face-coloured pixels of the first frame.
    mask = np.abs(frame - centre).max(-1) < 0.12
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    aspect = (rows.max() - rows.min() + 1) / (cols.max() - cols.min() + 1)
    assert (aspect > 1.35) if values['shape'] == 'long' else (0.8 < aspect < 1.2), (seed, values, aspect)


def test_legacy_mode_has_no_attributes():
  clip = synthetic.talking_clip(0, tiny.get_config().data)
  assert 'attributes' not in clip and 'caption' not in clip


def test_too_short_clip_is_a_config_error():
  with pytest.raises(config_lib.ConfigError, match='clip_seconds'):
    synthetic.talking_clip(0, _data_cfg(clip_seconds=1.0))
  with pytest.raises(config_lib.ConfigError, match='data.attributes'):
    synthetic.talking_clip(0, _data_cfg(attributes='both'))


def test_mouth_region_covers_the_mouth_box(data_cfg, clips):
  for clip in list(clips.values())[:24]:
    y0, x0, y1, x1 = synthetic.talking_mouth_region(clip['label'], data_cfg)
    b = clip['mouth_box']
    assert y0 <= b[0] and x0 <= b[1] and b[2] <= y1 and b[3] <= x1, (b, (y0, x0, y1, x1))


def test_built_dataset_has_a_novel_split(tmp_path):
  config = tiny.get_config()
  config.data.update(dict(data_dir=str(tmp_path), attributes='independent', num_train=8, num_validation=4,
                          num_test=4, num_test_novel=6))
  legacy_name = builders.config_name(tiny.get_config().data, 'talking')
  assert builders.config_name(config.data, 'talking') != legacy_name
  changed = config.data.copy_and_resolve_references()
  changed.num_test_novel = 5
  assert builders.config_name(changed, 'talking') != builders.config_name(config.data, 'talking')
  with pytest.raises(config_lib.ConfigError, match='data.attributes'):
    builders.check_labels(config)  # model.num_classes = 8 < 16.
  config.model.num_classes = 16
  builders.check_labels(config)
  assert builders.num_classes(config) == 16
  pairs = {}
  for split in builders.SPLITS + (builders.NOVEL_SPLIT,):
    clips = builders.load_clips(config, split, 100)
    assert len(clips) == config.data[f'num_{split}']
    pairs[split] = {_pair(c['attributes']) for c in clips}
    for clip in clips:
      assert clip['label'] == synthetic.attribute_label(clip['attributes'])
      assert _read_words(clip['caption']).items() <= dict(zip(synthetic.TALKING_ATTRIBUTES,
                                                              clip['attributes'].tolist())).items()
  held_out = set(synthetic.HELD_OUT_PAIRS)
  assert pairs[builders.NOVEL_SPLIT] <= held_out
  assert not (pairs['train'] | pairs['validation'] | pairs['test']) & held_out
  # The stored clip is the generator's for its key (seed).
  example = builders.load_source(config, builders.NOVEL_SPLIT)[0]
  clip = synthetic.talking_clip(int(example['key']), config.data)
  np.testing.assert_array_equal(example['video'], clip['video'])
  np.testing.assert_array_equal(example['attributes'], clip['attributes'])
  assert example['caption'].decode() == clip['caption']


# ----------------------------------------------------------------------------- impacts

IMPACTS_ALL = [np.array(v, np.int32) for v in itertools.product(
    *(range(len(values)) for values in synthetic.IMPACTS_ATTRIBUTES.values()))]
_IMPACTS_WORDS = {(captions.NUMBER_WORDS[v] if name == 'balls' else v): (name, i)
                  for name, values in synthetic.IMPACTS_ATTRIBUTES.items() for i, v in enumerate(values)}


def _impacts_words(text):
  return _read_words(text, _IMPACTS_WORDS)


def _impacts_pair(attributes):
  return (synthetic.IMPACTS_ATTRIBUTES['material'][attributes[0]], synthetic.IMPACTS_ATTRIBUTES['balls'][attributes[1]])


@pytest.fixture(scope='module')
def impacts_clips(data_cfg):
  return {seed: synthetic.impacts_clip(seed, data_cfg) for seed in SEEDS}


def test_impacts_table_and_vocabulary():
  table = synthetic.IMPACTS_ATTRIBUTES
  assert table is captions.IMPACTS_ATTRIBUTES and captions.ATTRIBUTES['impacts'] is table
  assert list(table) == ['material', 'balls', 'rhythm']
  assert table['material'] == tuple(m.name for m in synthetic.MATERIALS[:4])
  assert [captions.NUMBER_WORDS[b] for b in table['balls']] == ['one', 'two', 'three']
  assert len(_IMPACTS_WORDS) == sum(len(v) for v in table.values())  # Words are unambiguous.
  assert synthetic.IMPACTS_HELD_OUT_PAIRS == (('glass', 3), ('rubber', 1))
  for attributes in IMPACTS_ALL:
    np.testing.assert_array_equal(captions.indices(captions.named(attributes, 'impacts'), 'impacts'), attributes)
  with pytest.raises(ValueError, match='3 impacts attribute indices'):
    captions.caption(ALL_ATTRIBUTES[0], 0, 'impacts')
  with pytest.raises(ValueError, match='5 talking attribute indices'):
    captions.caption(IMPACTS_ALL[0], 0)  # The default dataset is still `talking`.
  with pytest.raises(ValueError, match='dataset'):
    captions.caption(IMPACTS_ALL[0], 0, 'rain')


def test_impacts_canonical_caption_form():
  def text(material, balls, rhythm, seed=0):
    return captions.caption(captions.indices({'material': material, 'balls': balls, 'rhythm': rhythm}, 'impacts'),
                            seed, dataset='impacts')
  assert text('glass', 3, 'uneven') == 'three glass balls, uneven rhythm'
  assert text('wood', 1, 'even') == 'one wood ball'
  assert text('metal', 2, 'uneven', seed=3) == 'two metal balls hitting the floor'
  assert text('rubber', 3, 'even', seed=3) == 'an even rhythm of three rubber balls hitting the floor'


def test_impacts_captions_and_paraphrases_name_exactly_their_attributes():
  texts_of_all, paraphrases_of_all = set(), set()
  for attributes in IMPACTS_ALL:
    truth = dict(zip(synthetic.IMPACTS_ATTRIBUTES, attributes.tolist()))
    balls = captions.named(attributes, 'impacts')['balls']
    texts = {captions.caption(attributes, seed, 'impacts') for seed in range(len(captions.IMPACTS_TEMPLATES))}
    paraphrases = {captions.paraphrase(attributes, i, dataset='impacts')
                   for i in range(len(captions.IMPACTS_PARAPHRASES))}
    assert len(texts) == len(captions.IMPACTS_TEMPLATES) >= 4
    assert len(paraphrases) == len(captions.IMPACTS_PARAPHRASES) >= 2
    # The rhythm is named exactly when it can be heard and seen (three contacts).
    named_set = {'material', 'balls'} | ({'rhythm'} if captions.rhythm_observable(attributes) else set())
    assert captions.rhythm_observable(attributes) == (balls == 3)
    for text in texts | paraphrases:
      assert text == text.lower() and not set(text) & set('[]{}'), text
      found = _impacts_words(text)
      assert found.items() <= truth.items() and set(found) == named_set, text
      assert 'one balls' not in text and not re.search(r'\b(two|three) ball\b', text), text
    texts_of_all |= texts
    paraphrases_of_all |= paraphrases
  assert not texts_of_all & paraphrases_of_all


def test_impacts_clips_are_deterministic_and_true(data_cfg, impacts_clips):
  templates = set()
  for seed, clip in impacts_clips.items():
    attributes = clip['attributes']
    assert attributes.dtype == np.int32 and attributes.shape == (3,)
    assert clip['label'] == attributes[0]
    assert clip['caption'] == captions.caption(attributes, seed, 'impacts')
    assert _impacts_words(clip['caption']).items() <= dict(zip(synthetic.IMPACTS_ATTRIBUTES,
                                                                attributes.tolist())).items()
    templates.add(seed % len(captions.IMPACTS_TEMPLATES))
  assert templates == set(range(len(captions.IMPACTS_TEMPLATES)))
  again = synthetic.impacts_clip(7, data_cfg)
  assert set(again) == {'video', 'audio', 'label', 'impact', 'attributes', 'caption'}
  for key, value in again.items():
    np.testing.assert_array_equal(value, impacts_clips[7][key])
  assert synthetic.num_classes('impacts', data_cfg) == data_cfg.num_materials == 4


def test_impacts_held_out_pairs_only_in_novel_seeds(data_cfg, impacts_clips):
  held_out = set(synthetic.IMPACTS_HELD_OUT_PAIRS)
  pairs = {_impacts_pair(c['attributes']) for c in impacts_clips.values()}
  for offset in ('validation', 'test'):
    first = builders.SPLIT_SEED_OFFSET[offset]
    pairs |= {_impacts_pair(synthetic.impacts_clip(s, data_cfg)['attributes']) for s in range(first, first + 40)}
  assert not pairs & held_out and len(pairs) == 4 * 3 - 2
  novel = [_impacts_pair(synthetic.impacts_clip(s, data_cfg)['attributes']) for s in synthetic.NOVEL_SEEDS[:200]]
  assert set(novel) == held_out


def test_impacts_attributes_vary_independently(impacts_clips):
  attrs = np.stack([c['attributes'] for c in impacts_clips.values()])
  for i, values in enumerate(synthetic.IMPACTS_ATTRIBUTES.values()):
    assert set(attrs[:, i]) == set(range(len(values)))
  assert len({(_impacts_pair(a), a[2]) for a in attrs}) == 10 * 2  # Both rhythms with every allowed pair.


def _contacts(clip):
  return np.flatnonzero(clip['impact'])


def test_impacts_count_and_rhythm_are_in_the_ground_truth(impacts_clips):
  """One contact per ball; with three balls an even rhythm has equal gaps between contacts, an uneven one a gap
  >= synthetic.UNEVEN_RATIO x the other."""
  ratios = {'even': [], 'uneven': []}
  for seed, clip in impacts_clips.items():
    values = captions.named(clip['attributes'], 'impacts')
    hits = _contacts(clip)
    assert len(hits) == values['balls'], (seed, values, hits)
    if values['balls'] == 3:
      gaps = np.diff(hits)
      ratios[values['rhythm']].append(gaps.max() / gaps.min())
  assert len(ratios['even']) >= 10 and len(ratios['uneven']) >= 10
  assert max(ratios['even']) == 1.0 and min(ratios['uneven']) >= synthetic.UNEVEN_RATIO


@pytest.mark.parametrize('fps,seconds', [(10, 2.0), (16, 2.0), (16, 4.0)])
def test_impacts_schedules_keep_the_physics(fps, seconds):
  """Every contact of every (balls, rhythm) lies in [3, T - 2], >= 5 frames after the previous one; the frame after
  a contact is still and the motion grows into it (as in the original generator; at 32 px and 25 fps the pixel
  change of both generators is not always monotone, so the configs' frame rates are the ones checked)."""
  cfg = _data_cfg(fps=fps, clip_seconds=seconds)
  frames = config_lib.num_frames(cfg)
  for seed in range(24):
    clip = synthetic.impacts_clip(seed, cfg)
    hits = _contacts(clip)
    assert len(hits) == synthetic.IMPACTS_ATTRIBUTES['balls'][clip['attributes'][1]]
    assert hits[0] >= 3 and hits[-1] <= frames - 2 and np.all(np.diff(hits) >= 5), (seed, hits)
    video = clip['video'].astype(np.int32)
    change = np.abs(np.diff(video, axis=0)).sum(axis=(1, 2, 3))
    for f in hits:
      np.testing.assert_array_equal(video[f + 1], video[f])
      assert change[f - 1] > change[f - 2] > 0, (seed, f, change)


def test_impacts_config_errors():
  with pytest.raises(config_lib.ConfigError, match='clip_seconds=1.5'):
    synthetic.impacts_clip(0, _data_cfg(clip_seconds=1.5))
  with pytest.raises(config_lib.ConfigError, match='num_materials=3'):
    synthetic.impacts_clip(0, _data_cfg(num_materials=3))
  synthetic.check_clip_fits(_data_cfg(), 'impacts')
  with pytest.raises(config_lib.ConfigError, match='num_materials'):
    synthetic.check_clip_fits(_data_cfg(num_materials=6), 'impacts')


def test_built_impacts_dataset_has_a_novel_split(tmp_path):
  config = tiny.get_config()
  config.data.update(dict(data_dir=str(tmp_path), dataset='impacts', attributes='independent', num_train=8,
                          num_validation=4, num_test=4, num_test_novel=6))
  default = tiny.get_config().data
  assert 'attributes' not in builders.dataset_fields(default, 'impacts')  # Default impacts names are unchanged.
  assert builders.config_name(config.data, 'impacts') != builders.config_name(default, 'impacts')
  assert builders.num_classes(config) == 4
  builders.check_labels(config)
  pairs = {}
  for split in builders.SPLITS + (builders.NOVEL_SPLIT,):
    clips = builders.load_clips(config, split, 100)
    assert len(clips) == config.data[f'num_{split}']
    pairs[split] = {_impacts_pair(c['attributes']) for c in clips}
    for clip in clips:
      assert clip['attributes'].shape == (3,) and clip['label'] == clip['attributes'][0]
      found = _impacts_words(clip['caption'])
      assert found.items() <= dict(zip(synthetic.IMPACTS_ATTRIBUTES, clip['attributes'].tolist())).items()
      assert {'material', 'balls'} <= set(found), clip['caption']
  held_out = set(synthetic.IMPACTS_HELD_OUT_PAIRS)
  assert pairs[builders.NOVEL_SPLIT] <= held_out
  assert not (pairs['train'] | pairs['validation'] | pairs['test']) & held_out
  example = builders.load_source(config, builders.NOVEL_SPLIT)[0]
  clip = synthetic.impacts_clip(int(example['key']), config.data)
  for key in ('video', 'impact', 'attributes'):
    np.testing.assert_array_equal(example[key], clip[key])
  assert example['caption'].decode() == clip['caption']
