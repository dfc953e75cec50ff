"""Test set-up: 8 fake CPU devices, so sharding tests run on a laptop or CI box.

The device count must be set before JAX initializes its backend, hence at import time here.
"""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
_flag = '--xla_force_host_platform_device_count=8'
if _flag not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()

import itertools

import pytest

_bucket_numbers = itertools.count()


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """A fake-gcs-server for the whole session; its environment is set in os.environ (so subprocesses inherit it)."""
  from tests import gcs_emulator as gcs_emulator_lib  # only tests of gs:// paths need the wheel
  emulator = gcs_emulator_lib.GcsEmulator(str(tmp_path_factory.mktemp('gcs') / 'root'))
  emulator.start()
  saved = {k: os.environ.get(k) for k in emulator.environment()}
  gcs_emulator_lib.use_in_process(emulator)
  yield emulator
  emulator.stop()
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value


@pytest.fixture
def gcs_bucket(gcs_emulator):
  """A new empty bucket on the emulator for this test: 'gs://test-bucket-<n>'."""
  return gcs_emulator.create_bucket(f'test-bucket-{next(_bucket_numbers)}')
