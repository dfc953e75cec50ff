"""Griffin-Lim against the neural vocoder on held-out ground-truth mel: does the voice's pitch survive?

    python -m benchmarks.vocoder --out=benchmarks/vocoder.md [--config=configs/tiny.py] [--num=32] [--split=validation]
        [--variants='no_phase_loss:model.vocoder.phase_weight=0.0;short:model.vocoder.steps=1500']

Finds the config's vocoder, or trains it first (`avdiff.train.tasks.vocoder.find_or_train`, as
`experiments.train_vocoder` does), then turns the stored log-mel of the first --num clips of --split into waveforms
both ways and scores each against the clip's original waveform (`avdiff.eval.voice`: librosa.pyin f0 and voicing,
mel L1 of the re-analysed waveform) and its cost. Training time is the one recorded in the vocoder's marker
(stage1.json) when it was trained. Each of --variants (name: comma-separated config overrides) is another vocoder,
found or trained the same way, scored on the same clips: one row each. With --workdir (a trained run of the same
data), a second table: the pyin pitch of --samples joint samples of its DiT (EMA params, labels 0, 1, ...) turned
into sound both ways, next to the pitch the speaker of each label is drawn with (`synthetic.speaker`; each syllable
then varies it by x0.85-1.2, with glides of up to 7.5%).
"""

from __future__ import annotations

import ast
import copy
import os
import re

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

import jax
import numpy as np
from absl import app
from absl import flags
from flax import nnx
from ml_collections import config_flags

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import models
from avdiff import sampling
from avdiff.data import audio as audio_lib
from avdiff.data import synthetic
from avdiff.eval import voice
from avdiff.train.tasks import vocoder as vocoder_task
from benchmarks import report
from configs import base

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/tiny.py', 'Config file (data and model.vocoder).')
_NUM = flags.DEFINE_integer('num', 32, 'Held-out clips scored.')
_SPLIT = flags.DEFINE_string('split', 'validation', 'Split of the clips.')
_OUT = flags.DEFINE_string('out', '', 'Markdown table file; empty: stdout only.')
_WORKDIR = flags.DEFINE_string('workdir', '', 'A trained run whose joint samples are also scored (second table).')
_SAMPLES = flags.DEFINE_integer('samples', 8, 'With --workdir: joint samples.')
_VARIANTS = flags.DEFINE_string('variants', '', "More vocoders: 'name:field=value,field=value;name:...'.")

_METHODS = {'griffin_lim': 'Griffin-Lim (NNLS mel inversion, 32 iterations)', 'vocoder': 'neural vocoder (EMA)'}


def _command() -> str:
  return (f'python -m benchmarks.vocoder --config={flags.FLAGS["config"].config_filename} --num={_NUM.value} '
          f'--split={_SPLIT.value}' + (f" '--variants={_VARIANTS.value}'" if _VARIANTS.value else '') +
          (f' --workdir={_WORKDIR.value} --samples={_SAMPLES.value}' if _WORKDIR.value else '') +
          (f' --out={_OUT.value}' if _OUT.value else ''))


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def variants(spec: str) -> dict[str, dict]:
  """'name:a.b=1,c.d=(2,3);name2:...' -> {name: {'a.b': 1, 'c.d': (2, 3)}} (commas inside parentheses kept)."""
  out = {}
  for item in filter(None, (part.strip() for part in spec.split(';'))):
    name, _, overrides = item.partition(':')
    pairs = [p.split('=', 1) for p in re.split(r',(?![^()]*\))', overrides) if p.strip()]
    out[name.strip()] = {k.strip(): _value(v.strip()) for k, v in pairs}
  return out


def _score(config, split: str, num: int) -> dict:
  """The config's vocoder found or trained, and `vocoder_task.evaluate`'s scores with 'params', 'train_seconds' and
  'dir' added."""
  vocoder_dir = vocoder_task.find_or_train(config)
  marker = autoencoders.read_marker(vocoder_dir)
  stage = vocoder_task.stage_config(config)
  vocoder = checkpoint.restore_params(vocoder_dir, models.build_vocoder(stage, nnx.Rngs(0)), ema=True)
  result = vocoder_task.evaluate(stage, vocoder, split, num)
  result.update(params=sum(x.size for x in jax.tree.leaves(nnx.state(vocoder, nnx.Param))), dir=vocoder_dir,
                train_seconds=marker.get('train_seconds', float('nan')))
  return result


def _cell(value: float, fmt: str) -> str:
  return '-' if value != value else format(value, fmt)  # NaN: nothing to measure.


def _pitch_cell(wave: np.ndarray, sample_rate: int) -> str:
  """'median f0 of the voiced frames (share of frames voiced)' of a waveform, by `voice.pitch`."""
  f0, voiced = voice.pitch(wave, sample_rate)
  return f'{np.median(f0[voiced]):.0f} Hz ({voiced.mean():.0%})' if voiced.any() else 'none (0%)'


