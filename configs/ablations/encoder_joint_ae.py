"""Ablation of configs/tiny.py: diffusion on the latents of one joint audio-video autoencoder (shared layers mix
video and audio of the same time span). One command; stage 1 is trained first when needed:

    python -m experiments.train --config=configs/ablations/encoder_joint_ae.py --workdir=runs/encoder_joint_ae

The first run trains the autoencoder into runs/stage1/joint_ae-<fingerprint> (model.autoencoder_root; ~21 minutes on
2 cores) and caches the latents of the train and validation clips; every later run with the same data and model.ae
fields reuses both (avdiff.train.stage1). --config.model.autoencoder_workdir=DIR uses an autoencoder trained there.

The latent is [10, 8, 8, 8] video (2x temporal, 4x spatial down) and [40, 8, 8] audio (2x time, 4x mel down); the
patches are set so each token holds fewer values than the width (video 1x2x2x8 = 32, audio 4x2x8 = 64) and the
token grid equals the pixel path's (160 video + 40 audio tokens of 0.2 s each), so the two compare at equal
sequence cost.
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.encoder = 'joint_ae'
  c.model.video_patch = (1, 2, 2)
  c.model.audio_patch = (4, 2)
  return c
