"""Loads a page in headless Chromium and reports what the browser saw: each image's size and each video's duration.

`load(root, tmp_path)` serves folder `root` over http, opens root/index.html in a frame of a checker page, waits
for every image's `load` and every video's `loadedmetadata` (or an error, or 20 s) and returns
{'title', 'images': [{'src', 'width', 'height'} | {'src', 'error'}], 'videos': [{'src', 'duration', 'width',
'height'} | ...]}. When Chromium is missing or cannot run, the calling test is skipped with the reason (also as a
warning, so CI logs say why).
"""

import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import threading
import warnings

import pytest

CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync')

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


def load(root: str, tmp_path) -> dict:
  chromium = _chromium()
  with open(f'{root}/check.html', 'w', encoding='utf-8') as f:
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
  return seen
