"""Evaluate audio-visual sync: a folder of video files, or a training run's held-out split.

    python -m experiments.evaluate --clips=DIR --out=FILE.json [--protocol=native|config] [--faces=auto|on|off]
        [--fvd_reference=DIR] [--sync_expert=W] [--syncnet=syncnet_v2.model] [--config.eval.crop_box='(y0,x0,y1,x1)']
    python -m experiments.evaluate --workdir=runs/tiny --split=test [--num_clips=N] [--params=ema|raw]

Folder mode scores each file on its own clock by default (--protocol=native: native frame rate, sample rate and
resolution, the whole file in one streamed decode, per-window values; avdiff.eval.native), or at the training
config's protocol (--protocol=config: data.fps / data.sample_rate / data.resolution, first data.clip_seconds). Sync
is read from stream timestamps. Offsets are NaN with a reason when the estimator is unsure. With a sync expert or
SyncNet and no crop box, faces are tracked and files without one are skipped. --fvd_reference adds FVD (I3D) of the
folder against a folder of reference videos. Per-file metrics, aggregates, skipped files and the protocol go to
FILE.json. Workdir mode scores ground truth, shuffled and
shifted audio and model samples (joint, audio_to_video, video_to_audio) and writes W/eval/<split>.json and
W/eval/<split>.md; on `talking` data also the outcome targets (avdiff.eval.outcomes) and W/report/index.html.
"""

import json

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import app
from absl import flags
from ml_collections import config_flags

from avdiff import checkpoint
from avdiff import parallel
from avdiff import run_dir
from avdiff.eval import folder
from avdiff.eval import results
from avdiff.eval import workdir
from avdiff.eval import scoring
from avdiff.eval import syncnet
from configs import base

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config (folder mode). Workdir mode reads '
                                          "W/config.json and applies --config.<field>=value overrides on top.")
_CLIPS = flags.DEFINE_string('clips', '', 'Folder of video files to score.')
_OUT = flags.DEFINE_string('out', '', 'Result JSON (folder mode).')
_WORKDIR = flags.DEFINE_string('workdir', '', 'Training run to evaluate.')
_SPLIT = flags.DEFINE_string('split', '', 'Held-out split (default config.eval.split).')
_NUM_CLIPS = flags.DEFINE_integer('num_clips', 0, 'Clips per condition (default config.eval.num_clips).')
_SYNC_EXPERT = flags.DEFINE_string('sync_expert', '', 'Workdir of a trained sync expert.')
_PARAMS = flags.DEFINE_enum('params', None, ['ema', 'raw'], 'Workdir mode: sample from the EMA or the raw params '
                            '(default config.eval.params).')
_PROTOCOL = flags.DEFINE_enum('protocol', None, ['native', 'config'], 'Folder mode: each file on its own clock '
                               '(native) or at the config protocol (default config.eval.protocol).')
_FACES = flags.DEFINE_enum('faces', None, ['auto', 'on', 'off'], 'Folder mode: track faces for the mouth region '
                           '(default config.eval.faces; auto = when a lip-sync scorer runs without a crop box).')
_FVD_REFERENCE = flags.DEFINE_string('fvd_reference', None, 'Folder mode: reference videos for FVD.')
_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID = parallel.process_flags()
_SYNCNET = flags.DEFINE_string('syncnet', '', 'Path to public syncnet_v2.model weights (needs torch).')


def main(argv):
  del argv
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if bool(_CLIPS.value) == bool(_WORKDIR.value):
    raise app.UsageError('give exactly one of --clips=DIR (with --out=FILE.json) or --workdir=W')
  if _CLIPS.value:
    if not _OUT.value:
      raise app.UsageError('--clips needs --out=FILE.json')
    config = _CONFIG.value
    for flag, key in ((_PROTOCOL, 'protocol'), (_FACES, 'faces'), (_FVD_REFERENCE, 'fvd_reference'),
                      (_SYNC_EXPERT, 'sync_expert_workdir')):
      if flag.value:
        config.eval[key] = flag.value
    expert = scoring.load_scorer(config.eval.sync_expert_workdir, config) if config.eval.sync_expert_workdir else None
    result = folder.evaluate_folder(_CLIPS.value, config, expert,
                                    syncnet.load_syncnet(_SYNCNET.value) if _SYNCNET.value else None)
    results.write_json(result, _OUT.value)
    print(json.dumps(results.folder_summary(result), indent=2))
    return
  if flags.FLAGS['config'].present:
    raise console.UserError('--workdir evaluates a run with its own config (W/config.json); change fields of it '
                            'with --config.<section>.<field>=value, not with --config=FILE')
  # The run's config.json on top of configs/base.py (fields added since the run get their defaults), then the
  # command line's --config.* overrides on top of that.
  config = checkpoint.load_config(_WORKDIR.value, base.get_config())
  console.apply_overrides(config, console.config_overrides())
  for flag, key in ((_SPLIT, 'split'), (_NUM_CLIPS, 'num_clips'), (_SYNC_EXPERT, 'sync_expert_workdir'),
                    (_PARAMS, 'params')):
    if flag.value:
      config.eval[key] = flag.value
  evaluation = workdir.evaluate_workdir(_WORKDIR.value, config, mesh=parallel.inference_mesh(config.mesh))
  if parallel.is_primary():  # Every process samples and scores the same clips; one writes.
    results.write_workdir(run_dir.RunDir(_WORKDIR.value), evaluation, config)
    print(results.markdown(evaluation.result))


if __name__ == '__main__':
  console.run(main)
