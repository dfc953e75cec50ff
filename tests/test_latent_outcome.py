"""The card's latent pipeline learns lip-sync: stage 1 (the joint autoencoder with the patch video stem,
configs/ablations/encoder_joint_ae_patch.py, 200 of its 500 steps) trained and its latents cached by `tasks.build`,
the DiT trained with the main job's recipe on the cached latents for 500 of its 1000 steps (every latent run of
benchmarks/latent_main_job.md had a2v r ~0.9 by step 500 in its in-loop evaluation), then audio_to_video samples
of its EMA params decoded on 16 held-out clips and read with the weight-free mouth and envelope readers, held to
the main job's targets (a2v r >= 0.8, shuffled-audio |r| <= 0.15). Before the DiT, the autoencoder's own
reconstructions of the same clips must keep what those readers see (`avdiff.eval.reconstruction.readers`). benchmarks/latent_main_job.md has the
full-scale study over 3 seeds.

Slow (about 8 minutes on 2 cores); `.ci/run` runs it. Seeded: the same run every time.
"""

import os

import pytest

from avdiff import sampling
from avdiff.data import builders
from avdiff.eval import outcomes
from avdiff.eval import reconstruction
from avdiff.train import loop
from avdiff.train import tasks
from configs.ablations import encoder_joint_ae_patch

STAGE1_STEPS = int(os.environ.get('AVDIFF_LATENT_OUTCOME_STAGE1_STEPS', '200'))
STEPS = int(os.environ.get('AVDIFF_LATENT_OUTCOME_STEPS', '500'))
CLIPS = 16


@pytest.mark.slow
def test_latent_path_learns_audio_to_video_sync(tmp_path):
  c = encoder_joint_ae_patch.get_config()
  c.data.data_dir = str(tmp_path / 'data')
  c.model.autoencoder_root = str(tmp_path / 'stage1')
  c.model.ae.steps = STAGE1_STEPS
  c.train.steps = STEPS
  c.train.eval_every = 0
  c.train.eval_samples = False
  c.train.sample_every = 0
  c.train.checkpoint_every = STEPS
  config, task = tasks.build('diffusion', c, progress=False)  # Stage 1 first, then the latent cache.

  held_out = builders.load_clips(config, 'test', CLIPS)
  classifier = outcomes.SpeakerClassifier.fit(builders.load_clips(config, 'train', 64))
  read = reconstruction.readers(held_out, *reconstruction.reconstruct(sampling.load_autoencoder(config), held_out),
                                config.data, classifier)
  print(f'stage 1 after {STAGE1_STEPS} steps: mouth reader r {read["mouth_reader_r"]:.3f} on reconstructions '
        f'({read["mouth_reader_r_truth"]:.3f} on the clips), speaker accuracy {read["speaker_accuracy"]:.3f}, '
        f'audio envelope r {read["envelope_r"]:.3f}')
  assert read['mouth_reader_r'] >= 0.9 and read['speaker_accuracy'] >= 0.9 and read['envelope_r'] >= 0.9, read

  workdir = str(tmp_path / 'run')
  loop.train(config, workdir, task, progress=False)
  model = sampling.load_model(workdir, config)
  sampled = sampling.sample_clips(model, held_out, 'audio_to_video', seed=0)
  m = outcomes.measure(held_out, {'audio_to_video': sampled}, config.data)
  r, shuffled = m['a2v_r']['mean'], m['a2v_shuffled_r']['mean']
  print(f'latent path: audio_to_video r = {r:.3f} (shuffled audio: {shuffled:.3f}) after {STEPS} DiT steps')
  assert r >= 0.8 and abs(shuffled) <= 0.15, m
