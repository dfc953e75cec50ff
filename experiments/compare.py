"""Puts runs side by side: tables (markdown, CSV), plots and an HTML page with sample videos.

    python -m experiments.compare runs/a runs/b ... --out=reports/ab
    python -m experiments.compare runs/NAME --out=reports/NAME          # a sweep workdir (members x seeds)

Run directories may be on a bucket (gs://...). See avdiff.study.compare for the columns, the interval rule and
the 'within noise' marks.
"""

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import app, flags

from avdiff.study import compare

_OUT = flags.DEFINE_string('out', None, 'Output folder (comparison.md / .csv, PNGs, index.html).', required=True)
_TITLE = flags.DEFINE_string('title', '', 'Page title (default: Comparison).')
_FINISHED_ONLY = flags.DEFINE_bool('finished_only', False, 'Leave out runs that have no evaluation result yet.')


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give one or more run directories or sweep workdirs')
  summary = compare.compare(argv[1:], _OUT.value, _TITLE.value, finished_only=_FINISHED_ONLY.value)
  console.say(f"Compared {len(summary['members'])} members ({', '.join(summary['members'])}); "
              f"differences: {', '.join(summary['differences']) or 'none'}; {_OUT.value}/index.html")


if __name__ == '__main__':
  console.run(main, takes_arguments=True)
