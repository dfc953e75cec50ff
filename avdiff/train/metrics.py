"""Metric writers of a run: one JSON object per logged step in <workdir>/metrics.jsonl and TensorBoard event files
(tensorboardX, no TensorFlow) beside it. Only the primary process writes; elsewhere the writer is a no-op."""

from __future__ import annotations

import json
import math
import os
from typing import Optional

from etils import epath


class MetricWriter:
  """Appends `{'step': s, name: value, ...}` lines to metrics.jsonl and scalars to TensorBoard."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(workdir, flush_secs=30)

  def write(self, step: int, metrics: dict, prefix: Optional[str] = None) -> None:
    if not self.enabled:
      return
    row = {'step': int(step)}
    for k, v in metrics.items():
      name = f'{prefix}/{k}' if prefix else k
      v = float(v)
      row[name] = v if math.isfinite(v) else str(v)
      self._tb.add_scalar(name, v, int(step))
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict]:
  """All rows of <workdir>/metrics.jsonl, one per step: lines of one step (train and val_* metrics are written
  separately) are merged, and for a key logged twice (a resumed run) the last value wins. workdir may be a bucket
  path (gs://...)."""
  path = epath.Path(workdir) / 'metrics.jsonl'
  rows: dict[int, dict] = {}
  if path.exists():
    for line in path.read_text().splitlines():
      line = line.strip()
      if line:
        row = json.loads(line)
        rows.setdefault(row['step'], {}).update(row)
  return [rows[s] for s in sorted(rows)]
