"""The tasks the loop trains: `diffusion` (the DiT), `autoencoder` and `vocoder` (stage 1) and `sync_expert` (the
contrastive lip-sync network used by evaluation)."""

from __future__ import annotations

import ml_collections

from avdiff import vocoders
from avdiff.train import stage1
from avdiff.train.task import Task
from avdiff.train.tasks.autoencoder import AutoencoderTask
from avdiff.train.tasks.diffusion import DiffusionTask
from avdiff.train.tasks.sync_expert import SyncExpertTask
from avdiff.train.tasks.vocoder import VocoderTask
from avdiff.train.tasks import autoencoder, sync_expert, vocoder

NAMES = ('diffusion', 'autoencoder', 'sync_expert', 'vocoder')


def build(name: str, config: ml_collections.ConfigDict, progress: bool = True
          ) -> tuple[ml_collections.ConfigDict, Task]:
  """(run config, task) for task `name`: the autoencoder, the sync expert and the vocoder train with their own
  steps, batch size and learning rate (model.ae.*, eval.sync_expert.*, model.vocoder.*) in place of the train
  section's. The diffusion task of a latent config trains its autoencoder first unless a finished one exists
  (`avdiff.train.stage1`); its run config names that autoencoder's directory. With model.vocoder.use the vocoder is
  found or trained first too (`avdiff.train.tasks.vocoder.find_or_train`). progress: stage 1's progress bar."""
  if name == 'diffusion':
    # A latent config: its autoencoder found or trained first, and the latents of its data cached (stage1.prepare).
    config, autoencoder_model, latents = stage1.prepare(config, progress)
    if vocoders.enabled(config):  # Its samples need the vocoder: found or trained first, as the autoencoder.
      vocoder.find_or_train(config, progress=progress)
    return config, DiffusionTask(config, autoencoder_model, latents)
  if name == 'autoencoder':
    config = autoencoder.stage_config(config)
    return config, AutoencoderTask(config)
  if name == 'sync_expert':
    config = sync_expert.stage_config(config)
    return config, SyncExpertTask(config)
  if name == 'vocoder':  # Trained by hand: no evaluation or marker (experiments.train_vocoder writes both).
    config = vocoder.stage_config(config)
    return config, VocoderTask(config)
  raise ValueError(f'task {name!r} is not one of {NAMES}')
