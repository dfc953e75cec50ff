"""A self-contained HTML page of one evaluation: its tables, contact sheets and playable clips.

`write_report` lays out a folder that opens in any browser without a server, scripts or network:

    out_dir/index.html                 verdict, metrics, protocol and outcome-measure tables; images; videos
    out_dir/contact_<condition>.png    per generated condition: frames + log-mel of ground truth and generated
    out_dir/clips/<condition>_<i>.mp4  h264 + AAC, at the clip's own size, frame rate and sample rate

Clips of different conditions with the same index belong to one held-out clip (generated clips were conditioned
on ground_truth[i]), so the page shows them side by side.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import urllib.parse
from typing import Sequence

import ml_collections
import numpy as np
from matplotlib.figure import Figure  # Figure + savefig renders with Agg; no pyplot state, no display needed.

from avdiff.data import audio as audio_lib
from avdiff.data import av_io
from avdiff.eval import conditions as conditions_lib

GROUND_TRUTH = 'ground_truth'
# Known conditions in page order; others follow in the order given.
_ORDER = (GROUND_TRUTH, 'model_joint', 'model_audio_to_video', 'model_video_to_audio')
_FRAMES_PER_ROW = 8
# Tiny frames are shown this wide on the page (CSS pixels), nearest-neighbour scaled.
_DISPLAY_WIDTH = 192
_MISSING = '\u2014'
# Near-lossless h264: at 16-32 pixels the default quality smears the mouth, and the files stay a few tens of kB.
_CRF = 8

CSS = f"""
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.met {{ color: #11772b; font-weight: bold; }}
td.notmet {{ color: #b3141b; font-weight: bold; }}
small {{ color: #666; }}
.scroll {{ overflow-x: auto; }}
img.sheet {{ max-width: 100%; display: block; margin-bottom: 1em; }}
video {{ width: {_DISPLAY_WIDTH}px; image-rendering: pixelated; background: #000; display: block; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 0.85em; color: #444; }}
"""


def _order(conditions: Sequence[str]) -> list[str]:
  known = [c for c in _ORDER if c in conditions]
  return known + [c for c in conditions if c not in _ORDER]


def _slugs(conditions: Sequence[str]) -> dict[str, str]:
  """Condition -> a file-name-safe, unique stem."""
  out, used = {}, set()
  for c in conditions:
    base = re.sub(r'[^A-Za-z0-9_.-]', '_', c) or 'condition'
    slug, k = base, 1
    while slug in used:
      slug, k = f'{base}_{k}', k + 1
    used.add(slug)
    out[c] = slug
  return out


def _caption(condition: str) -> str:
  return 'ground truth' if condition == GROUND_TRUTH else condition


# ----------------------------------------------------------------------------- media files


def _even(video: np.ndarray) -> np.ndarray:
  """h264's 4:2:0 needs even sizes: odd-sized frames are doubled (nearest neighbour), even ones kept as they are."""
  if video.shape[1] % 2 or video.shape[2] % 2:
    return np.repeat(np.repeat(video, 2, axis=1), 2, axis=2)
  return video


def _write_clips(out_dir: str, clips: dict, slugs: dict, data_cfg: ml_collections.ConfigDict,
                 max_clips: int) -> dict[str, list[str]]:
  """Writes clips/<slug>_<i>.mp4 for the first max_clips clips of each condition; returns condition -> rel paths."""
  paths = {}
  for cond, items in clips.items():
    paths[cond] = []
    for i, clip in enumerate(items[:max_clips]):
      rel = f'clips/{slugs[cond]}_{i}.mp4'
      wave = clip.get('audio')
      if wave is not None:
        wave = np.clip(np.asarray(wave, np.float32).reshape(-1), -1.0, 1.0)  # Model audio may overshoot.
      av_io.write_video(os.path.join(out_dir, rel), _even(np.asarray(clip['video'], np.uint8)), wave,
                        float(data_cfg.fps), int(data_cfg.sample_rate), crf=_CRF)
      paths[cond].append(rel)
  return paths


def _row_label(condition: str, clip: dict) -> str:
  label = clip.get('label')
  return _caption(condition) + (f'\nspeaker {int(label)}' if label is not None else '')


def _contact_sheet(path: str, rows: list[tuple[str, dict]], data_cfg: ml_collections.ConfigDict,
                   title: str) -> None:
  """PNG of clip rows: ~8 evenly spaced frames, then the log-mel spectrogram of the clip's audio.

  Args:
    path: output PNG.
    rows: (condition, clip) pairs, top to bottom; clip video uint8 [T, H, W, 3] at data_cfg.fps Hz, audio float
      [S] at data_cfg.sample_rate Hz.
    data_cfg: config.data (fps, sample_rate and the mel parameters).
    title: figure title.
  """
  fps = float(data_cfg.fps)
  num = min(_FRAMES_PER_ROW, min(len(c['video']) for _, c in rows))
  spec_width = 3.0  # The spectrogram panel spans this many frame widths.
  # A thin empty grid row separates the clip groups (a generated row under its ground truth).
  layout = []
  for cond, clip in rows:
    if layout and cond == GROUND_TRUTH:
      layout.append(None)
    layout.append((cond, clip))
  heights = [0.2 if item is None else 1.0 for item in layout]
  height = 1.05 * sum(heights) + 0.7  # Inches; 0.7 for the titles.
  fig = Figure(figsize=(1.0 * (num + spec_width) + 1.2, height), dpi=100)
  grid = fig.add_gridspec(len(layout), num + 1, width_ratios=[1.0] * num + [spec_width], height_ratios=heights,
                          wspace=0.06, hspace=0.12, top=1 - 0.55 / height, bottom=0.15 / height)
  fig.suptitle(title, fontsize=11)
  last = len(layout) - 1
  for r, item in enumerate(layout):
    if item is None:
      continue
    cond, clip = item
    video = np.asarray(clip['video'])
    frames = np.unique(np.round(np.linspace(0, len(video) - 1, num)).astype(int))
    for k, f in enumerate(frames):
      ax = fig.add_subplot(grid[r, k])
      ax.imshow(video[f], interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(f'{f / fps:.1f} s', fontsize=7)
      if k == 0:
        ax.set_ylabel(_row_label(cond, clip), fontsize=7, rotation=0, ha='right', va='center')
    ax = fig.add_subplot(grid[r, num])
    wave = clip.get('audio')
    if wave is None:
      ax.axis('off')
      continue
    mel = audio_lib.log_mel(np.asarray(wave, np.float32).reshape(-1), data_cfg)  # [T_a, n_mels] in [-1, 1]
    seconds = len(wave) / float(data_cfg.sample_rate)
    ax.imshow(mel.T, origin='lower', aspect='auto', interpolation='nearest', cmap='magma', vmin=-1, vmax=1,
              extent=(0.0, seconds, 0, mel.shape[1]))
    ax.tick_params(labelsize=6, length=2)
    ax.set_yticks([])
    if r == 0:
      ax.set_title('log-mel (time in s)', fontsize=7)
    if r < last:
      ax.set_xticklabels([])
  fig.savefig(path, bbox_inches='tight', pad_inches=0.1)


def _write_contact_sheets(out_dir: str, clips: dict, order: list, slugs: dict, data_cfg: ml_collections.ConfigDict,
                          max_clips: int) -> list[tuple[str, str]]:
  """One sheet per generated condition (each clip under its ground truth); a ground-truth sheet if that is all."""
  truth = clips.get(GROUND_TRUTH, [])
  generated = [c for c in order if c != GROUND_TRUTH and clips[c]]
  sheets = []
  for cond in generated:
    rows = []
    for i, clip in enumerate(clips[cond][:max_clips]):
      if i < len(truth):
        rows.append((GROUND_TRUTH, truth[i]))
      rows.append((cond, clip))
    sheets.append((cond, rows))
  if not generated and truth:
    sheets.append((GROUND_TRUTH, [(GROUND_TRUTH, c) for c in truth[:max_clips]]))
  out = []
  for cond, rows in sheets:
    name = f'contact_{slugs[cond]}.png'
    _contact_sheet(os.path.join(out_dir, name), rows, data_cfg, _caption(cond))
    out.append((cond, name))
  return out


# ----------------------------------------------------------------------------- HTML


def escape(value) -> str:
  return html.escape(str(value), quote=True)


def src(rel: str) -> str:
  return escape(urllib.parse.quote(rel))


def fmt_num(value) -> str:
  """A number for a table cell: 3 decimals, scientific when very large or small; '—' when missing."""
  if value is None:
    return _MISSING
  if isinstance(value, bool):
    return 'yes' if value else 'no'
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, (float, np.floating)):
    v = float(value)
    if not math.isfinite(v):
      return str(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
      return f'{v:.3g}'
    return f'{v:.3f}'
  return escape(value)


def html_table(head: Sequence[str], rows: list[str]) -> str:
  th = ''.join(f'<th>{escape(h)}</th>' for h in head)
  return f'<div class="scroll"><table>\n<tr>{th}</tr>\n' + '\n'.join(rows) + '\n</table></div>'


def _verdict_html(rows: list[dict]) -> str:
  met = sum(bool(r.get('met')) for r in rows)
  body = []
  for r in rows:
    ok = bool(r.get('met'))
    threshold = f"{r.get('op', '')} {fmt_num(r.get('threshold'))}".strip()
    body.append(f"<tr><td>{escape(r.get('name', ''))}</td><td class=\"num\">{fmt_num(r.get('value'))}</td>"
                f"<td class=\"num\">{escape(threshold)}</td><td class=\"{'met' if ok else 'notmet'}\">"
                f"{'met' if ok else 'not met'}</td><td>{escape(r.get('what', ''))}</td></tr>")
  return (f'<h2>Verdict</h2>\n<p>{met} of {len(rows)} targets met.</p>\n'
          + html_table(['target', 'value', 'threshold', 'met', 'what it measures'], body))


def _metric_cell(entry) -> str:
  if entry is None:
    return f'<td class="num">{_MISSING}</td>'
  if not isinstance(entry, dict):
    return f'<td class="num">{fmt_num(entry)}</td>'
  ci = entry.get('ci95') or ([entry['ci_low'], entry['ci_high']] if 'ci_low' in entry and 'ci_high' in entry
                             else None)
  extra = ''
  if ci and all(isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
    extra = f'<br><small>[{fmt_num(float(ci[0]))}, {fmt_num(float(ci[1]))}]</small>'
  tip = f' title="n={escape(entry["n"])}"' if 'n' in entry else ''
  return f'<td class="num"{tip}>{fmt_num(entry.get("mean"))}{extra}</td>'


def _conditions_html(conditions: dict) -> str:
  names = {m for c in conditions.values() if isinstance(c, dict) for m in c.get('metrics', {})}
  cols = [m for m in conditions_lib.HEADLINE if m in names] + sorted(names - set(conditions_lib.HEADLINE))
  body = []
  for cond in _order(list(conditions)):
    c = conditions[cond] if isinstance(conditions[cond], dict) else {}
    if 'unavailable' in c:
      body.append(f'<tr><td>{escape(cond)}</td><td class="num">0</td>'
                  f'<td colspan="{max(len(cols), 1)}">unavailable: {escape(c["unavailable"])}</td></tr>')
      continue
    metrics = c.get('metrics', {})
    cells = ''.join(_metric_cell(metrics.get(m)) for m in cols)
    body.append(f'<tr><td>{escape(cond)}</td><td class="num">{fmt_num(c.get("num_scored"))}</td>{cells}</tr>')
  return ('<h2>Metrics</h2>\n<p><small>Mean over clips, [95% bootstrap interval] where computed; n = clips scored.'
          '</small></p>\n' + html_table(['condition', 'n'] + cols, body))


def _protocol_html(protocol: dict) -> str:
  body = []
  for k, v in protocol.items():
    shown = fmt_num(v) if isinstance(v, (int, float, np.number)) or v is None else escape(
        v if isinstance(v, str) else json.dumps(v, default=str))
    body.append(f'<tr><td>{escape(k)}</td><td>{shown}</td></tr>')
  return '<h2>Protocol</h2>\n' + html_table(['setting', 'value'], body)


def _measures_html(measures: dict) -> str:
  body = []
  for name, m in measures.items():
    if isinstance(m, dict):
      cells = [m.get('mean'), m.get('std'), m.get('n'), m.get('undecided')]
    else:
      cells = [m, None, None, None]
    body.append(f'<tr><td>{escape(name)}</td>' + ''.join(f'<td class="num">{fmt_num(v)}</td>' for v in cells) + '</tr>')
  return '<h2>Outcome measures</h2>\n' + html_table(['measure', 'mean', 'std', 'n', 'undecided'], body)


def _sheets_html(sheets: list[tuple[str, str]]) -> str:
  imgs = [f'<h3>{escape(_caption(cond))}</h3>\n<img class="sheet" src="{src(name)}" alt="contact sheet: {escape(cond)}">'
          for cond, name in sheets]
  return ('<h2>Contact sheets</h2>\n<p><small>Evenly spaced frames and the log-mel spectrogram of each clip; '
          'generated rows sit under the ground truth they were conditioned on.</small></p>\n' + '\n'.join(imgs))


def _videos_html(clips: dict, paths: dict, order: list) -> str:
  count = max(len(paths[c]) for c in order)
  body = []
  for i in range(count):
    cells = []
    for cond in order:
      if i >= len(paths[cond]):
        cells.append('<td></td>')
        continue
      label = clips[cond][i].get('label')
      caption = _caption(cond) + (f' \u00b7 speaker {int(label)}' if label is not None else '')
      cells.append(f'<td><figure><video controls preload="metadata" src="{src(paths[cond][i])}"></video>'
                   f'<figcaption>{escape(caption)}</figcaption></figure></td>')
    body.append(f'<tr><td class="num">{i}</td>' + ''.join(cells) + '</tr>')
  return '<h2>Clips</h2>\n' + html_table(['clip'] + [_caption(c) for c in order], body)


def write_report(out_dir: str, result: dict, clips: dict[str, list[dict]], data_cfg: ml_collections.ConfigDict,
                 title: str = 'avdiff report', max_clips: int = 4) -> str:
  """Writes an HTML report of an evaluation: tables, contact sheets and the first clips of each condition.

  Every part whose data is missing is left out, so a result of ground truth alone makes a valid page.

  Args:
    out_dir: folder to write (created); index.html, contact_<condition>.png and clips/<condition>_<i>.mp4.
    result: evaluation result; uses (each optional) `outcomes.verdict` (rows {'name', 'value', 'op', 'threshold',
      'met', 'what'}), `conditions` ({condition: {'metrics': {metric: {'mean', 'ci95' or 'ci_low'/'ci_high',
      'n'}}, 'num_scored'} or {'unavailable': reason}}), `protocol` ({setting: value}) and `outcomes.measures`
      ({name: float or {'mean', 'std', 'n', 'undecided'}}).
    clips: {condition: [clip]}, clip = {'video': uint8 [T, H, W, 3] at data_cfg.fps Hz, 'audio': float32 [S] mono
      in [-1, 1] at data_cfg.sample_rate Hz, 'label': int}; index i of every condition is the same held-out clip.
    data_cfg: config.data (fps, sample_rate and the mel parameters of `avdiff.data.audio.log_mel`).
    title: page title.
    max_clips: clips per condition written as videos and drawn on the contact sheets.
  Returns:
    Path of out_dir/index.html.
  """
  os.makedirs(out_dir, exist_ok=True)
  result = result or {}
  clips = {c: list(v) for c, v in (clips or {}).items() if v}
  order = _order(list(clips))
  slugs = _slugs(order)
  paths = _write_clips(out_dir, clips, slugs, data_cfg, max_clips)
  sheets = _write_contact_sheets(out_dir, clips, order, slugs, data_cfg, max_clips) if clips else []

  outcomes = result.get('outcomes') or {}
  parts = [f'<h1>{escape(title)}</h1>']
  for section, render in ((outcomes.get('verdict'), _verdict_html), (result.get('conditions'), _conditions_html),
                          (outcomes.get('measures'), _measures_html), (result.get('protocol'), _protocol_html),
                          (sheets, _sheets_html)):
    if section:
      parts.append(render(section))
  if paths:
    parts.append(_videos_html(clips, paths, order))
  page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
          f'<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n' + '\n'.join(parts)
          + '\n</body>\n</html>\n')
  index = os.path.join(out_dir, 'index.html')
  with open(index, 'w', encoding='utf-8') as f:
    f.write(page)
  return index
