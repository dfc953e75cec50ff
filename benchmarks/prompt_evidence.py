"""Where the prompt is the only source of an attribute: how well the noisy training input alone tells each still
attribute at each time t, and what share of training the time density puts where it no longer does.

    python -m benchmarks.prompt_evidence --shifts=1,3 --out=benchmarks/prompt_evidence.md

A denoiser reads what it can from x_t; a prompt word is needed, and so learned, only at the times where x_t no longer
tells the attribute. The reader (`avdiff.diffusion.diagnostics.evidence_in_noise`) matches the time mean of x_t against
class templates of the training clips (a linear reader; a network can do at least as well). Speaking rate and syllable
count live in time, not in a time mean, and are not read here.
"""

from __future__ import annotations

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from benchmarks import report

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/text.py', 'Config file (its data and diffusion fields).')
_NUM = flags.DEFINE_integer('num', 256, 'Training clips.')
_SHIFTS = flags.DEFINE_list('shifts', ['1', '3'], 'diffusion.flow_shift values whose training-time shares are shown.')
_OUT = flags.DEFINE_string('out', '', 'Markdown table file; empty: stdout only.')

TIMES = (0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0)
# Attribute -> (modality read, index in the clip's `attributes`).
STILL_ATTRIBUTES = {'colour': ('video', 0), 'shape': ('video', 1), 'pitch': ('audio', 2)}


def _config_path() -> str:
  return flags.FLAGS['config'].config_filename


def _command() -> str:
  return (f'python -m benchmarks.prompt_evidence --config={_config_path()} --num={_NUM.value} '
          f'--shifts={",".join(_SHIFTS.value)}' + (f' --out={_OUT.value}' if _OUT.value else ''))


def main(argv):
  del argv
  from avdiff.data import builders, frames  # pylint: disable=g-import-not-at-top
  from avdiff.diffusion import diagnostics  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  clips = builders.load_clips(config, 'train', _NUM.value)
  if not clips or 'attributes' not in clips[0]:
    raise app.UsageError(f'{_config_path()}: its training clips carry no attributes (data.attributes=independent)')
  x0 = {'video': np.stack([frames.to_float(c['video']) for c in clips]),
        'audio': np.stack([c['audio_mel'] for c in clips])}
  attributes = np.stack([c['attributes'] for c in clips])
  df = config.diffusion
  lines = [f'Written by `{_command()}`', '',
           f'{len(clips)} training clips of {_config_path()}. Accuracy of a linear reader of each attribute from the '
           'noisy input x_t alone (nearest class template of its time mean, centred per clip; 3 noise draws). '
           'Chance: colour 0.25, shape and pitch 0.5; t=0 is the reader on clean clips, its ceiling.', '',
           '| attribute | ' + ' | '.join(f't={t:g}' for t in TIMES) + ' |',
           '|---|' + '---|' * len(TIMES)]
  for name, (modality, index) in STILL_ATTRIBUTES.items():
    acc = diagnostics.evidence_in_noise(x0[modality], attributes[:, index], TIMES, df)
    lines.append(f'| {name} ({modality}) | ' + ' | '.join(f'{a:.2f}' for a in acc) + ' |')
  thresholds = (0.9, 0.95, 0.97)
  density = df.time_sampling + (f', logit mean {df.logit_normal_mean:g}, std {df.logit_normal_std:g}'
                                 if df.time_sampling == 'logit_normal' else '')
  lines += ['', f'Share of noised training examples with t above each time (time density {density}):', '',
            '| diffusion.flow_shift | ' + ' | '.join(f't > {t:g}' for t in thresholds) + ' |',
            '|---|' + '---|' * len(thresholds)]
  for shift in _SHIFTS.value:
    cfg = df.copy_and_resolve_references()
    cfg.flow_shift = float(shift)
    share = diagnostics.training_share_above(cfg, thresholds)
    lines.append(f'| {float(shift):g} | ' + ' | '.join(f'{s:.3f}' for s in share) + ' |')
  report.emit(lines, _OUT.value)


if __name__ == '__main__':
  app.run(main)
