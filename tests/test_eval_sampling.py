"""Model-sample conditions of the evaluation: an (untrained) DiT sampled, decoded and scored end to end.

Slow (~1 min on 2 CPU cores: three sampler compilations of the tiny DiT).
"""

import numpy as np
import pytest
from flax import nnx

from avdiff import models
from avdiff import sampling
from avdiff.data import synthetic
from avdiff.eval import conditions
from configs import tiny


@pytest.mark.slow
def test_sample_joint_and_audio_to_video_then_score():
  config = tiny.get_config()
  config.diffusion.num_sampling_steps = 2
  config.eval.bootstrap_samples = 20
  clips = [synthetic.talking_clip(s, config.data) for s in (2_000_000, 2_000_001)]
  dit = models.build_dit(config, nnx.Rngs(0))
  model = sampling.Model(config, dit)
  joint = sampling.sample_clips(model, clips, 'joint', seed=0)
  a2v = sampling.sample_clips(model, clips, 'audio_to_video', seed=0)
  for gen in (joint, a2v):
    assert len(gen) == 2
    assert gen[0]['video'].dtype == np.uint8 and gen[0]['video'].shape == clips[0]['video'].shape
    assert gen[0]['audio'].shape == clips[0]['audio'].shape
    assert gen[0]['label'] == clips[0]['label'] and (gen[0]['mouth_box'] == clips[0]['mouth_box']).all()
  np.testing.assert_array_equal(a2v[1]['audio'], clips[1]['audio'])  # Conditioned on (and paired with) real audio.
  again = sampling.sample_clips(model, clips[:1], 'joint', seed=0)
  np.testing.assert_array_equal(again[0]['video'], joint[0]['video'])  # Seeded.
  # A new model of the same structure (e.g. the next in-loop eval step's EMA params) reuses the compiled sampler:
  # one compilation per batch shape (2 clips, 1 clip), none for the new parameters.
  sampling.sample_clips(sampling.Model(config, models.build_dit(config, nnx.Rngs(1))), clips, 'joint', seed=1)
  assert sampling.jitted_sample_batch(config, nnx.graphdef(dit), None, 'joint')._cache_size() == 2
  res = conditions.score_conditions({'ground_truth': clips, 'model_joint': joint, 'model_audio_to_video': a2v},
                                   config)
  for name in ('model_joint', 'model_audio_to_video'):  # Untrained samples are scored, and differ from the truth.
    assert res[name]['num_scored'] == 2 and not res[name]['skip_reasons'], res[name]['skip_reasons']
    assert 0.0 <= res[name]['metrics']['av_align']['mean'] <= 1.0
    assert res[name]['metrics']['fd']['mean'] > 0.0
