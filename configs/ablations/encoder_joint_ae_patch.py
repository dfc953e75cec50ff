"""Ablation of configs/ablations/encoder_joint_ae.py: the joint autoencoder with the patch video stem
(model.ae.video_stem='patch': each 4 x 4 pixel block projected to a latent position, one ResBlock there, no layer
at the full or the half resolution), the same latent shapes and DiT. One command; its stage 1 is trained first:

    python -m experiments.train --config=configs/ablations/encoder_joint_ae_patch.py --workdir=runs/latent_patch

Its stage-1 cost and what its reconstructions keep, beside the conv stem's: benchmarks/autoencoder.md.
"""

from configs.ablations import encoder_joint_ae


def get_config():
  c = encoder_joint_ae.get_config()
  c.model.ae.video_stem = 'patch'
  return c