def sample_rows(workdir: str, num: int, seed: int = 0) -> list[str]:
  """Table rows: per joint sample of the run in workdir, its label, the speaker's drawn f0 and the pyin pitch of its
  mel turned into sound by Griffin-Lim and by the vocoder of the run's data (model.vocoder fields of the config)."""
  config = checkpoint.load_config(workdir, base.get_config())
  config.model.vocoder.use = True
  model = sampling.load_model(workdir, config)  # The DiT's EMA params, and the vocoder (an error when untrained).
  graphdef, state = nnx.split(model.dit)
  ae_def, ae_state = nnx.split(model.ae) if model.ae is not None else (None, None)
  sample = sampling.jitted_sample_batch(config, graphdef, ae_def, 'joint')
  clips = sampling.label_clips(config, num)
  labels = sampling.clip_labels(config, clips)
  _, mel = jax.device_get(sample(state, ae_state, labels, jax.random.key(seed), None, None, None))
  neural = sampling.vocode(model.vocoder, np.asarray(mel))
  rate = int(config.data.sample_rate)
  rows = []
  for i, clip in enumerate(clips):
    drawn = synthetic.speaker(clip['label'], int(config.data.num_speakers)).f0
    griffin_lim = audio_lib.mel_to_waveform(mel[i], config.data)
    rows.append(f'| {clip["label"]} | {drawn:.0f} Hz | {_pitch_cell(griffin_lim, rate)} | '
                f'{_pitch_cell(neural[i], rate)} |')
  return rows


def main(argv):
  del argv
  config = _CONFIG.value
  result = _score(config, _SPLIT.value, _NUM.value)
  rows = [(_METHODS['griffin_lim'], result['griffin_lim'], 'none'),
          (_METHODS['vocoder'], result['vocoder'], f'{result["train_seconds"] / 60:.1f} min')]
  for name, overrides in variants(_VARIANTS.value).items():
    other = copy.deepcopy(config)
    console.apply_overrides(other, overrides)
    scored = _score(other, _SPLIT.value, _NUM.value)
    label = ', '.join(f'{k}={v}' for k, v in overrides.items())
    rows.append((f'{name} ({label})', scored['vocoder'], f'{scored["train_seconds"] / 60:.1f} min'))
  v, d = config.model.vocoder, config.data
  lines = [f'Written by `{_command()}`', '',
           f'{result["clips"]} {_SPLIT.value} clips of `{d.dataset}` ({d.sample_rate} Hz, {d.n_mels}-band log-mel at '
           f'{d.fps * d.mel_frames_per_video_frame:g} Hz, n_fft {d.n_fft}): the stored ground-truth mel turned into a '
           'waveform, scored against the clip\'s original waveform. librosa.pyin over '
           f'{voice.FMIN_HZ:g}-{voice.FMAX_HZ:g} Hz: f0 error = median |cents| over the frames voiced in both, '
           'averaged over the clips that have such frames (n); gross pitch error = share of those frames off by '
           '> 20%; voicing precision / recall / accuracy of the resynthesis\'s voiced flags against the original\'s. '
           'Mel L1: the waveform re-analysed into log-mel against the input mel (normalized units, 1 = 40 dB). '
           'Seconds per clip on this CPU: the vocoder in one jitted call for all clips (compiled before timing), '
           'Griffin-Lim (librosa) one clip at a time. '
           f'Vocoder: {result["params"] / 1e6:.2f}M parameters (width {v.width}, depth {v.depth}), {v.steps} steps at '
           f'batch {v.batch_size} x {v.segment_frames} mel frames, phase-advance weight {v.phase_weight:g} at '
           f'{tuple(v.phase_resolution)} (`{os.path.basename(result["dir"])}` under the stage-1 root); training '
           'time as recorded when it was trained (on this machine, shared with other jobs).', '',
           '| method | f0 error, cents (n) | gross pitch error | voiced precision | voiced recall | voiced accuracy '
           '| mel L1 | s per clip | training |',
           '|---|---|---|---|---|---|---|---|---|']
  for name, r, train in rows:
    lines.append(f'| {name} | {_cell(r["f0_cents"], ".0f")} ({r["f0_clips"]}) | '
                 f'{_cell(r["gross_pitch_error"], ".2f")} | {_cell(r["voiced_precision"], ".2f")} | '
                 f'{_cell(r["voiced_recall"], ".2f")} | {_cell(r["voiced_accuracy"], ".2f")} | '
                 f'{r["mel_l1"]:.3f} | {r["seconds_per_clip"]:.3f} | {train} |')
  if _WORKDIR.value:
    lines += ['', f'{_SAMPLES.value} joint samples of `{_WORKDIR.value}` (EMA params, seed 0, the guidance scales of '
              'its config.json): pyin median f0 of the voiced frames (share of frames voiced) of the sampled mel '
              'turned into sound. Speaker f0: the pitch the data draws the label\'s speaker with, before per-syllable '
              'variation (x0.85-1.2).', '',
              '| label | speaker f0 | Griffin-Lim | neural vocoder |', '|---|---|---|---|']
    lines += sample_rows(_WORKDIR.value, _SAMPLES.value)
  report.emit(lines, _OUT.value)


if __name__ == '__main__':
  app.run(main)
