"""Per-file metadata of a folder of videos: label, caption and ground truth, read beside the files.

Two forms, merged (a `<file>.json` wins over the CSV row of the same file):

- `metadata.csv` at the folder's root: a `file` column (path relative to the folder, as `nested/clip.mp4`) and any
  of the fields below; list values are JSON in the cell (`"[0.1, 0.4, ...]"`).
- `<file>.json` beside a file (`clip.mp4.json` or `clip.json`): one JSON object.

Fields (all optional):
  label       int >= 0: class / speaker id (conditioning; default 0).
  caption     str: text describing the clip.
  mouth_open  [N] floats: mouth opening per source video frame (ground truth of lip-sync), at `truth_fps`.
  truth_fps   Hz of `mouth_open` (default: the file's own frame rate).
  mouth_box   [4] ints (y0, x0, y1, x1; source pixels, end-exclusive): where the mouth is.
  generator   str: the procedural generator the file came from (e.g. 'talking'), which tells evaluation that the
              generator's readers apply to it.
Other fields are kept as they are in the example's `extra` JSON.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Optional

import numpy as np

from avdiff import console
from avdiff.data import av_io

CSV_NAME = 'metadata.csv'
KNOWN_FIELDS = ('label', 'caption', 'mouth_open', 'truth_fps', 'mouth_box', 'generator')
NO_BOX = (-1, -1, -1, -1)  # Stored mouth_box of a clip without one.


class SidecarError(console.UserError):
  """A sidecar that cannot be used as written (bad JSON, a negative label, a box of the wrong length)."""


def _csv_value(text: str) -> Any:
  text = text.strip()
  if not text:
    return None
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    return text  # A plain string (a caption without quotes).


def read_csv(folder: str) -> dict[str, dict]:
  """{relative path: fields} of folder/metadata.csv ({} when absent)."""
  path = os.path.join(folder, CSV_NAME)
  if not os.path.exists(path):
    return {}
  rows = {}
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.DictReader(f)
    if 'file' not in (reader.fieldnames or ()):
      raise SidecarError(f'{path}: needs a "file" column (paths relative to the folder); has {reader.fieldnames}')
    for row in reader:
      rel = os.path.normpath(row.pop('file').strip())
      rows[rel] = {k: v for k, v in ((k, _csv_value(v or '')) for k, v in row.items() if k) if v is not None}
  return rows


def read(folder: str, rel: str, csv_rows: dict[str, dict]) -> dict:
  """The checked metadata of file `rel` (relative to `folder`): its CSV row, then its JSON sidecar on top."""
  meta = dict(csv_rows.get(os.path.normpath(rel), {}))
  full = os.path.join(folder, rel)
  for path in (full + '.json', os.path.splitext(full)[0] + '.json'):
    if os.path.exists(path):
      try:
        with open(path, encoding='utf-8') as f:
          loaded = json.load(f)
      except json.JSONDecodeError as e:
        raise SidecarError(f'{path}: not valid JSON ({e})') from e
      if not isinstance(loaded, dict):
        raise SidecarError(f'{path}: must hold one JSON object, got {type(loaded).__name__}')
      meta.update(loaded)
      break
  return check(meta, rel)


def check(meta: dict, rel: str) -> dict:
  """`meta` with label an int >= 0, mouth_box 4 ints, mouth_open a float array; SidecarError names the file."""
  out = dict(meta)
  if 'label' in out:
    label = out['label']
    if isinstance(label, float) and label.is_integer():
      label = int(label)
    if not isinstance(label, int) or isinstance(label, bool) or label < 0:
      raise SidecarError(f'{rel}: label must be an integer >= 0, got {meta["label"]!r}')
    out['label'] = label
  if 'mouth_box' in out:
    box = out['mouth_box']
    if not isinstance(box, (list, tuple)) or len(box) != 4:
      raise SidecarError(f'{rel}: mouth_box must be [y0, x0, y1, x1], got {box!r}')
    out['mouth_box'] = tuple(int(v) for v in box)
  if 'mouth_open' in out:
    out['mouth_open'] = np.asarray(out['mouth_open'], np.float32).reshape(-1)
  if 'caption' in out:
    out['caption'] = str(out['caption'])
  return out


def extra(meta: dict) -> str:
  """JSON of the fields evaluation does not read (kept in the example as they were written)."""
  return json.dumps({k: v for k, v in meta.items() if k not in KNOWN_FIELDS}, sort_keys=True)


def clip_mouth_open(meta: dict, source_fps: float, first_frame: int, num_frames: int, fps: float) -> np.ndarray:
  """float32 [num_frames]: `mouth_open` on the clip's frame grid (frames first_frame.. at `fps` Hz from the start of
  the file), read by sample-and-hold at each frame interval's centre as `av_io.Regrid` reads the frames themselves;
  NaN where the series has no value (absent, or shorter than the file)."""
  series = meta.get('mouth_open')
  out = np.full(num_frames, np.nan, np.float32)
  if series is None or series.size == 0:
    return out
  rate = float(meta.get('truth_fps') or source_fps)
  times = (first_frame + np.arange(num_frames) + 0.5) / float(fps)
  index = np.floor(times * rate + 1e-4).astype(np.int64)
  inside = index < series.size
  out[inside] = series[index[inside]]
  return out


def clip_mouth_box(meta: dict, source_height: int, source_width: int, size: int) -> tuple[int, int, int, int]:
  """The source-pixel mouth_box in the clip's size x size frame (centred square crop, then resize, as
  `av_io.square_resize`), rounded outwards; NO_BOX when the file has none."""
  box = meta.get('mouth_box')
  if box is None:
    return NO_BOX
  y0, x0, y1, x1 = av_io.box_in_square(box, source_height, source_width, size)
  return NO_BOX if y1 <= y0 or x1 <= x0 else (y0, x0, y1, x1)


def has_box(box: Optional[np.ndarray]) -> bool:
  return box is not None and int(np.min(box)) >= 0
