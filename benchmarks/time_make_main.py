"""Wall time of `make main` on a clean clone: set-up (venv, pinned install), dataset build, training, sampling and
evaluation, as a new user runs it.

    python -m benchmarks.time_make_main [--out=benchmarks/make_main.md] [--keep=DIR]

Clones the committed HEAD of this repository into a temporary folder (no venv, no data, no runs), runs `make main`
there and writes the wall time with the verdict of its evaluation (runs/tiny/eval/test.json). Run it alone on the
machine: every other process shares the cores. pip's download cache is the machine's, so package downloads are
not part of the time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from avdiff.study import verdicts
from benchmarks import report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='benchmarks/make_main.md')
  parser.add_argument('--keep', default='', help='Clone into this folder and keep it (default: a temporary one).')
  args = parser.parse_args()
  clone = args.keep or tempfile.mkdtemp(prefix='avdiff_make_main_')
  if os.path.exists(clone):
    shutil.rmtree(clone)
  head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, check=True, capture_output=True,
                        text=True).stdout.strip()
  subprocess.run(['git', 'clone', '-q', REPO, clone], check=True)
  env = {k: v for k, v in os.environ.items() if not k.startswith(('AVDIFF_', 'VIRTUAL_ENV'))}
  start = time.perf_counter()
  proc = subprocess.run(['make', 'main'], cwd=clone, env=env)  # The Makefile's own python3 builds the venv.
  seconds = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f'make main failed with exit code {proc.returncode} in {clone}')
  verdict = verdicts.run_verdict(os.path.join(clone, 'runs', 'tiny'))
  met = sum(r['met'] for r in verdict)
  missed = [r['name'] for r in verdict if not r['met']]
  lines = [f'Written by `python -m benchmarks.time_make_main {" ".join(sys.argv[1:])}` (a clean clone of {head}, '
           '`make main` alone on the machine).', '',
           '| command | wall time | targets met |', '|---|---|---|',
           f'| make main | {int(seconds // 60)} min {int(seconds % 60)} s | {met} of {len(verdict)}'
           + (f' (missed: {", ".join(missed)})' if missed else '') + ' |']
  report.emit(lines, args.out)
  if not args.keep:
    shutil.rmtree(clone, ignore_errors=True)


if __name__ == '__main__':
  main()
