"""Built-in data as ordinary files: `talking` clips written as video files with sound and a JSON sidecar each.

The files follow a protocol of their own (frame rate, sample rate, channels, size, codecs), not the training
config's, so a folder dataset built from them exercises the whole path a user's videos take: decode, resample,
crop, sidecar ground truth mapped onto the training clock (`avdiff.data.builders.AvFolder`).

    python -m experiments.export_dataset --out=DIR --num=256      # 25 fps, 44.1 kHz stereo, 96 x 96, h264 + AAC mp4

Each `<name>.mp4` gets `<name>.mp4.json`: label (speaker, or the attribute label with data.attributes='independent'),
caption, generator ('talking'), the seed, and ground truth on the file's own clock: mouth_open [N] per file frame,
truth_fps, mouth_box (file pixels); independent attributes also `attributes` [5] (kept in the build's `extra`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from avdiff.data import av_io
from avdiff.data import captions
from avdiff.data import synthetic

# Seeds of exported clips: apart from every built-in split's range (avdiff.data.builders.SPLIT_SEED_OFFSET).
EXPORT_SEED_OFFSET = 5_000_000


@dataclasses.dataclass(frozen=True)
class FileProtocol:
  """How exported files are written: frame rate (Hz), sample rate (Hz), channels, square size (pixels), container
  extension and audio codec (`av_io.write_video`)."""
  fps: float = 25.0
  sample_rate: int = 44100
  channels: int = 2
  size: int = 96
  extension: str = '.mp4'
  audio_codec: str = 'aac'


def caption(label: int, clip: dict, seed: int = 0) -> str:
  """A plain description of a talking clip from its ground truth: `captions.caption(attributes, seed)` for a clip
  with attributes, else its speaker and how much of the clip is speech."""
  if 'attributes' in clip:
    return captions.caption(clip['attributes'], seed)
  speaking = float(np.mean(clip['mouth_open'] > 0.2))
  amount = 'talks throughout' if speaking > 0.6 else 'talks with pauses' if speaking > 0.3 else 'says a few words'
  return f'speaker {label} {amount}'


def export_talking(out_dir: str, data_cfg: ml_collections.ConfigDict, num: int, seconds: float = 0.0,
                   protocols: tuple[FileProtocol, ...] = (FileProtocol(),), first_seed: int = EXPORT_SEED_OFFSET
                   ) -> list[str]:
  """Writes `num` talking clips (`seconds` long, default data_cfg.clip_seconds; speakers as data_cfg.num_speakers)
  as files in out_dir, file i in protocols[i % len(protocols)]; returns their names (relative to out_dir)."""
  names = []
  os.makedirs(out_dir, exist_ok=True)
  for i in range(num):
    proto = protocols[i % len(protocols)]
    cfg = ml_collections.ConfigDict(data_cfg.to_dict(), type_safe=False)
    cfg.resolution, cfg.fps, cfg.sample_rate = proto.size, proto.fps, proto.sample_rate
    cfg.clip_seconds = float(seconds or data_cfg.clip_seconds)
    cfg.mel_frames_per_video_frame = 1  # No mel is made here; the generator only needs whole samples per frame.
    seed = first_seed + i
    clip = synthetic.make_clip('talking', seed, cfg)
    wave = np.repeat(clip['audio'][:, None], proto.channels, axis=1) if proto.channels > 1 else clip['audio']
    name = f'talking_{i:05d}{proto.extension}'
    av_io.write_video(os.path.join(out_dir, name), clip['video'], wave, proto.fps, proto.sample_rate,
                      proto.audio_codec)
    meta = {'label': int(clip['label']), 'caption': caption(int(clip['label']), clip, seed), 'generator': 'talking',
            'seed': seed, 'truth_fps': float(proto.fps), 'mouth_open': [round(float(v), 5) for v in clip['mouth_open']],
            'mouth_box': [int(v) for v in clip['mouth_box']]}
    if 'attributes' in clip:
      meta['attributes'] = [int(v) for v in clip['attributes']]
    with open(os.path.join(out_dir, name + '.json'), 'w', encoding='utf-8') as f:
      json.dump(meta, f)
    names.append(name)
  return names
