"""~1B-parameter joint audio-video DiT for a TPU pod / GPU cluster: FSDP over all devices, bf16 compute.

    python -m experiments.train --config=configs/pod_1b.py --workdir=gs://bucket/runs/pod_1b --num_processes=-1 \
        --config.model.autoencoder_workdir=gs://bucket/runs/ae_256

256x256 frames at 16 fps, 4 s clips (64 frames), 16 kHz audio as 64-band log-mel at 64 Hz. Stage-1 latents:
video 16 x 32 x 32 x 16 (8x spatial, 4x temporal), audio 64 x 16 x 16; tokens: 16 x 16 x 16 = 4096 video + 64 x 4 =
256 audio = 4352 per clip. Width 1536, depth 24, 16 heads of 96: 1.02B parameters (18 width^2 per block).
Memory per device for 8 and 64 devices: benchmarks/README.md ('## Training'); the mesh is pure FSDP
(parameters, gradients and Adam moments split over all devices, batch split over all devices). For tensor
parallelism on top, set e.g. --config.mesh.shape.tensor=4 (heads and MLP split 4 ways within a host).
"""

import ml_collections

from configs import base


def get_config():
  c = base.get_config()
  c.data.resolution = 256
  c.data.fps = 16
  c.data.clip_seconds = 4.0
  c.data.n_mels = 64
  c.data.n_fft = 1024
  c.data.num_train = 100_000
  c.data.worker_count = 8
  c.data.prefetch = 4

  c.model.encoder = 'separate_ae'
  c.model.ae.video_spatial_down = 8
  c.model.ae.video_temporal_down = 4
  c.model.ae.video_channels = 16
  c.model.ae.audio_time_down = 4
  c.model.ae.audio_freq_down = 4
  c.model.ae.audio_channels = 16
  c.model.ae.width = 128
  c.model.video_patch = (1, 2, 2)
  c.model.audio_patch = (1, 4)
  c.model.width = 1536
  c.model.depth = 24
  c.model.num_heads = 16
  c.model.mlp_ratio = 4.0
  c.model.dtype = 'bfloat16'
  c.model.param_dtype = 'float32'
  c.model.remat = 'dots'
  c.model.scan_layers = True

  c.train.steps = 400_000
  c.train.global_batch_size = 256
  c.train.learning_rate = 1e-4
  c.train.warmup_steps = 5000
  c.train.weight_decay = 0.01
  c.train.log_every = 100
  c.train.checkpoint_every = 2000
  c.train.sample_every = 10_000

  c.mesh.shape = ml_collections.ConfigDict({'data': 1, 'fsdp': -1, 'tensor': 1})
  return c
