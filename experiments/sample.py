"""Samples clips from a trained run's EMA (or raw, --params=raw) params and writes them as mp4 (h264 + AAC) to <workdir>/samples/<step>/.

    python -m experiments.sample --workdir=runs/tiny --mode=joint --num=8
    python -m experiments.sample --workdir=runs/tiny --mode=audio_to_video --num=8   # audio from the test split
    python -m experiments.sample --workdir=runs/text --mode=joint --prompt="a blue round face, high voice, four syllables"
    python -m experiments.sample --workdir=runs/text --mode=joint --prompts=prompts.txt --num=1   # one prompt a line
    python -m experiments.sample --workdir=runs/tiny --mode=audio_to_video --audio=speech.wav     # any length
    python -m experiments.sample --workdir=runs/tiny --mode=video_to_audio --video=clip.mp4
    python -m experiments.sample --workdir=runs/tiny --mode=video_to_audio --num=8 --vocoder=neural

Modes: joint (labels 0, 1, ... cycled; a text model: --num samples per prompt, or the captions of the first --num
clips of --split), audio_to_video / video_to_audio (the other modality taken from the first --num clips of --split,
labels and captions too), continuation (the first half of each test clip's latent frames given). --prompt /
--prompts replace the captions in every mode. An empty prompt, or one of more than the model's
model.text.max_bytes tokens (`avdiff.data.text_inputs`), is an error before anything loads; non-ASCII text is
allowed (SentencePiece and byte tokens both fall back to its UTF-8 bytes).

--audio / --video: a file of any length (any sample rate, mono or stereo; any frame rate and size) generated in
overlapping windows of the model's clip length (`avdiff.long_clips`), written as one mp4 (--out, default
W/samples/<step>/<file name>_<mode>.mp4); audio_to_video keeps the file's own audio track. An unreadable file, one
without the needed stream, or less than one video frame of signal is an error before the model loads; shorter than
one window is generated in one padded window; silence gives a closed mouth (both said on the console). --label
names the speaker (default: none, the null label).

--vocoder: how sampled mel becomes sound, 'griffin_lim' (no training) or 'neural' (the trained vocoder of the run's
data and model.vocoder fields, `python -m experiments.train_vocoder --config=...`; an error naming that command when
it has not been trained); default the run's model.vocoder.use.

On several devices or processes (the multi-process flags of experiments.train, the same command on every process)
the params are restored into their training shardings on the run's mesh and sampled there; process 0 writes.
"""

import os

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags

from avdiff import checkpoint
from avdiff import long_clips
from avdiff import sampling
from avdiff import parallel
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
_AUDIO = flags.DEFINE_string('audio', None, 'audio_to_video: a sound file of any length to make the video for.')
_VIDEO = flags.DEFINE_string('video', None, 'video_to_audio: a video file of any length to make the sound for.')
_OUT = flags.DEFINE_string('out', None, 'With --audio / --video: the mp4 to write.')
_OVERLAP = flags.DEFINE_float('overlap', long_clips.DEFAULT_OVERLAP_SECONDS, 'Window overlap, seconds.')
_WINDOWS = flags.DEFINE_enum('windows', long_clips.DEFAULT_METHOD, list(long_clips.METHODS),
                             'How windows agree where they overlap (avdiff.long_clips).')
_SHARE_ABOVE = flags.DEFINE_float('share_above', long_clips.DEFAULT_SHARE_ABOVE,
                                  '--windows=blend: windows share the still appearance down to this noise level '
                                  '(one speaker throughout; 1 = off).')
_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID = parallel.process_flags()
_LABEL = flags.DEFINE_integer('label', None, 'With --audio / --video: the speaker label (default: none).')
_VOCODER = flags.DEFINE_enum('vocoder', None, ['griffin_lim', 'neural'],
                             'Sampled mel -> waveform (default: the run\'s model.vocoder.use).')


def main(argv):
  del argv
  parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  # The run's config.json on top of configs/base.py: fields added since the run get their defaults.
  config = checkpoint.load_config(_WORKDIR.value, base.get_config())
  if _VOCODER.value is not None:
    config.model.vocoder.use = _VOCODER.value == 'neural'
  if _PROMPT.value is not None and _PROMPTS.value:
    raise console.UserError('give --prompt or --prompts, not both')
  prompts = [_PROMPT.value] if _PROMPT.value is not None else None
  if _PROMPTS.value:
    with open(_PROMPTS.value, encoding='utf-8') as f:
      prompts = [line.strip() for line in f if line.strip()]
    if not prompts:
      raise console.UserError(f'{_PROMPTS.value} holds no prompts')
  mesh = parallel.inference_mesh(config.mesh)
  if _AUDIO.value or _VIDEO.value:  # A file of any length, in windows.
    if _AUDIO.value and _VIDEO.value:
      raise console.UserError('give --audio or --video, not both')
    path, mode = (_AUDIO.value, 'audio_to_video') if _AUDIO.value else (_VIDEO.value, 'video_to_audio')
    if _MODE.value != mode:
      raise console.UserError(f'--{"audio" if _AUDIO.value else "video"} goes with --mode={mode}')
    if prompts is not None and len(prompts) != 1:
      raise console.UserError('a file is generated with one prompt')
    try:
      out, p = long_clips.sample_file(
          _WORKDIR.value, path, mode, config, out=_OUT.value, label=_LABEL.value, prompt=prompts[0] if prompts else None,
          overlap_seconds=_OVERLAP.value, method=_WINDOWS.value, share_above=_SHARE_ABOVE.value, seed=_SEED.value,
          params=_PARAMS.value, step=_STEP.value, mesh=mesh, say=console.say)
    except (long_clips.InputError, tokenizer.PromptError) as e:
      raise console.UserError(str(e)) from None
    console.say(f'Wrote {out}: {p.frames / config.data.fps:.1f} s in {p.num_windows} windows ({_WINDOWS.value}, '
                f'{p.overlap / config.data.fps:g} s overlap)')
    return
  try:
    paths = sampling.sample_workdir(_WORKDIR.value, _MODE.value, _NUM.value, _SPLIT.value, _SEED.value,
                                    _PARAMS.value, _STEP.value, config, prompts, mesh)
  except tokenizer.PromptError as e:
    raise console.UserError(str(e)) from None
  console.say(f'Wrote {len(paths)} {_MODE.value} clips to {os.path.dirname(paths[0]) if paths else _WORKDIR.value}')


if __name__ == '__main__':
  console.run(main)
