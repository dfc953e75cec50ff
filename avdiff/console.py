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

from absl import app
from absl import flags as absl_flags
from absl import logging as absl_logging

from avdiff import config_lib

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
  # User errors raised before `run` (a misspelt --config override fails while the tool defines its flags) print
  # one line too.
  sys.excepthook = _excepthook


def say(message: str) -> None:
  """Prints one line to stderr at once (e.g. 'Wrote 4 clips to runs/tiny/samples'), above any progress bar."""
  tqdm = sys.modules.get('tqdm')
  if tqdm is not None and getattr(tqdm, 'tqdm', None) is not None:
    # tqdm.write clears the active bars, prints, and redraws them, so the line does not land inside a bar.
    tqdm.tqdm.write(str(message), file=sys.stderr)
    sys.stderr.flush()
  else:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- config overrides

def config_overrides(flag: str = 'config') -> dict:
  """{'section.field': value} of every `--<flag>.section.field=value` given on the command line (ml_collections
  registers one absl flag per overridden field), after absl has parsed the flags. The tools that start from a run's
  own config.json (evaluate --workdir) apply these on top of it with `apply_overrides`."""
  flags = absl_flags.FLAGS
  prefix = f'{flag}.'
  return {name[len(prefix):]: flags[name].value for name in flags
          if name.startswith(prefix) and flags[name].present}


def apply_overrides(config, overrides: dict) -> None:
  """Sets each 'section.field' of `overrides` in `config` (a ConfigDict, e.g. a run's config.json)."""
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = config
    for key in parents:
      node = node[key]
    with node.unlocked():  # A field the run's config.json lacks is added, as on the configs it came from.
      node[leaf] = value


# ----------------------------------------------------------------------------- user errors

class UserError(Exception):
  """A mistake in a command line or its inputs (a path, a folder, a missing optional package): the tools print its
  message on one line and exit with status 2, without a traceback."""


USAGE_EXIT_CODE = 2


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(USAGE_EXIT_CODE)


def _user_message(exc: BaseException, tb) -> str | None:
  """The one-line message of a user error, or None for a bug (which keeps its traceback)."""
  if isinstance(exc, (UserError, config_lib.ConfigError, app.UsageError)):
    return str(exc)
  if isinstance(exc, FileNotFoundError):
    return f'{exc.filename}: no such file or directory' if exc.filename else str(exc)
  if isinstance(exc, (AttributeError, KeyError)):
    # A misspelt --config.<field> override fails inside ml_collections' flag while the tool's flags are defined.
    frames = []
    while tb is not None:
      frames.append(tb.tb_frame.f_code.co_filename)
      tb = tb.tb_next
    if any(os.path.join('ml_collections', 'config_flags', '') in f for f in frames):
      text = str(exc.args[0] if exc.args else exc).strip('\'"').replace('\\n', ' ').replace('\\', '')
      overrides = [a.split('=')[0] for a in sys.argv[1:] if a.startswith('--config.')]
      return f'config override {" ".join(overrides)}: no such field {text.replace(" Did you mean", "; did you mean")}'
  return None


def _excepthook(exc_type, exc, tb):
  message = _user_message(exc, tb)
  if message is None:
    sys.__excepthook__(exc_type, exc, tb)
    return
  print(f'error: {message}', file=sys.stderr, flush=True)
  os._exit(USAGE_EXIT_CODE)  # pylint: disable=protected-access  (the interpreter is already unwinding)


def run(main, takes_arguments: bool = False) -> None:
  """absl's app.run for the command-line tools, with user errors (see `UserError`; also config errors, bad flag
  values, missing files) printed as one line and exit status 2. Tracebacks are for bugs only. A tool that does not
  take positional arguments refuses them (a config override written without its `--config.` would otherwise be
  dropped without a word)."""
  def parse(argv):
    try:
      return absl_flags.FLAGS(argv)
    except absl_flags.Error as e:
      _fail(str(e))

  def checked(argv):
    if not takes_arguments and len(argv) > 1:
      _fail(f'unexpected argument {argv[1]!r}: options are flags, --name=value (config fields: '
            '--config.<section>.<field>=value)')
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except  (re-raised unless it is a user error)
      message = _user_message(e, e.__traceback__)
      if message is None:
        raise
      _fail(message)

  app.run(checked, flags_parser=parse)

