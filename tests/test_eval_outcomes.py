"""Outcome measures on `talking` clips: the readers agree with the generator's ground truth, and the measures
separate a model that follows the audio from one that does not."""

import numpy as np
import pytest

from avdiff.data import synthetic
from avdiff.eval import outcomes
from configs import tiny


@pytest.fixture(scope='module')
def data_cfg():
  return tiny.get_config().data


def _clips(data_cfg, seeds):
  return [synthetic.talking_clip(s, data_cfg) for s in seeds]


@pytest.mark.parametrize('resolution', [16, 32])
def test_readers_follow_the_ground_truth_mouth(data_cfg, resolution):
  d = data_cfg.copy_and_resolve_references()
  d.resolution = resolution
  v = outcomes.reader_validation(_clips(d, range(100, 140)), d)
  assert v['mouth_reader_r'] >= 0.95 and v['envelope_reader_r'] >= 0.95, v


def test_measures_separate_synced_from_unsynced_generation(data_cfg):
  held_out = _clips(data_cfg, range(200, 224))
  # A perfect audio_to_video model redraws the held-out clip; a model that ignores the audio draws another clip's
  # mouth (same speaker geometry is not needed: the mouth is read in the speaker's region).
  perfect = {'audio_to_video': held_out, 'joint': held_out, 'video_to_audio': held_out}
  rolled = [dict(c, video=held_out[(i + 1) % len(held_out)]['video'], label=held_out[(i + 1) % len(held_out)]['label'])
            for i, c in enumerate(held_out)]
  deaf = {'audio_to_video': rolled}
  classifier = outcomes.SpeakerClassifier.fit(_clips(data_cfg, range(1000, 1128)))
  good = outcomes.measure(held_out, perfect, data_cfg, classifier, max_offset=6)
  bad = outcomes.measure(held_out, deaf, data_cfg, classifier, max_offset=6)
  assert good['a2v_r']['mean'] >= 0.9 and abs(good['a2v_shuffled_r']['mean']) <= 0.15, good
  assert good['a2v_offset_within_1'] >= 0.8 and good['a2v_mouth_offset_within_1'] >= 0.8 and good['joint_r']['mean'] >= 0.9 and good['v2a_r']['mean'] >= 0.9
  assert good['ground_truth_speaker_accuracy'] >= 0.95 and good['joint_speaker_accuracy'] >= 0.95, good
  assert abs(bad['a2v_r']['mean']) <= 0.15, bad
  rows = {r['name']: r for r in outcomes.verdict(good)}
  assert all(r['met'] for r in rows.values()), rows
  bad_rows = {r['name']: r for r in outcomes.verdict(bad)}
  assert not bad_rows['a2v_r']['met'] and '|a2v_shuffled_r|' in bad_rows
  assert 'a2v_r' in outcomes.verdict_markdown(outcomes.verdict(bad))


def test_constant_trajectories_are_undecided_not_zero(data_cfg):
  clip = synthetic.talking_clip(7, data_cfg)
  still = dict(clip, video=np.repeat(clip['video'][:1], len(clip['video']), axis=0))
  assert np.isnan(outcomes.sync_r(still, data_cfg))
  m = outcomes.measure([clip, clip], {'audio_to_video': [still, still]}, data_cfg)
  assert m['a2v_r']['undecided'] == 2 and m['a2v_r']['n'] == 0


@pytest.mark.parametrize('k', [-3, 0, 2])
def test_mouth_offset_recovers_known_shifts(data_cfg, k):
  from avdiff.eval import shift as shift_lib
  for clip in _clips(data_cfg, range(300, 308)):
    audio = shift_lib.shift_audio(clip['audio'], k, data_cfg.fps, data_cfg.sample_rate)
    assert outcomes.mouth_level_offset(clip, data_cfg, 6, audio).offset_frames == k
    assert outcomes.energy_change_offset(clip, data_cfg, 6, audio).offset_frames == k
