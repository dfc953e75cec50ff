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
  (run / 'eval' / 'test.json').write_text(json.dumps({'outcomes': {'verdict': outcomes.verdict(measures)},
                                                     'conditions': {'model_joint': {'metrics': {'fvd': {
                                                         'mean': 100.0 + 10 * seed}}}}}))
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


def test_recipes_table_puts_recipes_side_by_side_with_stage1_costs(tmp_path):
  """A pixel and a latent recipe: one mean +- sd and met count per recipe and target; the latent recipe's one-time
  stage-1 costs come from its autoencoder's directory and add up with its DiT time into the from-scratch row."""
  from avdiff import autoencoders
  measures = {name: ({'mean': 0.9 if op == '>=' else 0.1} if stat else 0.9)
              for name, stat, op, _, _ in outcomes.TARGETS}
  pixel = [_fake_run(tmp_path / 'pixel', s, measures) for s in (0, 1)]
  worse = dict(measures, **{name: 0.5 for name, stat, *_ in outcomes.TARGETS if not stat})
  latent = [_fake_run(tmp_path / 'latent', s, measures if s == 0 else worse) for s in (0, 1)]
  ae_dir = tmp_path / 'stage1' / 'joint_ae-x'
  ae_dir.mkdir(parents=True)
  (ae_dir / autoencoders.MARKER).write_text(json.dumps({'seconds': 600.0}))
  (ae_dir / autoencoders.LATENT_CACHE).write_text(json.dumps({'dataset': 'd', 'seconds': 30.0}))
  for run in latent:
    config = tiny.get_config()
    config.model.encoder, config.model.autoencoder_workdir = 'joint_ae', str(ae_dir)
    with open(os.path.join(run, 'config.json'), 'w') as f:
      f.write(config.to_json())
  recipes = verdicts.parse_recipes([f'pixel={",".join(pixel)}', f'latent={",".join(latent)}'])
  assert recipes == {'pixel': pixel, 'latent': latent}
  text = '\n'.join(verdicts.recipes_table(recipes, 'python -m experiments.compare P L'))
  names, header = _table_rows(text)
  assert header == ['target', 'threshold', 'pixel (2 seeds)', 'met', 'latent (2 seeds)', 'met']
  assert names[:len(outcomes.TARGETS)] == [what.replace('|', '\\|') for *_, what in outcomes.TARGETS]
  assert '| 0.900 +- 0.000 | all of 2 | 0.700 +- 0.200 | 1 of 2 |' in text  # A scalar target, worse on seed 1.
  fvd = '| joint: FVD against the held-out clips (not a target; lower is better) |  | 105 +- 5 |  | 105 +- 5 |  |'
  assert fvd in text
  assert '| audio_to_video: FVD against the held-out clips (not a target; lower is better) |  |  |  |  |  |' in text
  assert '| stage 1 once: autoencoder training + evaluation, minutes |  | none |  | 10.0 |  |' in text
  assert '| stage 1 once: latent cache of train + validation, minutes |  | none |  | 0.5 |  |' in text
  assert '| from scratch: stage 1 + latent cache + one DiT run, minutes |  | 2.0 |  | 12.5 |  |' in text
  with pytest.raises(Exception, match='LABEL=RUN'):
    verdicts.parse_recipes(['runs/a'])
