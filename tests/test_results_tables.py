"""Result tables are written by commands: every README block is its benchmarks/NAME.md, every such file names the
command that wrote it, and the committed verdict tables have the format the generator writes today."""

import json
import os
import re

import pytest

from avdiff.eval import outcomes
from avdiff.study import verdicts
from benchmarks import report
from configs import tiny

VERDICT_TABLES = ('files_outcome', 'files_outcome_old_recipe', 'files_outcome_time_bias', 'main_job')


def _read(path):
  with open(path) as f:
    return f.read()


def _table_rows(text):
  """[first-column cell] of the markdown table rows after the header, and the header cells."""
  rows = [line for line in text.splitlines() if line.startswith('| ')]
  header = [c.strip() for c in rows[0].strip('|').split(' | ')]
  return [re.split(r'(?<!\\) \| ', r[2:])[0] for r in rows[1:]], header


@pytest.mark.parametrize('readme', report.READMES)
def test_readme_blocks_are_the_generated_files(readme):
  found = report.blocks(_read(os.path.join(report.REPO, readme)))
  assert found or readme != 'README.md'
  for name, body in found.items():
    assert body == _read(report.table_file(name)), (
        f'{readme} block {name} differs from benchmarks/{name}.md: run python -m benchmarks.report')


def test_sync_copies_the_files_and_leaves_the_readme_whole_when_one_is_missing(tmp_path):
  (tmp_path / 'benchmarks').mkdir()
  (tmp_path / 'benchmarks' / 'a.md').write_text('Written by `python -m x`.\n\n| t |\n')
  readme = 'intro\n<!-- a -->\nold\n<!-- /a -->\nend\n'
  (tmp_path / 'README.md').write_text(readme)
  (tmp_path / 'benchmarks' / 'README.md').write_text('<!-- b -->\n<!-- /b -->\n')
  with pytest.raises(FileNotFoundError, match="no benchmarks/b.md"):
    report.sync_readmes(str(tmp_path))
  assert (tmp_path / 'benchmarks' / 'README.md').read_text() == '<!-- b -->\n<!-- /b -->\n'
  (tmp_path / 'benchmarks' / 'README.md').write_text('no blocks\n')
  assert report.sync_readmes(str(tmp_path)) == ['a']
  assert (tmp_path / 'README.md').read_text() == 'intro\n<!-- a -->\nWritten by `python -m x`.\n\n| t |\n<!-- /a -->\nend\n'
  assert report.sync_readmes(str(tmp_path)) == []


def test_every_table_file_names_its_command():
  for name in os.listdir(os.path.join(report.REPO, 'benchmarks')):
    if name.endswith('.md') and name != 'README.md':
      first = _read(os.path.join(report.REPO, 'benchmarks', name)).splitlines()[0]
      assert re.match(r'Written by `python -m [\w.]+ .*`', first), f'benchmarks/{name}: {first!r}'


def _fake_run(root, seed, measures):
  run = root / f'seed{seed}'
  (run / 'eval').mkdir(parents=True)
  config = tiny.get_config()
  config.seed = seed
  (run / 'config.json').write_text(config.to_json())
  (run / 'metrics.jsonl').write_text(json.dumps({'step': 10, 'wall_s': 120.0 + seed}) + '\n')
  (run / 'eval' / 'test.json').write_text(json.dumps({'outcomes': {'verdict': outcomes.verdict(measures)}}))
  return str(run)


def test_generator_writes_the_committed_format(tmp_path):
  """The generator on two runs with every target: one row per target in TARGETS' order plus the wall time, values
  and the met count per row; each committed verdict table has the same header shape and row names."""
  measures = {name: ({'mean': 0.9 if op == '>=' else 0.1} if stat else 0.9)
              for name, stat, op, _, _ in outcomes.TARGETS}
  runs = [_fake_run(tmp_path, s, measures) for s in (0, 1)]
  lines = verdicts.seeds_table(runs + [str(tmp_path / 'missing')], 'python -m experiments.compare A B')
  text = '\n'.join(lines)
  assert lines[0].startswith('Written by `python -m experiments.compare A B` from each run')
  names, header = _table_rows(text)
  assert header == ['target', 'threshold', 'seed 0', 'seed 1', 'mean +- sd', 'met']
  expected = [what.replace('|', '\\|') for *_, what in outcomes.TARGETS]
  assert names[:-1] == expected and names[-1].startswith('training wall time')
  assert '| 0.900 | 0.900 | 0.900 +- 0.000 | all of 2 |' in text
  assert '|  | 2.0 | 2.0 | 2.0 +- 0.0 |  |' in text  # Training minutes: 120 s and 121 s.
  assert 'Not evaluated yet: ' + str(tmp_path / 'missing') in text
  for name in VERDICT_TABLES:
    committed = _read(report.table_file(name))
    got, head = _table_rows(committed)
    assert head[:2] == ['target', 'threshold'] and head[-2:] == ['mean +- sd', 'met'], name
    assert all(h.startswith('seed ') for h in head[2:-2]), name
    assert [n for n in got if not n.startswith('training wall time')] == expected, name
