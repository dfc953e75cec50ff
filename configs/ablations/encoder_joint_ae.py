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

Training and sampling times are shifted towards noise (diffusion.flow_shift 3, the SD3 shift). The latents carry
more signal per value than the pixels and the mel (channel means up to 2.6, stds 0.4-1.4, against stds ~0.5), so at
the same t a noisy latent still shows much of the clip, and without the shift the DiT learned to generate audio
without reading the video it is given: video_to_audio failed on 2 of 3 seeds (r ~0.1;
benchmarks/given_modality.md: audio error beside another clip's video only 1.1x that beside the clip's own at
t = 0.9, against 4.2x with the shift). Results over 3 seeds: README 'Shared-latent path vs pixel patches'.
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.model.encoder = 'joint_ae'
  c.model.video_patch = (1, 2, 2)
  c.model.audio_patch = (4, 2)
  c.diffusion.flow_shift = 3.0
  return c
