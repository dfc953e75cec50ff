"""Quiet console: library INFO records dropped, our own records and every library warning kept."""

import logging
import os

import pytest
from absl import flags as absl_flags
from absl import logging as absl_logging

from avdiff import console

OWN = os.path.join(os.path.dirname(os.path.abspath(console.__file__)), 'train', 'loop.py')
LIBRARY = '/venv/lib/python3.11/site-packages/orbax/checkpoint/checkpoint_manager.py'
TFDS = '/venv/lib/python3.11/site-packages/tensorflow_datasets/core/dataset_builder.py'


def _record(pathname, level, msg='message'):
  return logging.LogRecord('absl', level, pathname, 1, msg, None, None)


@pytest.fixture
def quiet(monkeypatch):
  """Runs quiet_logging() and undoes it (filters, logger levels, flag, environment) after the test."""
  targets = (logging.getLogger('absl'), absl_logging.get_absl_handler())
  filters = [list(t.filters) for t in targets]
  levels = {n: logging.getLogger(n).level for n in console._LIBRARY_LOGGERS}  # pylint: disable=protected-access
  prefix = absl_flags.FLAGS['showprefixforinfo']
  prefix_value = prefix.value
  monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
  console.quiet_logging()
  console.quiet_logging()  # Idempotent: one filter per target, not two.
  yield targets
  for target, old in zip(targets, filters):
    target.filters[:] = old
  for name, level in levels.items():
    logging.getLogger(name).setLevel(level)
  prefix.value = prefix_value


def test_library_info_dropped_own_info_and_warnings_kept(quiet):
  for target in quiet:
    assert sum(isinstance(f, console._OwnInfoFilter) for f in target.filters) == 1  # pylint: disable=protected-access
  handler = absl_logging.get_absl_handler()
  assert not handler.filter(_record(LIBRARY, logging.INFO))
  assert handler.filter(_record(LIBRARY, logging.WARNING))
  assert handler.filter(_record(LIBRARY, logging.ERROR))
  assert handler.filter(_record(OWN, logging.INFO))
  assert handler.filter(_record(OWN, logging.DEBUG))
  # The one warning every run triggers by design is dropped; other TFDS warnings are not.
  assert not handler.filter(_record(TFDS, logging.WARNING, 'Using custom data configuration: SyntheticConfig(...)'))
  assert handler.filter(_record(TFDS, logging.WARNING, 'Something else'))
  assert not handler.filter(_record(LIBRARY, logging.WARNING, 'Given directory is read only=%s'))
  assert handler.filter(_record(LIBRARY, logging.ERROR, 'Given directory is read only=%s'))
  assert logging.getLogger('jax._src.xla_bridge').getEffectiveLevel() == logging.WARNING
  assert logging.getLogger('jax').level == logging.NOTSET  # JAX would add a second stderr handler otherwise.
  assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'
  assert absl_flags.FLAGS['showprefixforinfo'].value is False


def test_say_prints_one_line_to_stderr(capsys):
  console.say('Wrote 4 clips to /tmp/x')
  captured = capsys.readouterr()
  assert captured.err == 'Wrote 4 clips to /tmp/x\n' and captured.out == ''
