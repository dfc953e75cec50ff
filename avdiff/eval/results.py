"""Writing evaluation results: JSON, a markdown summary, and a workdir's files (W/eval/, W/report/).

    results.write_workdir(run, evaluation, config)  # W/eval/<split>.md, W/report/index.html, then W/eval/<split>.json
    print(results.markdown(result))                 # metrics table per condition, then the outcome targets
"""

from __future__ import annotations

import json
import math
import os

import ml_collections
import numpy as np

from avdiff import run_dir
from avdiff.eval import conditions as conditions_lib
from avdiff.eval import html_report
from avdiff.eval import outcomes
from avdiff.eval import workdir as workdir_lib


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


def metrics_table(result: dict) -> str:
  """Markdown: rows = conditions of `result['conditions']`; cells = mean [95% bootstrap CI] of the headline
  metrics (conditions.HEADLINE); n = clips scored; then the protocol."""
  conds = result['conditions']
  cols = [m for m in conditions_lib.HEADLINE if any(m in c.get('metrics', {}) for c in conds.values())]
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


def markdown(result: dict) -> str:
  """A workdir result as markdown: the metrics table, the outcome targets (talking data) and the report's path."""
  text = metrics_table(result)
  if 'verdict' in result.get('outcomes', {}):
    text += '\n## Outcome targets\n\n' + outcomes.verdict_markdown(result['outcomes']['verdict'])
  if 'report' in result:
    text += f'\nReport: {result["report"]}\n'
  return text


def write_workdir(run: run_dir.RunDir, evaluation: workdir_lib.Evaluation, config: ml_collections.ConfigDict) -> None:
  """W/eval/<split>.md, W/report/ (HTML, png and mp4 are written locally and copied up when W is on a bucket),
  then W/eval/<split>.json last: its presence marks the run evaluated (a sweep skips it), so it must not appear
  before the rest. Sets result['report'] to the report page's path."""
  result, split = evaluation.result, evaluation.split
  run.write_text(f'eval/{split}.md', markdown(result))
  with run.staged(run.report) as local:
    index = html_report.write_report(local, result, evaluation.conditions, config.data,
                                     title=f'{run.name}: {split}')
  run.write_text(f'eval/{split}.json', json.dumps(result, indent=2, default=_json_default))
  result['report'] = str(run.report / os.path.basename(index))


def folder_summary(result: dict) -> dict:
  """The headline of a folder result: protocol, counts, skip reasons, every aggregate's mean (and FVD)."""
  summary = {'protocol': result['protocol']['protocol'], 'num_scored': result['num_scored'],
             'num_skipped': result['num_skipped'], 'skip_reasons': result['skip_reasons'],
             **{k: v['mean'] for k, v in result['aggregate'].items()}}
  if 'fvd' in result:
    summary['fvd'] = result['fvd']['fvd']
  return summary


def _json_default(o):
  if isinstance(o, np.integer):
    return int(o)
  if isinstance(o, np.floating):
    return float(o)
  if isinstance(o, np.ndarray):
    return o.tolist()
  return str(o)


def write_json(result: dict, path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f, indent=2, default=_json_default)
