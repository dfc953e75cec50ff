"""A readable console for the command-line tools: library chatter off, our own messages and progress bars kept.

Orbax, TFDS, Grain and JAX log through absl or standard Python loggers at INFO: a 20-step tiny training prints
~70 such lines (checkpoint handler registration, metadata store closing, "Unable to initialize backend 'tpu'")
around one progress bar. `quiet_logging()` lets through INFO records only from this repository's code (avdiff/,
experiments/, configs/, benchmarks/) and WARNING and above from everyone. `say()` prints one line a user must
see whatever the logging set-up.

Importing this module costs only absl.logging (no JAX), so entry points can call it before their heavy imports:

    from avdiff import console
    console.quiet_logging()
"""

from __future__ import annotations

import functools
import logging
import os
import sys

from absl import flags as absl_flags
from absl import logging as absl_logging

_REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where our own code lives: the package and its siblings, in a checkout and in site-packages alike (pyproject.toml
# installs configs/ and experiments/ next to avdiff/).
_OWN_DIRS = tuple(os.path.join(_REPO_DIR, n, '') for n in ('avdiff', 'experiments', 'configs', 'benchmarks'))
# Python loggers whose records below the threshold are not even created. Not 'jax' itself: JAX reads that
# logger's level at import as its `jax_logging_level` and, when set, adds its own stderr handler, which would
# print every JAX warning twice under absl's handler. 'jax._src' is where JAX's modules log.
_LIBRARY_LOGGERS = ('jax._src', 'jaxlib', 'orbax', 'tensorflow_datasets', 'grain', 'etils', 'array_record')
# Warnings that runs of this repository trigger by design and that say nothing actionable, as (source path
# fragment, message start): TFDS warns about every custom builder config (ours all are), and Orbax about every
# checkpoint opened read-only (how sampling and evaluation open a training run's checkpoints).
_EXPECTED_WARNINGS = (
    (os.path.join('tensorflow_datasets', ''), 'Using custom data configuration'),
    (os.path.join('orbax', 'checkpoint', ''), 'Given directory is read only'),
    (os.path.join('orbax', 'checkpoint', ''), 'CheckpointManagerOptions.read_only=True'),
)


@functools.lru_cache(maxsize=1024)
def _is_own(pathname: str) -> bool:
  return os.path.abspath(pathname).startswith(_OWN_DIRS)


class _OwnInfoFilter(logging.Filter):
  """Passes records at `level` or above from any code, and every record from this repository's code."""

  def __init__(self, level: int):
    super().__init__()
    self.level = level

  def filter(self, record: logging.LogRecord) -> bool:
    if _is_own(record.pathname):
      return True
    if record.levelno < self.level:
      return False
    if record.levelno < logging.ERROR:
      for fragment, start in _EXPECTED_WARNINGS:
        if fragment in record.pathname and str(record.msg).startswith(start):
          return False
    return True


def quiet_logging(level: int = logging.WARNING) -> None:
  """Shows library log records at `level` and above only; keeps every record from this repository's code.

  Idempotent; works before or after absl's app.run has parsed flags (the filters survive its verbosity update).
  Our own INFO lines lose absl's time / thread / file prefix (unless --showprefixforinfo is given); warnings keep it.
  Progress bars (tqdm) write to the terminal directly and are not affected. An explicit environment setting of
  TF_CPP_MIN_LOG_LEVEL (XLA's C++ logging) wins over the default set here.

  Args:
    level: Python logging level (logging.WARNING = 30) from which library records are shown.
  """
  # XLA's C++ logging reads this once, when jaxlib loads: 0 = everything, 1 = no INFO, 2 = errors only.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', {logging.DEBUG: '0', logging.INFO: '0', logging.WARNING: '1'}.get(
      level, '2'))
  for name in _LIBRARY_LOGGERS:
    logger = logging.getLogger(name)
    if logger.level < level:
      logger.setLevel(level)
  # With absl's default INFO verbosity our own INFO lines then print as plain text, without the
  # 'I1201 16:45:49.021493 139847457045376 loop.py:156] ' prefix; an explicit --showprefixforinfo still wins.
  prefix = absl_flags.FLAGS['showprefixforinfo']
  if prefix.using_default_value:
    prefix.value = False
  # Orbax, TFDS and Grain log through absl's logger, as we do, so those records are told apart by source file:
  # on the absl logger (records made there) and on absl's handler (records any Python logger propagates to it).
  for target in (logging.getLogger('absl'), absl_logging.get_absl_handler()):
    for old in [f for f in target.filters if isinstance(f, _OwnInfoFilter)]:
      target.removeFilter(old)
    target.addFilter(_OwnInfoFilter(level))


def say(message: str) -> None:
  """Prints one line to stderr at once (e.g. 'Wrote 4 clips to runs/tiny/samples'), above any progress bar."""
  tqdm = sys.modules.get('tqdm')
  if tqdm is not None and getattr(tqdm, 'tqdm', None) is not None:
    # tqdm.write clears the active bars, prints, and redraws them, so the line does not land inside a bar.
    tqdm.tqdm.write(str(message), file=sys.stderr)
    sys.stderr.flush()
  else:
    print(message, file=sys.stderr, flush=True)
