"""Run directory: the one object that names and writes the files of a run, in a local folder or on a bucket
(gs://..., through `etils.epath`, whose gs:// backend is gcsfs).

    run = RunDir('gs://bucket/runs/tiny')       # or 'runs/tiny'
    run.write_config(text); run.read_config()   # config.json
    run.checkpoints                             # the Orbax directory: an absolute local path or the gs:// URI as is
    run.metrics_path, run.eval_json('test'), run.samples(step), run.report
    with run.staged(run.samples(8)) as local:   # files only a local path can take (PyAV mp4, matplotlib png)
      write_video(os.path.join(local, 'a.mp4'), ...)   # copied up when the block ends

Layout (the workdir contract of DESIGN.md): config.json, checkpoints/, metrics.jsonl + TensorBoard events,
samples/<step>/*.mp4, eval/<split>.json / .md, report/. Imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Union

import fsspec
from etils import epath

# gcsfs (epath's gs:// backend) caches directory listings for the life of a process. A run directory is written by
# other processes (the trainer, a sampler, an evaluator, every host) and by TensorStore inside this one, so a cached
# listing goes stale: a new checkpoint step is not seen. Listing a run's folders is cheap next to its checkpoint io,
# so listings are never cached (explicit storage options still win).
fsspec.config.conf.setdefault('gs', {}).setdefault('use_listings_cache', False)

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
METRICS_FILE = 'metrics.jsonl'

PathLike = Union[str, os.PathLike, 'RunDir']


def is_remote(path: Union[str, os.PathLike]) -> bool:
  """True for a bucket URI (gs://, s3://, ...), False for a local path."""
  return '://' in os.fspath(path)


def as_path(path: Union[str, os.PathLike]) -> epath.Path:
  """An epath.Path: a bucket URI unchanged, a local path made absolute (so Orbax and logs name it fully)."""
  text = os.fspath(path)
  return epath.Path(text if is_remote(text) else os.path.abspath(text))


@contextlib.contextmanager
def staged(target: Union[str, os.PathLike]) -> Iterator[str]:
  """A local folder to write `target`'s files into (for writers that need a local file: PyAV, matplotlib).

  A local target is itself (created). For a bucket, a temporary folder whose files (recursively) are copied to
  target when the block ends without an error; the temporary folder is removed either way.
  """
  if not is_remote(target):
    os.makedirs(os.fspath(target), exist_ok=True)
    yield os.fspath(target)
    return
  local = tempfile.mkdtemp(prefix='avdiff_stage_')
  try:
    yield local
    upload(local, epath.Path(os.fspath(target)))
  finally:
    shutil.rmtree(local, ignore_errors=True)


def upload(local: str, target: epath.Path) -> None:
  """Copies every file under the local folder `local` to the same relative path under `target`."""
  for root, _, files in os.walk(local):
    rel = os.path.relpath(root, local)
    folder = target if rel == '.' else target / rel
    for name in files:
      (folder / name).write_bytes(open(os.path.join(root, name), 'rb').read())


class RunDir:
  """The files of one run, local or on a bucket. `path` is an epath.Path (local paths made absolute)."""

  def __init__(self, path: PathLike):
    self.path = path.path if isinstance(path, RunDir) else as_path(path)

  def __str__(self) -> str:
    return os.fspath(self.path)

  def __repr__(self) -> str:
    return f'RunDir({str(self)!r})'

  def __truediv__(self, rel: str) -> epath.Path:
    return self.path / rel

  @property
  def remote(self) -> bool:
    """True when the run lives on a bucket (writers that append or need local files stage through memory/tmp)."""
    return is_remote(self.path)

  @property
  def name(self) -> str:
    return self.path.name

  def mkdir(self) -> None:
    """Creates the folder (a no-op on a bucket, where folders are name prefixes)."""
    self.path.mkdir(parents=True, exist_ok=True)

  # --------------------------------------------------------------------------- config.json

  @property
  def config_path(self) -> epath.Path:
    return self.path / CONFIG_FILE

  def has_config(self) -> bool:
    """True for a run directory (experiments.train writes config.json first)."""
    return self.config_path.exists()

  def read_config(self) -> str:
    """The text of config.json; FileNotFoundError naming the directory when it is not a run directory."""
    if not self.has_config():
      raise FileNotFoundError(f'{self} is not a run directory (it has no {CONFIG_FILE}); runs are made by '
                              'experiments.train')
    return self.config_path.read_text()

  def write_config(self, text: str) -> None:
    self.write_text(CONFIG_FILE, text)

  # --------------------------------------------------------------------------- files

  def write_text(self, rel: str, text: str) -> epath.Path:
    """Writes W/rel whole (parents created). A bucket object appears whole or not at all; a local file is
    written beside and renamed, so a reader never sees half of it."""
    path = self.path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if self.remote:
      path.write_text(text)
    else:
      partial = path.parent / f'.{path.name}.partial'
      partial.write_text(text)
      partial.replace(path)
    return path

  def read_text(self, rel: str) -> str:
    return (self.path / rel).read_text()

  # --------------------------------------------------------------------------- the parts of a run

  @property
  def checkpoints(self) -> str:
    """The Orbax CheckpointManager directory: an absolute local path, or the gs:// URI unchanged (Orbax and
    TensorStore write buckets themselves)."""
    return os.fspath(self.path / CHECKPOINT_DIR)

  @property
  def metrics_path(self) -> epath.Path:
    return self.path / METRICS_FILE

  @property
  def events_dir(self) -> str:
    """Where TensorBoard event files go: the run directory itself (on a bucket they are written locally and
    copied up, avdiff.train.metrics)."""
    return str(self)

  def samples(self, step: int) -> epath.Path:
    return self.path / 'samples' / str(int(step))

  def eval_json(self, split: str) -> epath.Path:
    return self.path / 'eval' / f'{split}.json'

  def eval_md(self, split: str) -> epath.Path:
    return self.path / 'eval' / f'{split}.md'

  @property
  def report(self) -> epath.Path:
    return self.path / 'report'

  @property
  def profile_dir(self) -> str:
    return os.fspath(self.path / 'profile')

  def staged(self, target: Union[str, os.PathLike]) -> contextlib.AbstractContextManager[str]:
    """`staged(target)` for a folder of this run (see the module function)."""
    return staged(target)
