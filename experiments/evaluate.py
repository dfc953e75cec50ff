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
import sys

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import app
from absl import flags
from ml_collections import config_flags

from avdiff.eval import report
from avdiff.eval import runner
from avdiff.eval import sync_train

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config (folder mode; workdir mode reads '
                                          'W/config.json unless --config is given explicitly).')
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
_SYNCNET = flags.DEFINE_string('syncnet', '', 'Path to public syncnet_v2.model weights (needs torch).')


def main(argv):
  del argv
  if bool(_CLIPS.value) == bool(_WORKDIR.value):
    raise app.UsageError('give exactly one of --clips=DIR (with --out=FILE.json) or --workdir=W')
  config = _CONFIG.value
  if _CLIPS.value:
    expert_dir = _SYNC_EXPERT.value or config.eval.sync_expert_workdir
    config.eval.sync_expert_workdir = expert_dir
    if not _OUT.value:
      raise app.UsageError('--clips needs --out=FILE.json')
    for flag, key in ((_PROTOCOL, 'protocol'), (_FACES, 'faces'), (_FVD_REFERENCE, 'fvd_reference')):
      if flag.value is not None:
        config.eval[key] = flag.value
    expert = sync_train.load_scorer(expert_dir, config) if expert_dir else None
    syncnet_model = None
    if _SYNCNET.value:
      from avdiff.eval import syncnet  # pylint: disable=g-import-not-at-top
      syncnet_model = syncnet.load_syncnet(_SYNCNET.value)
    result = runner.evaluate_folder(_CLIPS.value, config, expert, syncnet_model)
    runner.write_json(result, _OUT.value)
    summary = {'protocol': result['protocol']['protocol'], 'num_scored': result['num_scored'],
               'num_skipped': result['num_skipped'], 'skip_reasons': result['skip_reasons'],
               **{k: v['mean'] for k, v in result['aggregate'].items()}}
    if 'fvd' in result:
      summary['fvd'] = result['fvd']['fvd']
    print(json.dumps(summary, indent=2))
    return
  explicit = any(a.startswith('--config') for a in sys.argv[1:])
  result = runner.evaluate_workdir(_WORKDIR.value, _SPLIT.value or None, config if explicit else None,
                                   _NUM_CLIPS.value or None, sync_expert_workdir=_SYNC_EXPERT.value,
                                   params=_PARAMS.value)
  print(report.markdown_table(result))
  if 'verdict' in result.get('outcomes', {}):
    from avdiff.eval import outcomes  # pylint: disable=g-import-not-at-top
    print(outcomes.verdict_markdown(result['outcomes']['verdict']))
  if 'report' in result:
    print(f'Report: {result["report"]}')


if __name__ == '__main__':
  app.run(main)
