"""TFDS builder (array_record) of a dataset's clips as a trained stage-1 autoencoder's latents, computed once.

    <data_dir>/latents/<dataset>_<encoder>_<hash>/1.0.0/...

The hash covers the dataset's fields (`builders.dataset_fields`) and the autoencoder's fingerprint
(`avdiff.autoencoders.identity`), so a changed data field or another autoencoder never reads a stale cache.
Example i of a split is the latent of example i of the pixel split (written in order, never shuffled), so a
pipeline over either reads the same clips in the same order.

Stored features (one clip): `video_latent` float32 [T_l, H_l, W_l, C_v] and `audio_latent` float32 [T_al, F_l, C_a]
(`config_lib.layout`), `label` int32, `key` text (the pixel example's), `caption` text ('' when it has none).

Only the posterior MEAN is stored: it is what the DiT trains on when it runs the encoder itself
(`avdiff.sampling.to_latents` -> `ae.encode`), so a run on the cache computes the same loss as one through the
encoder, at half the bytes of mean + log-std. (Sampling z ~ N(mean, std) per step, which would keep the VAE's noise
as augmentation, would need the log-std too and is a change of the recipe, not of its cost.)

The builder only stores what it is given: `generate(examples)` takes, per split, an iterable of example dicts
(`avdiff.train.stage1` encodes the pixel clips).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Iterable, Optional

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from avdiff.data import builders

# Bump when a stored feature changes meaning; it is part of every latent dataset's hash.
LATENT_FORMAT_VERSION = 1


@dataclasses.dataclass
class LatentConfig(tfds.core.BuilderConfig):
  """BuilderConfig carrying the fields (a plain dict) its name was hashed from, the latent shapes among them."""
  fields: dict = dataclasses.field(default_factory=dict)


def latent_fields(data_cfg: ml_collections.ConfigDict, encoder: str, ae_fingerprint: str, video_latent: tuple,
                  audio_latent: tuple, splits: tuple) -> dict:
  """The fields that determine the stored latents (JSON-serializable)."""
  return {'data': builders.dataset_fields(data_cfg, data_cfg.dataset), 'encoder': encoder,
          'autoencoder': ae_fingerprint, 'video_latent': list(video_latent), 'audio_latent': list(audio_latent),
          'splits': list(splits), 'format_version': LATENT_FORMAT_VERSION}


def config_name(fields: dict) -> str:
  """<dataset>_<encoder>_<hash of the fields>."""
  return f"{fields['data']['dataset']}_{fields['encoder']}_{builders.fingerprint(fields)}"


class Latents(builders.LocalBuilder):
  """Latents of the splits `fields['splits']`; build with `generate`, read with `as_data_source(split)`."""
  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, fields: Optional[dict] = None, config: Optional[LatentConfig] = None, **kwargs):
    # Unpickling (grain worker processes) calls __init__ again with the BuilderConfig only.
    if config is None:
      config = LatentConfig(name=config_name(fields), fields=fields,
                            description=json.dumps(fields, sort_keys=True))
    self._examples: dict[str, Iterable[dict]] = {}
    super().__init__(config=config, file_format='array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    f = self.builder_config.fields
    raw = tfds.features.Encoding.BYTES
    features = tfds.features.FeaturesDict({
        'video_latent': tfds.features.Tensor(shape=tuple(f['video_latent']), dtype=np.float32, encoding=raw),
        'audio_latent': tfds.features.Tensor(shape=tuple(f['audio_latent']), dtype=np.float32, encoding=raw),
        'label': tfds.features.Scalar(dtype=np.int32),
        'key': tfds.features.Text(),
        'caption': tfds.features.Text(),
    })
    return tfds.core.DatasetInfo(builder=self, description='Posterior means of a stage-1 autoencoder.',
                                 features=features, disable_shuffling=True,
                                 metadata=tfds.core.MetadataDict(fields=f))

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    missing = [s for s in self.builder_config.fields['splits'] if s not in self._examples]
    if missing:
      raise ValueError(f'latent dataset {self.builder_config.name}: no examples given for split(s) {missing}')
    return {split: self._generate_examples(self._examples[split]) for split in self.builder_config.fields['splits']}

  def _generate_examples(self, examples: Iterable[dict]):
    for i, example in enumerate(examples):
      yield i, example

  def generate(self, examples: dict[str, Callable[[], Iterable[dict]]]) -> None:
    """Writes the dataset: examples[split]() yields that split's example dicts, in the pixel split's order."""
    self._examples = {split: make() for split, make in examples.items()}
    tfds.disable_progress_bar()
    self.download_and_prepare()
