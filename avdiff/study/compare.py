"""Runs side by side: `compare(paths, out)` writes a table a researcher can trust, plots and an HTML page.

Inputs are run directories (config.json, metrics.jsonl, eval/<split>.json, report/clips/) or sweep workdirs
(<workdir>/<member>/seed<s>/); local or on a bucket (gs://..., through etils.epath). Runs of one member (a sweep
member, or runs whose configs differ only in `seed`) are aggregated over seeds.

    out/comparison.md, out/comparison.csv   one row per member: the config fields that differ between members
                                            (read from the saved configs), parameters, tokens per clip, step time
                                            and throughput, final losses, every evaluation metric with its interval
    out/loss.png, time_to_sync.png, metrics.png, gain.png
    out/index.html                          the table, the plots, per member sample videos beside ground truth

Intervals: with two or more seeds, a 95% t-interval of the mean over seeds (mean +- t(n-1) * sd / sqrt(n)); with one
seed, the run's own per-clip interval (bootstrap ci95, or mean +- 1.96 sd / sqrt(clips)) where the metric has one.
Best per column: the best mean in the metric's direction (bold). A member whose interval overlaps the best
member's is marked '~' (within noise of the best); without intervals nothing is marked.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import io
import json
import math
from typing import Optional, Sequence

import jax
import numpy as np
from etils import epath
from flax import nnx
from matplotlib.figure import Figure

from avdiff import checkpoint
from avdiff import config_lib
from avdiff import models
from avdiff import run_dir
from avdiff.eval import html_report
from avdiff.eval import stats
from avdiff.train import metrics as metrics_lib

# Seeds differ in these fields only; paths say where data lives, not what was run.
IGNORED_FIELDS = ('seed', 'data.data_dir')
GAIN_PREFIX = 'val_ema_gain_'


@dataclasses.dataclass(frozen=True)
class Metric:
  name: str
  direction: int  # +1 higher is better, -1 lower is better, 0 informative only (never marked best).
  what: str


# Evaluation metrics (eval/<split>.json): outcome measures of `talking` runs, then distribution distances.
EVAL_METRICS = (
    Metric('a2v_r', 1, 'audio_to_video: generated mouth vs the conditioning audio envelope (Pearson r)'),
    Metric('a2v_shuffled_r', 0, "audio_to_video: generated mouth vs another clip's audio (the floor)"),
    Metric('joint_r', 1, 'joint: generated mouth vs generated audio envelope'),
    Metric('v2a_r', 1, 'video_to_audio: generated audio envelope vs the conditioning mouth'),
    Metric('joint_speaker_accuracy', 1, 'joint: speaker of the generated face = the label'),
    Metric('a2v_offset_within_1', 1, 'audio_to_video: clips with |offset| <= 1 frame'),
    Metric('a2v_fd', -1, 'audio_to_video: Frechet distance of clip features to held-out clips'),
    Metric('joint_fd', -1, 'joint: Frechet distance of clip features to held-out clips'),
    Metric('a2v_fvd', -1, 'audio_to_video: FVD (I3D) to held-out clips'),
    Metric('joint_fvd', -1, 'joint: FVD (I3D) to held-out clips'),
)
# Training metrics (metrics.jsonl).
TRAIN_METRICS = (
    Metric('params_m', 0, 'trained parameters, millions'),
    Metric('tokens_per_clip', 0, 'tokens the DiT sees per clip'),
    Metric('step_s', -1, 'median seconds per train step (after compilation)'),
    Metric('clips_per_s', 1, 'median training throughput, clips per second'),
    Metric('final_loss', 0, 'training loss at the last logged step (objectives differ in scale)'),
    Metric('final_val_ema_loss', 0, 'held-out loss of the EMA params at the last evaluation'),
)
_CONDITION_METRICS = {'a2v_fd': ('model_audio_to_video', 'fd'), 'joint_fd': ('model_joint', 'fd'),
                      'a2v_fvd': ('model_audio_to_video', 'fvd'), 'joint_fvd': ('model_joint', 'fvd')}


@dataclasses.dataclass
class RunRecord:
  """What a finished (or running) run directory says about itself, read from its files; no model is restored."""
  path: epath.Path
  member: str
  config: object  # ml_collections.ConfigDict
  rows: list[dict]  # metrics.jsonl, merged per step
  result: Optional[dict]  # eval/<split>.json
  values: dict = dataclasses.field(default_factory=dict)  # metric -> (value, (lo, hi) | None)


@dataclasses.dataclass
class Member:
  name: str
  runs: list[RunRecord]
  differences: dict  # field -> value, for the fields that differ between members
  stats: dict = dataclasses.field(default_factory=dict)  # metric -> {'mean', 'std', 'n', 'lo', 'hi'}
  marks: dict = dataclasses.field(default_factory=dict)  # metric -> 'best' | 'noise'


# ----------------------------------------------------------------------------- reading runs

def find_runs(paths: Sequence[str]) -> list[tuple[epath.Path, str]]:
  """(run directory, member name) for each path: a run directory itself (member = its name) or a sweep workdir
  (member = the folder holding seed<s>/ runs)."""
  found = []
  for p in map(epath.Path, paths):
    if (p / checkpoint.CONFIG_FILE).exists():
      found.append((p, p.name))
      continue
    inner = sorted(q for q in p.glob('*/*/' + checkpoint.CONFIG_FILE))
    inner = [(q.parent, q.parent.parent.name) for q in inner] + [
        (q.parent, q.parent.name) for q in sorted(p.glob('*/' + checkpoint.CONFIG_FILE))]
    if not inner:
      raise FileNotFoundError(f'{p}: neither a run directory (no {checkpoint.CONFIG_FILE}) nor a sweep workdir '
                              f'(no <member>/seed<s>/{checkpoint.CONFIG_FILE})')
    found += inner
  return found


def load_run_record(path: epath.Path, member: str) -> RunRecord:
  """The run directory `path` (of sweep member `member`): config.json, metrics.jsonl, eval/<split>.json."""
  config = checkpoint.load_config(str(path))
  result_path = run_dir.RunDir(path).eval_json(config.eval.split)
  result = json.loads(result_path.read_text()) if result_path.exists() else None
  run = RunRecord(path, member, config, metrics_lib.read_metrics(str(path)), result)
  run.values = run_values(run)
  return run


def _param_count(config) -> float:
  """Trained DiT parameters in millions; traced once per model config (the seeds of a member share it)."""
  key = copy.deepcopy(config)
  key.seed = 0  # Seeds do not change the shapes.
  return _param_count_of(checkpoint.config_to_json(key))


@functools.lru_cache(maxsize=64)
def _param_count_of(config_json: str) -> float:
  config = checkpoint.config_from_json(config_json)
  abstract = nnx.eval_shape(lambda: models.build_dit(config, nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param))) / 1e6


def _measure(entry) -> tuple[float, Optional[tuple[float, float]]]:
  """An outcome measure ({'mean', 'std', 'n'} over clips, or a plain number) -> (value, per-clip interval)."""
  if isinstance(entry, dict):
    mean, std, n = entry.get('mean'), entry.get('std'), entry.get('n', 0)
    if mean is None:
      return math.nan, None
    return float(mean), (stats.normal_interval(mean, std, n) if std is not None else None)
  return float(entry), None


def run_values(run: RunRecord) -> dict:
  """metric -> (value, interval or None) of one run."""
  out = {}
  config, rows = run.config, run.rows
  out['params_m'] = (_param_count(config), None)
  out['tokens_per_clip'] = (float(config_lib.layout(config).num_tokens), None)
  timed = [r['steps_per_s'] for r in rows[1:] if 'steps_per_s' in r]  # The first window includes compilation.
  if timed:
    out['step_s'] = (1.0 / float(np.median(timed)), None)
    out['clips_per_s'] = (float(np.median([r['clips_per_s'] for r in rows[1:] if 'clips_per_s' in r])), None)
  losses = [r for r in rows if 'loss' in r]
  if losses:
    out['final_loss'] = (float(losses[-1]['loss']), None)
  vals = [r for r in rows if 'val_ema_loss' in r]
  if vals:
    out['final_val_ema_loss'] = (float(vals[-1]['val_ema_loss']), None)
    for k, v in vals[-1].items():
      if k.startswith(GAIN_PREFIX):
        out['gain_' + k[len(GAIN_PREFIX):]] = (float(v), None)
  result = run.result or {}
  measures = result.get('outcomes', {}).get('measures', {})
  for m in EVAL_METRICS:
    if m.name in measures:
      out[m.name] = _measure(measures[m.name])
  for name, (cond, metric) in _CONDITION_METRICS.items():
    entry = result.get('conditions', {}).get(cond, {}).get('metrics', {}).get(metric)
    if entry is not None:
      ci = entry.get('ci95')
      out[name] = (float(entry['mean']), tuple(ci) if ci and all(map(math.isfinite, ci)) else None)
  return out


# ----------------------------------------------------------------------------- aggregating members

def group(runs: list[RunRecord], order: Sequence[str] = ()) -> list[Member]:
  """Members in `order` (then first-seen order), with the config fields whose values differ between members."""
  by_name: dict[str, list[RunRecord]] = {name: [] for name in order}
  for run in runs:
    by_name.setdefault(run.member, []).append(run)
  by_name = {name: rs for name, rs in by_name.items() if rs}
  flat = {name: checkpoint.flatten_config(rs[0].config) for name, rs in by_name.items()}
  keys = sorted({k for f in flat.values() for k in f})
  differ = [k for k in keys if k not in IGNORED_FIELDS and len({repr(f.get(k)) for f in flat.values()}) > 1]
  return [Member(name, rs, {k: flat[name].get(k) for k in differ}) for name, rs in by_name.items()]


def aggregate(member: Member) -> None:
  """member.stats: per metric the mean over seeds, their sd, n and the interval (see the module docstring)."""
  names = {k for run in member.runs for k in run.values}
  for name in names:
    pairs = [run.values[name] for run in member.runs if name in run.values and math.isfinite(run.values[name][0])]
    if not pairs:
      continue
    s = stats.seed_interval([v for v, _ in pairs])
    if s['n'] == 1 and pairs[0][1] is not None:  # One seed: the run's own per-clip interval.
      s['lo'], s['hi'] = pairs[0][1]
    member.stats[name] = s


def mark(members: list[Member], metrics: Sequence[Metric]) -> None:
  """Marks the best member per metric ('best') and those whose interval overlaps the best's ('noise')."""
  for m in metrics:
    if m.direction == 0:
      continue
    have = [mb for mb in members if m.name in mb.stats]
    if len(have) < 2:
      continue
    best = max(have, key=lambda mb: m.direction * mb.stats[m.name]['mean'])
    best.marks[m.name] = 'best'
    b = best.stats[m.name]
    for mb in have:
      s = mb.stats[m.name]
      if mb is not best and None not in (s['lo'], b['lo']) and s['lo'] <= b['hi'] and b['lo'] <= s['hi']:
        mb.marks[m.name] = 'noise'


