"""Samples clips from a trained run's EMA (or raw, --params=raw) params and writes them as mp4 (h264 + AAC) to <workdir>/samples/<step>/.

    python -m experiments.sample --workdir=runs/tiny --mode=joint --num=8
    python -m experiments.sample --workdir=runs/tiny --mode=audio_to_video --num=8   # audio from the test split
    python -m experiments.sample --workdir=runs/text --mode=joint --prompt="a blue round face, high voice, four syllables"
    python -m experiments.sample --workdir=runs/text --mode=joint --prompts=prompts.txt --num=1   # one prompt a line

Modes: joint (labels 0, 1, ... cycled; a text model: --num samples per prompt, or the captions of the first --num
clips of --split), audio_to_video / video_to_audio (the other modality taken from the first --num clips of --split,
labels and captions too), continuation (the first half of each test clip's latent frames given). --prompt /
--prompts replace the captions in every mode. An empty prompt, or one of more than the model's
model.text.max_bytes tokens (`avdiff.data.text_inputs`), is an error before anything loads; non-ASCII text is
allowed (SentencePiece and byte tokens both fall back to its UTF-8 bytes).
"""

import os

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags

from avdiff import checkpoint
from avdiff import sampling
from avdiff.data import tokenizer
from configs import base

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run directory.', required=True)
_MODE = flags.DEFINE_enum('mode', 'joint', list(sampling.MODES), 'What to sample.')
_NUM = flags.DEFINE_integer('num', 8, 'Clips to sample.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).')
_SPLIT = flags.DEFINE_string('split', 'test', 'Split the conditioning clips come from.')
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling noise seed.')
_PARAMS = flags.DEFINE_enum('params', 'ema', ['ema', 'raw'], 'Sample from the EMA or the raw (last step) params.')
_PROMPT = flags.DEFINE_string('prompt', None, 'Text prompt (a text model, model.text.encoder).')
_PROMPTS = flags.DEFINE_string('prompts', None, 'File of prompts, one a line (blank lines skipped).')


def main(argv):
  del argv
  # The run's config.json on top of configs/base.py: fields added since the run get their defaults.
  config = checkpoint.load_config(_WORKDIR.value, base.get_config())
  if _PROMPT.value is not None and _PROMPTS.value:
    raise console.UserError('give --prompt or --prompts, not both')
  prompts = [_PROMPT.value] if _PROMPT.value is not None else None
  if _PROMPTS.value:
    with open(_PROMPTS.value, encoding='utf-8') as f:
      prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
      raise console.UserError(f'{_PROMPTS.value} holds no prompts')
  try:
    paths = sampling.sample_workdir(_WORKDIR.value, _MODE.value, _NUM.value, _SPLIT.value, _SEED.value,
                                    _PARAMS.value, _STEP.value, config, prompts)
  except tokenizer.PromptError as e:
    raise console.UserError(str(e)) from None
  console.say(f'Wrote {len(paths)} {_MODE.value} clips to {os.path.dirname(paths[0]) if paths else _WORKDIR.value}')


if __name__ == '__main__':
  console.run(main)
