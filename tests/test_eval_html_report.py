"""HTML report: every file the page names exists and decodes, and a real browser loads its images and videos."""

import functools
import html.parser
import os

import av
import numpy as np
import pytest
from matplotlib import image as mpl_image

import browser
from avdiff.data import synthetic
from avdiff.eval import html_report
from configs import tiny

NUM_CLIPS = 3


def _data_cfg():
  cfg = tiny.get_config().data
  cfg.resolution = 16
  return cfg


def _result() -> dict:
  stat = lambda mean: {'mean': mean, 'ci95': [mean - 0.1, mean + 0.1], 'n': NUM_CLIPS}
  return {
      'outcomes': {
          'verdict': [
              {'name': 'a2v_r', 'value': 0.85, 'op': '>=', 'threshold': 0.8, 'met': True,
               'what': 'generated mouth vs <conditioning> audio & envelope'},
              {'name': '|a2v_shuffled_r|', 'value': 0.4, 'op': '<=', 'threshold': 0.15, 'met': False,
               'what': 'another clip\'s audio'},
          ],
          'measures': {'ground_truth_r': {'mean': 0.97, 'std': 0.01, 'n': NUM_CLIPS, 'undecided': 0},
                       'a2v_offset_within_1': 0.67},
      },
      'conditions': {
          'ground_truth': {'metrics': {'av_align': stat(0.5), 'lse_c': stat(7.0)}, 'num_scored': NUM_CLIPS},
          'model_audio_to_video': {'metrics': {'av_align': stat(0.3)}, 'num_scored': NUM_CLIPS},
          'model_joint': {'unavailable': 'not sampled'},
      },
      'protocol': {'dataset': 'talking', 'fps': 10, 'crop_box': [0, 0, 1, 1], 'sync_expert_workdir': None},
  }


@functools.lru_cache(maxsize=1)
def _clips() -> dict:
  cfg = _data_cfg()
  truth = [synthetic.talking_clip(seed, cfg) for seed in range(NUM_CLIPS)]
  # A stand-in for generated video: the held-out frames three frames late.
  late = [dict(c, video=np.roll(c['video'], 3, axis=0)) for c in truth]
  return {'ground_truth': truth, 'model_audio_to_video': late}


class _Sources(html.parser.HTMLParser):
  """Collects (tag, src) of every <img>, <video> and <source> and every href of a page."""

  def __init__(self):
    super().__init__()
    self.refs = []

  def handle_starttag(self, tag, attrs):
    for key, value in attrs:
      if key in ('src', 'href'):
        self.refs.append((tag, value))


def _write(tmp_path, clips=None, result=None) -> tuple[str, list]:
  index = html_report.write_report(str(tmp_path / 'report'), _result() if result is None else result,
                                   _clips() if clips is None else clips, _data_cfg(), title='tiny <report> & co')
  parser = _Sources()
  with open(index, encoding='utf-8') as f:
    parser.feed(f.read())
  return index, parser.refs


def test_files_named_by_the_page_exist_and_decode(tmp_path):
  index, refs = _write(tmp_path)
  root = os.path.dirname(index)
  assert index == str(tmp_path / 'report' / 'index.html')
  page = open(index, encoding='utf-8').read()
  assert '<title>tiny &lt;report&gt; &amp; co</title>' in page
  assert '&lt;conditioning&gt; audio &amp; envelope' in page
  assert 'not met' in page and 'unavailable: not sampled' in page
  assert '<script' not in page and 'http' not in page  # Self-contained: no scripts, no external resources.

  images = [src for tag, src in refs if tag == 'img']
  videos = [src for tag, src in refs if tag == 'video']
  assert [tag for tag, _ in refs if tag not in ('img', 'video')] == []
  assert images == ['contact_model_audio_to_video.png']
  assert len(videos) == 2 * NUM_CLIPS
  assert videos[:2] == ['clips/ground_truth_0.mp4', 'clips/model_audio_to_video_0.mp4']  # Ground truth first.

  for src in images:
    pixels = mpl_image.imread(os.path.join(root, src))
    # Three clips, each a ground-truth row and a generated row of 8 frames + a spectrogram.
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600, pixels.shape
    assert pixels[..., :3].std() > 0.05  # Not a blank canvas.

  frames = len(_clips()['ground_truth'][0]['video'])
  for src in videos:
    with av.open(os.path.join(root, src)) as container:
      assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
      decoded = list(container.decode(video=0))
    assert len(decoded) == frames
    assert (decoded[0].width, decoded[0].height) == (16, 16)  # Files keep the clip size; the page scales up.


def test_ground_truth_alone_makes_a_page(tmp_path):
  truth = _clips()['ground_truth'][:2]
  index, refs = _write(tmp_path, clips={'ground_truth': truth}, result={})
  assert [src for tag, src in refs] == ['contact_ground_truth.png', 'clips/ground_truth_0.mp4',
                                        'clips/ground_truth_1.mp4']
  root = os.path.dirname(index)
  assert all(os.path.getsize(os.path.join(root, src)) > 1000 for _, src in refs)
  assert 'Verdict' not in open(index, encoding='utf-8').read()


def test_page_loads_in_headless_chromium(tmp_path):
  index, refs = _write(tmp_path)
  seen = browser.load(os.path.dirname(index), tmp_path)
  assert seen['title'] == 'tiny <report> & co'
  assert [im['src'] for im in seen['images']] == [src for tag, src in refs if tag == 'img']
  assert [v['src'] for v in seen['videos']] == [src for tag, src in refs if tag == 'video']
  for im in seen['images']:
    assert 'error' not in im and im['width'] > 0, im
  seconds = len(_clips()['ground_truth'][0]['video']) / _data_cfg().fps
  for v in seen['videos']:
    assert 'error' not in v, v
    assert v['duration'] == pytest.approx(seconds, abs=0.15), v  # JSON has no Infinity or NaN: those read null.
    assert (v['width'], v['height']) == (16, 16), v
