"""Where the trained neural vocoder of a config lives: its identity (the config fields that determine it and their
fingerprint), its directory and its completion marker. The vocoder is a stage-1 model like the autoencoder
(`avdiff.autoencoders`), identified the same way:

    fields       the stored dataset (`builders.dataset_fields`: sample rate, n_fft, mel bands, clip counts, ...),
                 model.vocoder.* (architecture, loss, training recipe, its own seed) except `use` and `workdir`,
                 and VOCODER_VERSION.
    not fields   model.vocoder.use (whether sampling uses it), model.vocoder.workdir, the DiT, the autoencoder,
                 diffusion.*, train.*, seed (the DiT's), and where things are stored.

    <model.autoencoder_root>/vocoder-<fingerprint>/      checkpoints/, vocoder_eval.json, stage1.json

`stage1.json` is written only after training and the held-out evaluation finished, so a directory with checkpoints
and no marker is a killed run, to be resumed, never used.
"""

from __future__ import annotations

import json
from typing import Optional

import ml_collections

from avdiff import autoencoders
from avdiff import run_dir
from avdiff.data import builders

# Bump when the vocoder architecture or its training recipe changes meaning: every fingerprint changes with it.
VOCODER_VERSION = 1
MARKER = autoencoders.MARKER
# model.vocoder fields that do not change the trained weights.
_NOT_FIELDS = ('use', 'workdir')


def enabled(config: ml_collections.ConfigDict) -> bool:
  """model.vocoder.use: whether sampling turns mel into sound with the vocoder (False for a config saved before the
  vocoder existed, read without configs/base.py's defaults)."""
  vocoder = config.model.get('vocoder')
  return bool(vocoder is not None and vocoder.get('use', False))


def fields(config: ml_collections.ConfigDict) -> dict:
  """The config fields that determine the trained vocoder (JSON values: tuples as lists)."""
  vocoder = {k: v for k, v in config.model.vocoder.to_dict().items() if k not in _NOT_FIELDS}
  values = {'data': builders.dataset_fields(config.data, config.data.dataset), 'vocoder': vocoder,
            'version': VOCODER_VERSION}
  return json.loads(json.dumps(values))


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """Fingerprint of `fields(config)`: equal for two configs exactly when their trained vocoders are."""
  return builders.fingerprint(fields(config))


def derived_dir(config: ml_collections.ConfigDict) -> str:
  """<stage-1 root>/vocoder-<fingerprint> (the root of `autoencoders.root`)."""
  return str(run_dir.as_path(autoencoders.root(config)) / f'vocoder-{fingerprint(config)}')


def directory(config: ml_collections.ConfigDict) -> str:
  """The vocoder directory of the config: model.vocoder.workdir when set, else `derived_dir`."""
  return config.model.vocoder.workdir or derived_dir(config)


def write_marker(vocoder_dir: str, config: ml_collections.ConfigDict, **extra) -> None:
  """Marks vocoder_dir complete for `config` (call last, after training and evaluation); `extra`: e.g. the
  evaluation."""
  autoencoders.write_stage_marker(vocoder_dir, fields(config), **extra)


def check(config: ml_collections.ConfigDict, vocoder_dir: str) -> Optional[dict]:
  """The marker of vocoder_dir (None when it has none); raises config_lib.ConfigError when the marker was written
  for other fields than the config's, naming each differing field."""
  return autoencoders.check_stage_marker(vocoder_dir, fields(config), 'vocoder', 'model.vocoder.workdir')
