"""Tiny CPU config: a joint audio-video DiT on the built-in `talking` data, trains in minutes on 2 cores.

    python -m experiments.train --config=configs/tiny.py --workdir=runs/tiny

32x32 frames at 10 fps, 2 s clips (20 frames), 16 kHz audio as 32-band log-mel at 40 Hz (4 mel frames per video
frame); 160 video + 40 audio tokens per clip; a 4-block, width-128 transformer.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.resolution = 32
  c.data.fps = 10
  c.data.n_fft = 512
  c.data.n_mels = 32
  c.data.num_train = 256
  c.data.num_validation = 32
  c.data.num_test = 32

  c.model.video_patch = (2, 8, 8)
  c.model.audio_patch = (8, 8)
  c.model.width = 128
  c.model.depth = 4
  c.model.num_heads = 4
  c.model.dtype = 'float32'  # bf16 matmuls are emulated (slow) on most CPUs.
  c.model.ae.width = 32
  c.model.ae.steps = 500

  c.diffusion.num_sampling_steps = 25

  c.train.steps = 2000
  c.train.global_batch_size = 16
  c.train.learning_rate = 3e-4
  c.train.warmup_steps = 100
  c.train.ema_decay = 0.999
  c.train.log_every = 25
  c.train.checkpoint_every = 500
  c.train.sample_every = 1000
  c.train.num_samples = 2

  c.eval.num_clips = 32
  c.eval.max_offset_frames = 6
  c.eval.bootstrap_samples = 200
  c.eval.sync_expert.steps = 600
  return c
