"""Ablation of configs/tiny.py: diffusion on the latents of one autoencoder per modality. Train stage 1 first:

    python -m experiments.train_autoencoder --config=configs/ablations/encoder_separate_ae.py --workdir=runs/ae_separate

    python -m experiments.train --config=configs/ablations/encoder_separate_ae.py --workdir=runs/encoder_separate_ae
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.encoder = 'separate_ae'
  c.model.autoencoder_workdir = 'runs/ae_separate'
  return c
