"""Ablation of configs/tiny.py: diffusion on the latents of one autoencoder per modality. One command; stage 1 is
trained first when needed:

    python -m experiments.train --config=configs/ablations/encoder_separate_ae.py --workdir=runs/encoder_separate_ae

The first run trains the autoencoder into runs/stage1/separate_ae-<fingerprint> (model.autoencoder_root) and caches
the latents of the train and validation clips; later runs with the same data and model.ae fields reuse both
(avdiff.train.stage1).
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.encoder = 'separate_ae'
  return c