def all_metrics(members: list[Member]) -> list[Metric]:
  """Train metrics, evaluation metrics and the denoising gains per noise level that any member has."""
  have = {k for mb in members for k in mb.stats}
  gains = sorted(k for k in have if k.startswith('gain_'))
  gain_metrics = [Metric(g, -1, 'denoising error / predict-the-mean error (EMA), ' + g[len('gain_'):]) for g in gains]
  return [m for m in TRAIN_METRICS + EVAL_METRICS if m.name in have] + gain_metrics


# ----------------------------------------------------------------------------- tables

def _fmt(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


def _cell(member: Member, name: str) -> str:
  s = member.stats.get(name)
  if s is None:
    return '—'
  text = f'{s["mean"]:.3g}'
  if s['n'] > 1 and s['std'] > 1e-9 * max(1.0, abs(s['mean'])):  # Not for values every seed shares.
    text += f' ± {s["std"]:.2g}'
  mark_ = member.marks.get(name)
  return f'**{text}**' if mark_ == 'best' else (text + ' ~' if mark_ == 'noise' else text)


def markdown(members: list[Member], metrics: list[Metric]) -> str:
  diff_keys = list(members[0].differences) if members else []
  head = ['member', 'seeds'] + diff_keys + [m.name for m in metrics]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for mb in members:
    cells = [mb.name, str(len(mb.runs))] + [_fmt(mb.differences[k]) for k in diff_keys]
    lines.append('| ' + ' | '.join(cells + [_cell(mb, m.name) for m in metrics]) + ' |')
  legend = ('\nValues: mean ± sd over seeds. **Bold**: best in the column; ~: its interval overlaps the best '
            "one's (within noise). Intervals: 95% t-interval over seeds (2+ seeds), else the run's per-clip interval."
            '\n\n' + '\n'.join(f'- `{m.name}`: {m.what}' for m in metrics))
  return '\n'.join(lines) + '\n' + legend + '\n'


def csv_text(members: list[Member], metrics: list[Metric]) -> str:
  diff_keys = list(members[0].differences) if members else []
  buf = io.StringIO()
  writer = csv.writer(buf)
  writer.writerow(['member', 'seeds', 'runs'] + diff_keys +
                  [f'{m.name}_{s}' for m in metrics for s in ('mean', 'sd', 'lo', 'hi', 'mark')])
  for mb in members:
    row = [mb.name, len(mb.runs), ' '.join(str(r.path) for r in mb.runs)] + [_fmt(mb.differences[k])
                                                                             for k in diff_keys]
    for m in metrics:
      s = mb.stats.get(m.name, {})
      row += [s.get('mean', ''), s.get('std', ''), _fmt(s.get('lo')), _fmt(s.get('hi')), mb.marks.get(m.name, '')]
    writer.writerow(row)
  return buf.getvalue()


# ----------------------------------------------------------------------------- plots

def _save(fig: Figure, path: epath.Path) -> None:
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
  path.write_bytes(buf.getvalue())


def _curves(members: list[Member], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
  """member -> (steps, mean, min, max) over seeds of `key` in metrics.jsonl, at the steps every seed logged."""
  out = {}
  for mb in members:
    per_seed = [{r['step']: float(r[key]) for r in run.rows if isinstance(r.get(key), (int, float))}
                for run in mb.runs]
    steps = sorted(set.intersection(*(set(d) for d in per_seed))) if per_seed else []
    if steps:
      v = np.asarray([[d[s] for s in steps] for d in per_seed])
      out[mb.name] = (np.asarray(steps), v.mean(0), v.min(0), v.max(0))
  return out


def plot_curves(members: list[Member], key: str, ylabel: str, title: str, path: epath.Path,
                log: bool = False) -> bool:
  curves = _curves(members, key)
  if not curves:
    return False
  fig = Figure(figsize=(7, 4))
  ax = fig.add_subplot()
  for name, (steps, mean, lo, hi) in curves.items():
    line, = ax.plot(steps, mean, label=name, marker='o' if len(steps) < 12 else None)
    ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.15)
  ax.set(xlabel='step', ylabel=ylabel, title=title)
  if log:
    ax.set_yscale('log')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)
  return True


