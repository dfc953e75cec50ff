r"""Runs a sweep (configs/sweeps/NAME.py): trains and evaluates every member x seed, then compares them.

    python -m experiments.ablate --sweep=configs/sweeps/NAME.py --workdir=runs/NAME
    python -m experiments.ablate --sweep=configs/sweeps/NAME.py --workdir=runs/NAME --member=dual_tower --seed=1
    python -m experiments.ablate --sweep=configs/sweeps/NAME.py --workdir=runs/NAME --compare_only
    python -m experiments.ablate --sweep=configs/sweeps/NAME.py --workdir=runs/NAME_smoke --seeds=0 \
        --override=train.steps=50 --override=train.eval_every=25    # a smoke test of every member first

Members run one after another on this machine; a member x seed whose run already holds its evaluation is skipped,
and an interrupted one resumes from its checkpoint, so rerunning the command continues the sweep. On a cluster
each member x seed is its own job (--member, --seed; README 'Sweeps on a cluster'), then --compare_only writes
the comparison (runs/NAME/report: comparison.md / .csv, plots, index.html).
"""

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import sys

from absl import flags
from etils import epath

from avdiff import parallel
from avdiff.study import compare
from avdiff.study import sweep as sweep_lib

_SWEEP = flags.DEFINE_string('sweep', None, 'Sweep file (defines get_sweep()).', required=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep directory: <workdir>/<member>/seed<s>/.', required=True)
_MEMBER = flags.DEFINE_string('member', '', 'Run only this member (with --seed: one job of a cluster array).')
_SEED = flags.DEFINE_integer('seed', None, "Run only this seed (with --member; default: all the sweep's seeds).")
_COMPARE_ONLY = flags.DEFINE_bool('compare_only', False, 'Only write the comparison of the finished runs.')
_OVERRIDES = flags.DEFINE_multi_string('override', [], "'section.field=value' applied to every member after its "
                                       "own delta and the sweep's overrides (repeatable; value as a Python literal).")
_SEEDS = flags.DEFINE_list('seeds', None, "Seeds to run instead of the sweep's.")
_COORDINATOR = flags.DEFINE_string('coordinator_address', '', 'host:port of process 0 (multi-host job).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Processes of one job; -1 = from the environment.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'Index of this process.')


def main(argv):
  del argv
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  sweep = sweep_lib.with_overrides(sweep_lib.load_sweep(_SWEEP.value), _OVERRIDES.value, _SEEDS.value)
  if _MEMBER.value:
    seeds = [_SEED.value] if _SEED.value is not None else sweep.seeds
    for seed in seeds:
      run = sweep_lib.run_member(sweep, _WORKDIR.value, _MEMBER.value, seed)
      if run is None:
        console.say('Preempted: saved; rerun the same command to continue.')
        return
      console.say(f'Finished: {run}')
    return
  if not _COMPARE_ONLY.value:
    runs = sweep_lib.run_sweep(sweep, _WORKDIR.value)
    if len(runs) < len(sweep.members) * len(sweep.seeds):
      console.say('Preempted: saved; rerun the same command to continue the sweep.')
      return
  out = str(epath.Path(_WORKDIR.value) / 'report')  # A local folder or gs://.
  summary = compare.compare([_WORKDIR.value], out, title=f'sweep {sweep.name}', order=list(sweep.members),
                            finished_only=True, command='python -m experiments.ablate ' + ' '.join(sys.argv[1:]))
  console.say(f"Compared {len(summary['members'])} members: {out}/index.html")


if __name__ == '__main__':
  console.run(main)
