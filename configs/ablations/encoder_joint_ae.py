"""Ablation of configs/tiny.py: diffusion on the latents of one joint audio-video autoencoder (shared layers mix video and audio
of the same time span). Train stage 1 first:

    python -m experiments.train_autoencoder --config=configs/ablations/encoder_joint_ae.py --workdir=runs/ae_joint

    python -m experiments.train --config=configs/ablations/encoder_joint_ae.py --workdir=runs/encoder_joint_ae
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.encoder = 'joint_ae'
  c.model.autoencoder_workdir = 'runs/ae_joint'
  return c
