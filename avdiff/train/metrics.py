"""Metric writers of a run: one JSON object per logged step in <workdir>/metrics.jsonl and TensorBoard event files
(tensorboardX, no TensorFlow) beside it, in a local folder or on a bucket (`avdiff.run_dir.RunDir`). Only the
primary process writes; elsewhere the writer is a no-op.

A bucket object cannot be appended to. metrics.jsonl there is kept as rows in memory (those already in the object
first, so a resumed run keeps its history) and the whole object is rewritten on `flush`: every `flush_secs`
seconds, at each checkpoint (the loop flushes there, so after a crash the object holds every row up to the
checkpoint the run resumes from) and at close. A run logs ~0.5 KB per row, so even 10^4 rows rewrite in well
under a second; one object keeps the file contract that readers (compare, TensorBoard) rely on, where one object
per flush would not, and GCS compose caps a composite at 1024 parts. TensorBoard event files are written to a local
temporary folder and copied up at the same moments. (tensorboardX's own gs:// writer re-uploads again from
`__del__`, so a process that outlives its bucket connection hangs for minutes in retries at exit.)
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from typing import Optional

from avdiff import run_dir as run_dir_lib


class MetricWriter:
  """`{'step': s, name: value, ...}` lines in metrics.jsonl and scalars in TensorBoard.

  Locally each row is appended at once; on a bucket rows are written whole every flush_secs seconds (see the
  module docstring) and always by `flush` / `close`.
  """

  def __init__(self, workdir, enabled: bool = True, flush_secs: float = 30.0):
    self.enabled = enabled
    self.run = run_dir_lib.RunDir(workdir)
    self.path = self.run.metrics_path
    self.flush_secs = flush_secs
    self._tb = None
    self._lines: list[str] = []  # Bucket only: every line of the object.
    self._events_dir = None  # Bucket only: the local folder of the event files.
    self._dirty = False
    self._flushed = time.monotonic()
    if enabled:
      self.run.mkdir()
      events_dir = self.run.events_dir
      if self.run.remote:
        if self.path.exists():
          self._lines = self.path.read_text().splitlines()
        events_dir = self._events_dir = tempfile.mkdtemp(prefix='avdiff_events_')
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(events_dir, flush_secs=int(flush_secs))

  def write(self, step: int, metrics: dict, prefix: Optional[str] = None) -> None:
    if not self.enabled:
      return
    row = {'step': int(step)}
    for k, v in metrics.items():
      name = f'{prefix}/{k}' if prefix else k
      v = float(v)
      row[name] = v if math.isfinite(v) else str(v)
      self._tb.add_scalar(name, v, int(step))
    line = json.dumps(row)
    if not self.run.remote:
      with self.path.open('a') as f:
        f.write(line + '\n')
      return
    self._lines.append(line)
    self._dirty = True
    if time.monotonic() - self._flushed >= self.flush_secs:
      self._write_object()

  def _write_object(self) -> None:
    """Bucket: rewrites metrics.jsonl with every row (one object, replaced whole) and copies the event files up."""
    if self._dirty:
      self.path.write_text(''.join(line + '\n' for line in self._lines))
      self._dirty = False
      if self._tb is not None:
        self._tb.flush()
        run_dir_lib.upload(self._events_dir, self.run.path)
    self._flushed = time.monotonic()

  def flush(self) -> None:
    """Every row so far is in metrics.jsonl and the event file when this returns."""
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb.flush()
    if self.run.remote:
      self._write_object()

  def close(self) -> None:
    if not self.enabled:
      return
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self.run.remote:
      self._dirty = True  # The last events go up even when no row is new.
      self._write_object()
      run_dir_lib.upload(self._events_dir, self.run.path)
      shutil.rmtree(self._events_dir, ignore_errors=True)


def read_metrics(workdir: str) -> list[dict]:
  """All rows of <workdir>/metrics.jsonl, one per step: lines of one step (train and val_* metrics are written
  separately) are merged, and for a key logged twice (a resumed run) the last value wins. workdir may be a bucket
  path (gs://...)."""
  path = run_dir_lib.RunDir(workdir).metrics_path
  rows: dict[int, dict] = {}
  if path.exists():
    for line in path.read_text().splitlines():
      line = line.strip()
      if line:
        row = json.loads(line)
        rows.setdefault(row['step'], {}).update(row)
  return [rows[s] for s in sorted(rows)]
