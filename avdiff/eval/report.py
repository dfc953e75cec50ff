"""Markdown table of an evaluation result: one row per condition, one column per headline metric."""

from __future__ import annotations

import math

# offset_confidence is left out: it repeats lse_c (with a sync expert) or the estimator's peak correlation.
HEADLINE = ('av_align', 'offset_frames', 'abs_offset_frames', 'offset_determined_rate', 'lse_c', 'lse_d',
            'envelope_peak_correlation', 'fd', 'kid', 'fvd', 'nn_dist_ratio')


def _cell(entry) -> str:
  if entry is None:
    return '-'
  if isinstance(entry, dict):
    mean, ci = entry.get('mean', math.nan), entry.get('ci95')
    if ci and all(isinstance(c, float) and math.isfinite(c) for c in ci):
      return f'{mean:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]'
    return f'{mean:.3f}'
  if isinstance(entry, float):
    return f'{entry:.3f}'
  return str(entry)


def markdown_table(result: dict) -> str:
  """Rows = conditions of `result['conditions']`; cells = mean [95% bootstrap CI]; n = clips scored."""
  conds = result['conditions']
  cols = [m for m in HEADLINE if any(m in c.get('metrics', {}) for c in conds.values())]
  lines = ['| condition | n | skipped | ' + ' | '.join(cols) + ' |', '|' + '---|' * (len(cols) + 3)]
  for name, c in conds.items():
    if 'unavailable' in c:
      lines.append(f'| {name} | 0 | - | ' + ' | '.join(['-'] * len(cols)) + f' |  (unavailable: {c["unavailable"]})')
      continue
    cells = [_cell(c['metrics'].get(m)) for m in cols]
    lines.append(f'| {name} | {c["num_scored"]} | {c["num_skipped"]} | ' + ' | '.join(cells) + ' |')
  p = result.get('protocol', {})
  lines.append('')
  lines.append('Protocol: ' + ', '.join(f'{k}={v}' for k, v in p.items()))
  return '\n'.join(lines) + '\n'