def plot_metric_bars(members: list[Member], metrics: list[Metric], path: epath.Path) -> bool:
  shown = [m for m in metrics if m.name in {k for mb in members for k in mb.stats} and not m.name.startswith('gain_')
           and m.name not in ('params_m', 'tokens_per_clip')]
  if not shown:
    return False
  cols = 3
  rows = math.ceil(len(shown) / cols)
  fig = Figure(figsize=(4 * cols, 2.8 * rows))
  for i, m in enumerate(shown):
    ax = fig.add_subplot(rows, cols, i + 1)
    names = [mb.name for mb in members if m.name in mb.stats]
    stats = [mb.stats[m.name] for mb in members if m.name in mb.stats]
    means = [s['mean'] for s in stats]
    err = np.asarray([[s['mean'] - s['lo'], s['hi'] - s['mean']] if s['lo'] is not None else [0.0, 0.0]
                      for s in stats]).T
    ax.bar(range(len(names)), means, yerr=err, capsize=3, color='#4a78b5')
    ax.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=8)
    ax.set_title(m.name, fontsize=9)
    ax.grid(axis='y', alpha=0.3)
  fig.tight_layout()
  _save(fig, path)
  return True


def plot_gains(members: list[Member], path: epath.Path) -> bool:
  fig = Figure(figsize=(10, 3.6))
  drawn = False
  for i, modality in enumerate(('video', 'audio')):
    ax = fig.add_subplot(1, 2, i + 1)
    for mb in members:
      keys = sorted((float(k.rsplit('_t', 1)[1]), k) for k in mb.stats if k.startswith(f'gain_{modality}_t'))
      if not keys:
        continue
      t = [x for x, _ in keys]
      mean = [mb.stats[k]['mean'] for _, k in keys]
      line, = ax.plot(t, mean, marker='o', label=mb.name)
      lo = [mb.stats[k]['lo'] if mb.stats[k]['lo'] is not None else mb.stats[k]['mean'] for _, k in keys]
      hi = [mb.stats[k]['hi'] if mb.stats[k]['hi'] is not None else mb.stats[k]['mean'] for _, k in keys]
      ax.fill_between(t, lo, hi, color=line.get_color(), alpha=0.15)
      drawn = True
    ax.set(xlabel='noise level t', ylabel='x0 error / predict-the-mean error', title=f'denoising gain: {modality}')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if drawn:
    _save(fig, path)
  return drawn


