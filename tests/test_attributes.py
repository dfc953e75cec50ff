"""Attribute readers of `talking` clips (data.attributes='independent') against the generator's ground truth, on each
clip's own waveform and on the Griffin-Lim resynthesis of its log-mel (the path every generated clip's audio takes).

Measured (48 clips: seeds 0-39 and 8 `test_novel` seeds, so every (colour, pitch) pair occurs; tiny data config):
every attribute agrees on 48/48 clips with both audios. Feature margins (128 clips) are in avdiff/eval/attributes.py.
The test asks for 0.95, i.e. at most 2 of 48 clips wrong. Run with -s to see the numbers.
"""

import numpy as np
import pytest

from avdiff.data import audio, captions, synthetic
from avdiff.eval import attributes
from configs import tiny

SEEDS = list(range(40)) + list(range(synthetic.NOVEL_SEEDS.start, synthetic.NOVEL_SEEDS.start + 8))
MIN_AGREEMENT = 0.95


def _data_cfg():
  cfg = tiny.get_config().data
  cfg.attributes = 'independent'
  return cfg


@pytest.fixture(scope='module')
def readings():
  """(truth, read on the clip's waveform, read on the Griffin-Lim resynthesis): one {name: value} per clip each."""
  cfg = _data_cfg()
  truth, own, resynth = [], [], []
  for seed in SEEDS:
    clip = synthetic.talking_clip(seed, cfg)
    truth.append(captions.named(clip['attributes']))
    own.append(attributes.read_attributes(clip, cfg))
    wave = audio.mel_to_waveform(audio.log_mel(clip['audio'], cfg), cfg)
    resynth.append(attributes.read_attributes({'video': clip['video'], 'audio': wave}, cfg))
  return truth, own, resynth


def test_names_and_values_match_the_generator(readings):
  truth, own, _ = readings
  assert attributes.NAMES == tuple(synthetic.TALKING_ATTRIBUTES)
  assert set(attributes.HUES) == set(synthetic.TALKING_ATTRIBUTES['colour'])
  assert attributes.SYLLABLE_RANGE == (min(synthetic.TALKING_ATTRIBUTES['syllables']),
                                       max(synthetic.TALKING_ATTRIBUTES['syllables']))
  for name, values in synthetic.TALKING_ATTRIBUTES.items():
    assert {t[name] for t in truth} == set(values), f'the sample misses a value of {name}'
    assert {r[name] for r in own} <= set(values)


@pytest.mark.parametrize('audio_path', ['own', 'griffin_lim'])
def test_readers_agree_with_ground_truth(readings, audio_path):
  truth, own, resynth = readings
  read = own if audio_path == 'own' else resynth
  scores = attributes.agreement(read, truth)
  print(f'\n{audio_path}: ' + ', '.join(f'{n} {v:.3f}' for n, v in scores.items()))
  assert set(scores) == set(attributes.NAMES)
  for name, score in scores.items():
    wrong = [(t[name], r[name]) for r, t in zip(read, truth) if r[name] != t[name]]
    assert score >= MIN_AGREEMENT, f'{name}: {score:.3f} on {audio_path} audio; (truth, read) of misses: {wrong}'


def test_reads_the_mel_when_there_is_no_waveform():
  cfg = _data_cfg()
  clip = synthetic.talking_clip(3, cfg)
  mel_only = {'video': clip['video'], 'audio_mel': audio.log_mel(clip['audio'], cfg)}
  assert attributes.read_attributes(mel_only, cfg) == attributes.read_attributes(clip, cfg)
  with pytest.raises(ValueError, match='neither'):
    attributes.read_attributes({'video': clip['video']}, cfg)


def test_silent_clip_and_blank_frames_read_none():
  cfg = _data_cfg()
  clip = synthetic.talking_clip(5, cfg)
  silent = attributes.read_attributes({'video': clip['video'], 'audio': np.zeros_like(clip['audio'])}, cfg)
  assert silent['pitch'] is None and silent['rate'] is None and silent['syllables'] is None
  assert silent['colour'] is not None and silent['shape'] is not None
  # A silent mel stays silent through Griffin-Lim.
  silent_mel = audio.log_mel(np.zeros_like(clip['audio']), cfg)
  assert attributes.read_pitch(audio.log_mel(audio.mel_to_waveform(silent_mel, cfg), cfg), cfg) is None
  for frames in (np.zeros_like(clip['video']), np.full_like(clip['video'], 128)):  # Black, grey.
    blank = attributes.read_attributes({'video': frames, 'audio': clip['audio']}, cfg)
    assert blank['colour'] is None and blank['shape'] is None
    assert blank['pitch'] is not None
  assert attributes.read_colour(np.zeros((32, 32, 3), np.uint8)) is None  # One frame [H, W, 3].
  with pytest.raises(ValueError, match='uint8'):
    attributes.read_colour(clip['video'].astype(np.float32) / 255)
  truth = [captions.named(clip['attributes'])]
  assert attributes.agreement([silent], truth)['pitch'] == 0.0  # None counts as a miss.


def _bursts_mel(cfg, runs_s):
  """Normalized log-mel [T_a, n_mels]: silence except 0 dB-ish noise bands over the (onset, duration) runs (s)."""
  frames = int(cfg.clip_seconds * cfg.fps * cfg.mel_frames_per_video_frame)
  rate = cfg.fps * cfg.mel_frames_per_video_frame
  mel = np.full((frames, int(cfg.n_mels)), -1.0, np.float32)
  for onset, duration in runs_s:
    mel[int(round(onset * rate)):int(round((onset + duration) * rate))] = 0.5
  return mel


def test_syllable_count_is_clamped_and_short_gaps_merge():
  cfg = _data_cfg()
  one = _bursts_mel(cfg, [(0.5, 0.3)])
  assert len(attributes.voiced_runs(one, cfg)) == 1 and attributes.read_syllables(one, cfg) == 2
  seven = _bursts_mel(cfg, [(0.1 + 0.25 * i, 0.125) for i in range(7)])
  assert len(attributes.voiced_runs(seven, cfg)) == 7 and attributes.read_syllables(seven, cfg) == 5
  assert attributes.read_rate(seven, cfg) == 'fast'
  # A 0.025 s dip inside a syllable is one run, a 0.15 s gap two.
  assert len(attributes.voiced_runs(_bursts_mel(cfg, [(0.2, 0.3), (0.525, 0.3)]), cfg)) == 1
  assert len(attributes.voiced_runs(_bursts_mel(cfg, [(0.2, 0.3), (0.65, 0.3)]), cfg)) == 2
  assert attributes.read_rate(_bursts_mel(cfg, [(0.2, 0.3), (0.65, 0.3)]), cfg) == 'slow'


def test_agreement_counts_matches_per_name():
  truth = [{'colour': 'red', 'syllables': 3}, {'colour': 'blue', 'syllables': 4}]
  read = [{'colour': 'red', 'syllables': 4}, {'colour': 'blue', 'syllables': None}]
  assert attributes.agreement(read, truth) == {'colour': 1.0, 'syllables': 0.0}
  assert attributes.agreement(read, truth, names=['colour']) == {'colour': 1.0}
  with pytest.raises(ValueError):
    attributes.agreement(read[:1], truth)
