"""Output of the benchmark scripts: the result text on stdout, and in a file when one is named; and the copies of
those files inside the READMEs.

A README carries a generated table between `<!-- NAME -->` and `<!-- /NAME -->`; the block holds exactly the text of
benchmarks/NAME.md, which the command named on its first line wrote. After regenerating a table:

    python -m benchmarks.report        # copies every benchmarks/NAME.md into the README blocks named NAME
"""

from __future__ import annotations

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READMES = ('README.md', 'benchmarks/README.md')
BLOCK = re.compile(r'<!-- ([\w.-]+) -->\n(.*?)<!-- /\1 -->\n', re.S)


def emit(lines: list[str], out: str = '') -> str:
  """Prints the lines joined and writes them to `out` (with a final newline) when it is not empty."""
  text = '\n'.join(lines)
  print(text)
  if out:
    with open(out, 'w') as f:
      f.write(text + '\n')
  return text


def blocks(readme_text: str) -> dict[str, str]:
  """{NAME: the text between <!-- NAME --> and <!-- /NAME -->} of a README."""
  return {m.group(1): m.group(2) for m in BLOCK.finditer(readme_text)}


def table_file(name: str, repo: str = REPO) -> str:
  return os.path.join(repo, 'benchmarks', f'{name}.md')


def sync_readmes(repo: str = REPO) -> list[str]:
  """Replaces every README block by its benchmarks/NAME.md; returns the names of the blocks that changed. A block
  whose file is missing raises FileNotFoundError before any README is written."""
  changed, filled = [], {}
  for readme in READMES:
    path = os.path.join(repo, readme)
    with open(path) as f:
      text = f.read()

    def fill(m):
      if not os.path.exists(table_file(m.group(1), repo)):
        raise FileNotFoundError(f'{readme} has a block {m.group(1)!r} but there is no benchmarks/{m.group(1)}.md')
      with open(table_file(m.group(1), repo)) as f:
        body = f.read()
      if body != m.group(2):
        changed.append(m.group(1))
      return f'<!-- {m.group(1)} -->\n{body}<!-- /{m.group(1)} -->\n'

    filled[path] = BLOCK.sub(fill, text)
  for path, text in filled.items():
    with open(path, 'w') as f:
      f.write(text)
  return changed


if __name__ == '__main__':
  print('Updated blocks:', ', '.join(sync_readmes()) or 'none')
