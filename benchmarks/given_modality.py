"""Does a run's DiT use the modality it is given? The generated modality's x0 error beside each held-out clip's own
clean given modality against beside another clip's, per noise level (`avdiff.diffusion.diagnostics.
given_modality_errors`), for audio given video (video_to_audio) and video given audio (audio_to_video).

    python -m benchmarks.given_modality --workdirs=runs/latent/seed1,runs/latent_shift3/seed1 \
        --out=benchmarks/given_modality.md

A ratio other / own near 1 at high t means the network decides the generated modality's coarse timing without
looking at the given one; conditional samples then come out of step with their condition. Every run is read at its
newest checkpoint (EMA params), on its own latents (`sampling.to_latents`, with its model.latent_norm).
"""

from __future__ import annotations

from absl import app
from absl import flags
import numpy as np

from benchmarks import report

_WORKDIRS = flags.DEFINE_list('workdirs', [], 'Training runs to read.')
_SPLIT = flags.DEFINE_string('split', 'test', 'Held-out split whose clips are used.')
_NUM = flags.DEFINE_integer('num', 32, 'Clips (one batch).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Noise draws averaged per time.')
_OUT = flags.DEFINE_string('out', '', 'Markdown table file; empty: stdout only.')

TIMES = (0.3, 0.5, 0.7, 0.9)
DIRECTIONS = (('audio', 'audio given video (video_to_audio)'), ('video', 'video given audio (audio_to_video)'))


def _command() -> str:
  extra = ''.join(f' --{f.name}={f.value}' for f in (_SPLIT, _NUM, _REPEATS) if f.value != f.default)
  return (f'python -m benchmarks.given_modality --workdirs={",".join(_WORKDIRS.value)}{extra}'
          + (f' --out={_OUT.value}' if _OUT.value else ''))


def run_errors(workdir: str, split: str, num: int, repeats: int) -> dict:
  """{generated modality: {'own': [len(TIMES)], 'other': [len(TIMES)]}} of the run, averaged over noise draws."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from avdiff import checkpoint, sampling  # pylint: disable=g-import-not-at-top
  from avdiff.data import builders, frames  # pylint: disable=g-import-not-at-top
  from avdiff.diffusion import diagnostics  # pylint: disable=g-import-not-at-top
  from configs import base  # pylint: disable=g-import-not-at-top
  config = checkpoint.load_config(workdir, base.get_config())
  model = sampling.load_model(workdir, config)
  clips = builders.load_clips(config, split, num)
  video = frames.to_float(np.stack([c['video'] for c in clips]))
  mel = np.stack([c['audio_mel'] for c in clips]).astype(np.float32)  # The stored log-mel, as sampling reads it.
  x0 = jax.jit(lambda v, m: sampling.to_latents(config, model.ae, v, m))(video, mel)
  label = jnp.asarray([c['label'] for c in clips], jnp.int32)
  errors = jax.jit(lambda x0, rng, generated: diagnostics.given_modality_errors(
      model.dit, x0, label, rng, config.diffusion, generated, TIMES), static_argnums=2)
  out = {}
  for generated, _ in DIRECTIONS:
    draws = [jax.device_get(errors(x0, jax.random.key(i), generated)) for i in range(repeats)]
    out[generated] = {k: np.mean([d[k] for d in draws], axis=0) for k in ('own', 'other')}
  return out


def evaluated_r(workdir: str, split: str) -> dict:
  """{'audio': v2a_r, 'video': a2v_r} of the run's final evaluation (its verdict rows), NaN when missing."""
  from avdiff.study import verdicts  # pylint: disable=g-import-not-at-top
  values = {r['name']: float(r['value']) for r in verdicts.run_verdict(workdir, split) or []}
  return {'audio': values.get('v2a_r', float('nan')), 'video': values.get('a2v_r', float('nan'))}


def main(argv):
  del argv
  if not _WORKDIRS.value:
    raise app.UsageError('--workdirs: one or more training runs')
  lines = [f'Written by `{_command()}`', '',
           f'{_NUM.value} clips of the {_SPLIT.value} split, newest checkpoint, EMA params, {_REPEATS.value} noise '
           'draws. Each cell: x0 error of the generated modality beside the clip\'s own clean given modality -> '
           'beside another clip\'s (ratio). A ratio near 1: the given modality is not used at that noise level. '
           f'Last column: the run\'s sync in that mode from its evaluation (W/eval/{_SPLIT.value}.json; v2a r or '
           'a2v r, targets >= 0.7 and >= 0.8).', '',
           '| run | generated | ' + ' | '.join(f't={t:g}' for t in TIMES) + ' | evaluated r |',
           '|---|---|' + '---|' * (len(TIMES) + 1)]
  for workdir in _WORKDIRS.value:
    errors = run_errors(workdir, _SPLIT.value, _NUM.value, _REPEATS.value)
    sync = evaluated_r(workdir, _SPLIT.value)
    for generated, what in DIRECTIONS:
      own, other = errors[generated]['own'], errors[generated]['other']
      cells = [f'{o:.3f} -> {x:.3f} ({x / o:.2f}x)' for o, x in zip(own, other)]
      r = '-' if np.isnan(sync[generated]) else f'{sync[generated]:.3f}'
      lines.append(f'| {workdir} | {what} | ' + ' | '.join(cells) + f' | {r} |')
  report.emit(lines, _OUT.value)


if __name__ == '__main__':
  app.run(main)
