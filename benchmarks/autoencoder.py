"""Does the stage-1 autoencoder keep what the outcomes read? Reconstruction quality, compression and cost of trained
autoencoders on held-out clips, beside the same readers on the clips themselves.

    python -m benchmarks.autoencoder --ae_dirs=runs/stage1/joint_ae-7cf10975d4 --out=benchmarks/autoencoder.md

Each of --ae_dirs is a finished stage-1 directory (`avdiff.autoencoders`: its config.json and stage1.json); its
EMA params encode and decode the first --num clips of --split (`avdiff.eval.reconstruction.reconstruct`). Columns:
parameters; compression (values of the clip / values of the latent, per modality); stage 1's one-time cost (its
marker's training + evaluation seconds and the latent cache's, when recorded); video PSNR (dB, [-1, 1] frames) and
mel MAE (normalized log-mel); and the outcome readers on the reconstructions (`reconstruction.readers`): the mouth
reader against the dataset's mouth_open (the issue's bar: >= 0.95), the speaker classifier (fitted on 64 training
clips' ground truth), and the envelope of the decoded mel turned into sound against the original's. The first row
reads the clips themselves.
"""

from __future__ import annotations

from avdiff import console  # pylint: disable=g-bad-import-order

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import sys

import jax
import numpy as np
from absl import app
from absl import flags
from flax import nnx

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import config_lib
from avdiff import models
from avdiff.data import builders
from avdiff.eval import outcomes
from avdiff.eval import reconstruction
from benchmarks import report
from configs import base

_AE_DIRS = flags.DEFINE_list('ae_dirs', [], 'Finished stage-1 directories (runs/stage1/<encoder>-<fingerprint>).')
_NUM = flags.DEFINE_integer('num', 32, 'Held-out clips.')
_SPLIT = flags.DEFINE_string('split', 'test', 'Split of the held-out clips.')
_OUT = flags.DEFINE_string('out', '', 'Markdown file for the table (printed too).')

_HEADER = ('| autoencoder | parameters | video compression | audio compression | stage 1 once, minutes | video PSNR, '
           'dB | mel MAE | mouth reader r (>= 0.95) | speaker accuracy | audio envelope r |')


def _values(shape) -> int:
  return int(np.prod(shape))


def _row(ae_dir: str, clips, classifier) -> str:
  config = checkpoint.load_config(ae_dir, base.get_config())
  ae = checkpoint.restore_params(ae_dir, model=models.build_autoencoder(config, nnx.Rngs(0)), ema=True)
  # PSNR and mel MAE as stage 1's own evaluation defines them (float reconstructions, ae_eval.json).
  batches = [{k: np.stack([c[k] for c in clips[i:i + 8]]) for k in ('video', 'audio_mel')}
             for i in range(0, len(clips), 8)]
  errors, _ = reconstruction.reconstruction_metrics(ae, batches)
  psnr, mel_mae = errors['video_psnr_db'], errors['mel_mae']
  read = reconstruction.readers(clips, *reconstruction.reconstruct(ae, clips), config.data, classifier)
  d, lay = config.data, config_lib.layout(config)
  video_in = config_lib.num_frames(d) * d.resolution ** 2 * 3
  audio_in = config_lib.num_mel_frames(d) * d.n_mels
  cost = autoencoders.one_time_seconds(ae_dir)
  params = sum(np.size(x) for x in jax.tree.leaves(nnx.state(ae, nnx.Param)))
  once = f"{cost['train'] / 60:.1f} + {cost['cache'] / 60:.1f} (latent cache)"
  name = f'{config.model.encoder}, {config.model.ae.video_stem} video stem, {config.model.ae.steps} steps'
  return (f'| {name} (`{ae_dir.rstrip("/").split("/")[-1]}`) | {params / 1e6:.2f}M | '
          f'{video_in / _values(lay.video_latent):.1f}x | {audio_in / _values(lay.audio_latent):.1f}x | {once} | '
          f"{psnr:.1f} | {mel_mae:.3f} | {read['mouth_reader_r']:.3f} | {read['speaker_accuracy']:.3f} | "
          f"{read['envelope_r']:.3f} |")


def main(argv):
  del argv
  if not _AE_DIRS.value:
    raise app.UsageError('--ae_dirs=DIR[,DIR...] is required')
  config = checkpoint.load_config(_AE_DIRS.value[0], base.get_config())
  clips = builders.load_clips(config, _SPLIT.value, _NUM.value)
  classifier = outcomes.SpeakerClassifier.fit(builders.load_clips(config, 'train', 64))
  truth = reconstruction.readers(clips, np.stack([c['video'] for c in clips]),
                                 np.stack([c['audio_mel'] for c in clips]), config.data, classifier)
  lines = ['Written by `python -m benchmarks.autoencoder ' + ' '.join(sys.argv[1:]) + '`', '',
           f'{len(clips)} clips of the {_SPLIT.value} split of {config.data.dataset}, EMA params; compression = '
           'values of the clip / values of its latent.', '', _HEADER, '|' + '---|' * 10,
           f"| none (the clips themselves) | | 1x | 1x | | | | {truth['mouth_reader_r']:.3f} | "
           f"{truth['speaker_accuracy']:.3f} | {truth['envelope_r']:.3f} |"]
  lines += [_row(ae_dir, clips, classifier) for ae_dir in _AE_DIRS.value]
  report.emit(lines, _OUT.value)


if __name__ == '__main__':
  console.run(main)
