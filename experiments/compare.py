"""Puts runs side by side: tables (markdown, CSV), plots and an HTML page with sample videos.

    python -m experiments.compare runs/a runs/b ... --out=reports/ab
    python -m experiments.compare runs/NAME --out=reports/NAME          # a sweep workdir (members x seeds)
    python -m experiments.compare runs/tiny runs/tiny_s1 runs/tiny_s2 --seeds_table=benchmarks/main_job.md
    python -m experiments.compare pixel=runs/p/seed0,runs/p/seed1 latent=runs/l/seed0,runs/l/seed1 \
        --recipes_table=benchmarks/latent_main_job.md

With --seeds_table the runs are taken as seeds of one recipe and only their verdict table is written (stdout and
the file; avdiff.study.verdicts), headed by this command line. With --recipes_table each argument is
LABEL=RUN,RUN,... (one recipe's seeds) and the table has a column per recipe, with stage 1's one-time cost.

Run directories may be on a bucket (gs://...). See avdiff.study.compare for the columns, the interval rule and
the 'within noise' marks.
"""

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import sys

from absl import app, flags

from avdiff.study import compare
from avdiff.study import verdicts

_OUT = flags.DEFINE_string('out', '', 'Output folder (comparison.md / .csv, PNGs, index.html).')
_TITLE = flags.DEFINE_string('title', '', 'Page title (default: Comparison).')
_FINISHED_ONLY = flags.DEFINE_bool('finished_only', False, 'Leave out runs that have no evaluation result yet.')
_SEEDS_TABLE = flags.DEFINE_string('seeds_table', '', 'Markdown file: the verdict table of the runs as seeds of one '
                                   'recipe (instead of the comparison).')
_RECIPES_TABLE = flags.DEFINE_string('recipes_table', '', 'Markdown file: the verdict of recipes side by side, each '
                                     'argument LABEL=RUN,RUN,... (instead of the comparison).')


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give one or more run directories or sweep workdirs')
  command = 'python -m experiments.compare ' + ' '.join(sys.argv[1:])
  if _SEEDS_TABLE.value or _RECIPES_TABLE.value:
    if _RECIPES_TABLE.value:
      text = '\n'.join(verdicts.recipes_table(verdicts.parse_recipes(argv[1:]), command))
    else:
      text = '\n'.join(verdicts.seeds_table(argv[1:], command))
    print(text)
    with open(_RECIPES_TABLE.value or _SEEDS_TABLE.value, 'w') as f:
      f.write(text + '\n')
    return
  if not _OUT.value:
    raise app.UsageError('--out=FOLDER is required (or --seeds_table=FILE)')
  summary = compare.compare(argv[1:], _OUT.value, _TITLE.value, finished_only=_FINISHED_ONLY.value,
                            command=command)
  console.say(f"Compared {len(summary['members'])} members ({', '.join(summary['members'])}); "
              f"differences: {', '.join(summary['differences']) or 'none'}; {_OUT.value}/index.html")


if __name__ == '__main__':
  console.run(main, takes_arguments=True)
