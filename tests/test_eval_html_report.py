"""HTML report: every file the page names exists and decodes, and a real browser loads its images and videos."""

import functools
import html
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import warnings

import av
import numpy as np
import pytest
from matplotlib import image as mpl_image

from avdiff.data import synthetic
from avdiff.eval import html_report
from configs import tiny

NUM_CLIPS = 3
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync')


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


# ----------------------------------------------------------------------------- in a browser

# Loads index.html in a frame, waits for each image's `load` and each video's `loadedmetadata` (or an error or
# 20 s), then writes what it saw into #result for `chromium --dump-dom` to print. Test-only: the page has no script.
_CHECKER = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>check</title></head><body>
<pre id="result">pending</pre>
<iframe id="page" src="index.html" width="1200" height="1600"></iframe>
<script>
function wait(el, ready, onReady, failed) {
  return new Promise(resolve => {
    const timer = setTimeout(() => resolve({src: el.getAttribute('src'), error: 'timeout'}), 20000);
    const finish = r => { clearTimeout(timer); resolve(Object.assign({src: el.getAttribute('src')}, r)); };
    el.addEventListener('error', () => finish({error: failed()}));
    if (ready()) finish(onReady()); else el.addEventListener(el.tagName == 'IMG' ? 'load' : 'loadedmetadata',
                                                             () => finish(onReady()));
  });
}
document.getElementById('page').addEventListener('load', async () => {
  const out = document.getElementById('result');
  try {
    const doc = document.getElementById('page').contentDocument;
    const images = Array.from(doc.images).map(img => wait(img, () => img.complete && img.naturalWidth > 0,
        () => ({width: img.naturalWidth, height: img.naturalHeight}), () => 'image failed to load'));
    const videos = Array.from(doc.querySelectorAll('video')).map(v => wait(v, () => v.readyState >= 1,
        () => ({duration: v.duration, width: v.videoWidth, height: v.videoHeight}),
        () => 'media error ' + (v.error ? v.error.code + ' ' + v.error.message : '')));
    out.textContent = JSON.stringify({title: doc.title, images: await Promise.all(images),
                                      videos: await Promise.all(videos)});
  } catch (e) {
    out.textContent = JSON.stringify({exception: String(e)});
  }
});
</script></body></html>
"""


def _skip(reason: str):
  # pytest lists skip reasons only with -rs; a warning shows in the default summary, so CI logs say why.
  warnings.warn(f'browser check skipped: {reason}', pytest.PytestWarning)
  pytest.skip(reason)


def _chromium() -> str:
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  _skip('no chromium on PATH (apt-get install chromium)')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):
    pass


def test_page_loads_in_headless_chromium(tmp_path):
  chromium = _chromium()
  index, refs = _write(tmp_path)
  root = os.path.dirname(index)
  with open(os.path.join(root, 'check.html'), 'w', encoding='utf-8') as f:
    f.write(_CHECKER)
  # Over http rather than file://, where Chromium gives each file its own origin and the checker could not look
  # into the frame.
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_QuietHandler, directory=root))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    url = f'http://127.0.0.1:{server.server_address[1]}/check.html'
    cmd = [chromium, *CHROMIUM_FLAGS, f'--user-data-dir={tmp_path / "profile"}', '--dump-dom',
           '--virtual-time-budget=30000', url]
    try:
      run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
      _skip(f'chromium did not run: {e}')
  finally:
    server.shutdown()
    server.server_close()
  found = re.search(r'<pre id="result">(.*?)</pre>', run.stdout, re.S)
  if run.returncode != 0 or not found:
    _skip(f'chromium could not start or render (exit {run.returncode}): {run.stderr[-500:]}')
  text = html.unescape(found.group(1))
  assert text != 'pending', 'the page did not finish loading within the virtual time budget'
  seen = json.loads(text)
  assert 'exception' not in seen, seen
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