# ----------------------------------------------------------------------------- page

VIDEO_CLIPS = ('ground_truth_0.mp4', 'model_audio_to_video_0.mp4', 'model_joint_0.mp4', 'model_video_to_audio_0.mp4')


def _copy_videos(members: list[Member], out: epath.Path) -> dict[str, list[tuple[str, str]]]:
  """member -> [(caption, path relative to out)] of its first seed's report clips, copied into out/clips/."""
  (out / 'clips').mkdir(parents=True, exist_ok=True)
  videos = {}
  for mb in members:
    got = []
    for name in VIDEO_CLIPS:
      src = mb.runs[0].path / 'report' / 'clips' / name
      if src.exists():
        rel = f'clips/{mb.name}_{name}'
        (out / rel).write_bytes(src.read_bytes())
        got.append((name[:-len('_0.mp4')].replace('_', ' '), rel))
    videos[mb.name] = got
  return videos


def html_page(members: list[Member], metrics: list[Metric], images: list[tuple[str, str]],
              videos: dict[str, list[tuple[str, str]]], title: str) -> str:
  e, num = html_report.escape, html_report.fmt_num
  diff_keys = list(members[0].differences) if members else []
  head = ['member', 'seeds'] + diff_keys + [m.name for m in metrics]
  body = []
  for mb in members:
    cells = [f'<td>{e(mb.name)}</td><td class="num">{len(mb.runs)}</td>']
    cells += [f'<td>{e(_fmt(mb.differences[k]))}</td>' for k in diff_keys]
    for m in metrics:
      s = mb.stats.get(m.name)
      if s is None:
        cells.append('<td class="num">—</td>')
        continue
      interval = f'<br><small>[{num(s["lo"])}, {num(s["hi"])}]</small>' if s['lo'] is not None else ''
      style = ' style="font-weight:bold"' if mb.marks.get(m.name) == 'best' else ''
      tilde = ' ~' if mb.marks.get(m.name) == 'noise' else ''
      cells.append(f'<td class="num"{style} title="n={s["n"]}, sd={num(s["std"])}">{num(s["mean"])}{tilde}'
                   f'{interval}</td>')
    body.append('<tr>' + ''.join(cells) + '</tr>')
  legend = ('<p><small>Mean over seeds, 95% interval below it (t-interval over seeds with 2+ seeds, else the '
            "run's per-clip interval). Bold: best in the column; ~: interval overlaps the best one's (within "
            'noise).</small></p><ul>' + ''.join(f'<li><code>{e(m.name)}</code>: {e(m.what)}</li>' for m in metrics)
            + '</ul>')
  imgs = ''.join(f'<h2>{e(caption)}</h2><img class="sheet" src="{html_report.src(rel)}" alt="{e(caption)}">'
                 for caption, rel in images)
  rows = []
  for mb in members:
    figs = ''.join(f'<figure><video controls preload="metadata" src="{html_report.src(rel)}"></video>'
                   f'<figcaption>{e(caption)}</figcaption></figure>' for caption, rel in videos.get(mb.name, []))
    rows.append(f'<h3>{e(mb.name)}</h3><div style="display:flex;gap:1em;flex-wrap:wrap">'
                f'{figs or "<p>no clips</p>"}</div>')
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>'
          f'<style>{html_report.CSS}</style></head><body><h1>{e(title)}</h1>'
          + html_report.html_table(head, body) + legend + imgs
          + '<h2>Samples (first seed; held-out ground truth first)</h2>' + ''.join(rows) + '</body></html>')


