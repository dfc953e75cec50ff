"""Where the trained stage-1 autoencoder of a config lives: its identity (the config fields that determine it and
their fingerprint), its directory and its completion marker.

An autoencoder is identified like a TFDS dataset (`avdiff.data.builders.config_name`): by exactly the fields that
change what training it produces, and nothing else, so every DiT run on the same data and AE settings shares one:

    fields       the stored dataset (`builders.dataset_fields`), model.encoder, model.ae.* (architecture, training
                 recipe and its own seed: `avdiff.train.tasks.autoencoder.stage_config`), model.param_dtype (read by
                 `build_autoencoder`), and STAGE1_VERSION.
    not fields   the DiT (width, depth, patches, ...), diffusion.*, train.*, mesh.*, eval.*, seed (the DiT's), and
                 where things are stored (data.data_dir, model.autoencoder_root).

    <model.autoencoder_root>/<encoder>-<fingerprint>/      checkpoints/, ae_eval.json, stage1.json

`stage1.json` (MARKER) holds the fingerprint and the fields; it is written only after training and the
reconstruction evaluation finished, so a directory with checkpoints and no marker is a killed stage-1 run, to be
resumed, never used. An explicit model.autoencoder_workdir is used as given; when it holds a marker of other fields
it is refused (`check`).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import ml_collections
from absl import logging
from etils import epath

from avdiff import config_lib
from avdiff import run_dir
from avdiff.data import builders

# Bump when the autoencoder architecture or its training recipe changes meaning: every fingerprint changes with it.
STAGE1_VERSION = 1
MARKER = 'stage1.json'
# Written beside the marker when the autoencoder's latents are cached (`avdiff.train.stage1`): {'dataset', 'seconds'}.
LATENT_CACHE = 'latent_cache.json'


# model.ae fields added since STAGE1_VERSION 1, each with the value that builds what was trained before it: at that
# value a field is left out of the identity, so the autoencoders trained before it keep their fingerprints.
ADDED_AE_FIELDS = {'video_stem': 'conv'}


def fields(config: ml_collections.ConfigDict) -> dict:
  """The config fields that determine the trained autoencoder of config.model.encoder (JSON-serializable)."""
  m = config.model
  ae = {k: (float(v) if isinstance(v, float) else v) for k, v in m.ae.to_dict().items()
        if not (k in ADDED_AE_FIELDS and v == ADDED_AE_FIELDS[k])}
  return {'data': builders.dataset_fields(config.data, config.data.dataset), 'encoder': m.encoder, 'ae': ae,
          'param_dtype': m.param_dtype, 'version': STAGE1_VERSION}


def fingerprint(config: ml_collections.ConfigDict) -> str:
  """Fingerprint of `fields(config)`: equal for two configs exactly when their trained autoencoders are."""
  return builders.fingerprint(fields(config))


def root(config: ml_collections.ConfigDict) -> str:
  """model.autoencoder_root, else $AVDIFF_STAGE1_DIR, else ./runs/stage1 (local path or gs://)."""
  return config.model.autoencoder_root or os.environ.get('AVDIFF_STAGE1_DIR', '') or os.path.join('runs', 'stage1')


def derived_dir(config: ml_collections.ConfigDict) -> str:
  """<root>/<encoder>-<fingerprint>: the directory of the config's autoencoder when none is named."""
  return str(run_dir.as_path(root(config)) / f'{config.model.encoder}-{fingerprint(config)}')


def directory(config: ml_collections.ConfigDict) -> str:
  """The autoencoder directory of a latent config: model.autoencoder_workdir when set, else `derived_dir`."""
  if config.model.encoder == 'patch':
    raise config_lib.ConfigError("model.encoder='patch' has no autoencoder")
  return config.model.autoencoder_workdir or derived_dir(config)


def trained_dir(config: ml_collections.ConfigDict) -> str:
  """The directory readers (sampling, evaluation, results tables) take the config's trained autoencoder from:
  `directory(config)`; but when model.autoencoder_workdir names a path that is gone (a run's config.json records the
  absolute path stage 1 resolved, which breaks when runs/ is moved or was made in another checkout), the directory
  found from the fingerprint under the autoencoder root, if stage 1 finished there."""
  named = directory(config)
  if config.model.autoencoder_workdir and not epath.Path(named).exists():
    derived = derived_dir(config)
    if read_marker(derived) is not None:
      logging.warning('model.autoencoder_workdir %s does not exist; using the autoencoder of the same fingerprint at '
                      '%s', named, derived)
      return derived
  return named


def read_marker(ae_dir: str) -> Optional[dict]:
  """The completion marker of ae_dir ({'fingerprint', 'fields', ...}), None when stage 1 did not finish there."""
  path = epath.Path(ae_dir) / MARKER
  return json.loads(path.read_text()) if path.exists() else None


def one_time_seconds(ae_dir: str) -> dict:
  """What stage 1 cost once in ae_dir: {'train': training + evaluation seconds (the marker's; a resumed stage 1
  counts from its restart), 'cache': seconds to cache the latents}; NaN for a cost not recorded."""
  marker = read_marker(ae_dir) or {}
  path = epath.Path(ae_dir) / LATENT_CACHE
  cache = json.loads(path.read_text()) if path.exists() else {}
  return {'train': float(marker.get('seconds', 'nan')), 'cache': float(cache.get('seconds', 'nan'))}


def write_stage_marker(stage_dir: str, stage_fields: dict, **extra) -> None:
  """Marks a stage-1 directory complete for the fields that identify its model (call last, after training and
  evaluation); `extra`: e.g. the evaluation."""
  marker = {'fingerprint': builders.fingerprint(stage_fields), 'fields': stage_fields, **extra}
  run_dir.RunDir(stage_dir).write_text(MARKER, json.dumps(marker, indent=1, sort_keys=True))


def check_stage_marker(stage_dir: str, stage_fields: dict, what: str, workdir_field: str) -> Optional[dict]:
  """The marker of a stage-1 directory (None when it has none); raises config_lib.ConfigError when it was written
  for other fields than `stage_fields`, naming each differing field. what: 'autoencoder' / 'vocoder';
  workdir_field: the config field that names such a directory by hand."""
  marker = read_marker(stage_dir)
  wanted = builders.fingerprint(stage_fields)
  if marker is not None and marker.get('fingerprint') != wanted:
    diffs = (field_differences(marker.get('fields', {}), stage_fields)
             or [f'fingerprint {marker.get("fingerprint")} vs {wanted}'])
    raise config_lib.ConfigError(
        f'The {what} in {stage_dir} was trained for other settings than this config (fingerprint '
        f'{marker.get("fingerprint")}, config {wanted}):\n  ' + '\n  '.join(diffs) +
        f'\nRestore those settings, or leave {workdir_field} empty so the matching {what} is found or trained.')
  return marker


def write_marker(ae_dir: str, config: ml_collections.ConfigDict, **extra) -> None:
  """Marks ae_dir complete for `config` (call last, after training and evaluation); `extra`: e.g. the evaluation."""
  write_stage_marker(ae_dir, fields(config), **extra)


def _flat(values: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in values.items():
    out.update(_flat(v, f'{prefix}{k}.') if isinstance(v, dict) else {f'{prefix}{k}': v})
  return out


def field_differences(trained: dict, wanted: dict) -> list[str]:
  """'field: <trained> (trained) vs <wanted> (config)' for every (nested, dotted) field where the two differ."""
  old, new = _flat(trained), _flat(wanted)
  return [f'{k}: {old.get(k)!r} (trained) vs {new.get(k)!r} (config)' for k in sorted(set(old) | set(new))
          if old.get(k) != new.get(k)]


def check(config: ml_collections.ConfigDict, ae_dir: str) -> Optional[dict]:
  """The marker of ae_dir (None when it has none); raises config_lib.ConfigError when the marker was written for
  other fields than the config's, naming each differing field."""
  return check_stage_marker(ae_dir, fields(config), 'autoencoder', 'model.autoencoder_workdir')


def identity(config: ml_collections.ConfigDict, ae_dir: str, step: Optional[int] = None) -> str:
  """The fingerprint of the weights in ae_dir, for caches of its latents: the marker's; for an unmarked directory
  named by model.autoencoder_workdir (trained by hand), a fingerprint of the fields, the directory and its
  checkpoint `step`, so retraining it there never reuses latents of the former weights."""
  marker = check(config, ae_dir)
  if marker is not None:
    return marker['fingerprint']
  return builders.fingerprint({'fields': fields(config), 'dir': os.path.abspath(ae_dir) if not run_dir.is_remote(ae_dir)
                         else ae_dir, 'step': step})