def compare(paths: Sequence[str], out: str, title: str = '', order: Sequence[str] = (),
            finished_only: bool = False, command: str = '') -> dict:
  """Reads the runs, writes out/{comparison.md, comparison.csv, *.png, index.html}; returns {'members',
  'metrics', 'differences', 'files'}. order: member names in table order (e.g. a sweep's); others follow.
  finished_only: leave out runs without an evaluation result (a sweep still running). command: the command line
  that asked for the comparison, quoted on the first line of comparison.md."""
  runs = [load_run_record(p, member) for p, member in find_runs(paths)]
  if finished_only:
    runs = [run for run in runs if run.result is not None]
  members = group(runs, order)
  for mb in members:
    aggregate(mb)
  metrics = all_metrics(members)
  mark(members, metrics)
  out_dir = epath.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  head = f'Written by `{command}` from the runs\' metrics.jsonl and eval/<split>.json.\n\n' if command else ''
  (out_dir / 'comparison.md').write_text(head + markdown(members, metrics))
  (out_dir / 'comparison.csv').write_text(csv_text(members, metrics))
  images = []
  plots = (('loss.png', 'Training loss', lambda p: plot_curves(members, 'loss', 'loss', 'training loss', p, True)),
           ('time_to_sync.png', 'Time to sync (in-loop audio_to_video r)',
            lambda p: plot_curves(members, 'eval/a2v_r', 'a2v r', 'audio_to_video mouth vs audio r', p)),
           ('metrics.png', 'Metrics with intervals', lambda p: plot_metric_bars(members, metrics, p)),
           ('gain.png', 'Denoising gain per noise level', lambda p: plot_gains(members, p)))
  for name, caption, draw in plots:
    if draw(out_dir / name):
      images.append((caption, name))
  videos = _copy_videos(members, out_dir)
  (out_dir / 'index.html').write_text(html_page(members, metrics, images, videos, title or 'Comparison'))
  return {'members': [mb.name for mb in members], 'metrics': [m.name for m in metrics],
          'differences': list(members[0].differences) if members else [],
          'files': ['comparison.md', 'comparison.csv'] + [rel for _, rel in images] + ['index.html']}
