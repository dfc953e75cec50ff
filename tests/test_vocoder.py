"""The neural vocoder: its inverse STFT inverts the STFT, its on-device log-mel is the data's, it learns one clip in a
few dozen steps, its fingerprint covers exactly the data and model.vocoder fields, and sampling with
model.vocoder.use returns waveforms on the data's clock (found or trained once, refused when missing)."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import train_toy
from avdiff import config_lib
from avdiff import models
from avdiff import sampling
from avdiff import vocoders
from avdiff.data import audio
from avdiff.data import synthetic
from avdiff.eval import voice
from avdiff.models import spectral
from avdiff.train.tasks import vocoder as vocoder_task
from configs import tiny

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


@pytest.fixture
def data_cfg():
  return tiny.get_config().data  # 16 kHz, n_fft 512, mel hop 400, synthesis hop 100.


@pytest.mark.parametrize('n_fft, hop, offset', [(512, 100, 50), (512, 128, 0), (256, 64, 0), (64, 16, 3)])
def test_istft_inverts_stft(n_fft, hop, offset):
  wave = np.random.default_rng(0).uniform(-1, 1, (2, 3000)).astype(np.float32)
  spec = spectral.stft(jnp.asarray(wave), n_fft, hop, offset)
  np.testing.assert_allclose(np.asarray(spectral.istft(spec, n_fft, hop, wave.shape[-1], offset)), wave, atol=1e-4)


def test_log_mel_on_device_is_the_datas(data_cfg):
  wave = synthetic.make_clip('talking', 3, data_cfg)['audio']
  np.testing.assert_allclose(np.asarray(spectral.log_mel(jnp.asarray(wave), data_cfg)), audio.log_mel(wave, data_cfg),
                             atol=1e-4)


def _small(data_cfg=None):
  c = tiny.get_config()
  c.model.vocoder.width = 32
  c.model.vocoder.depth = 2
  return c


def test_vocoder_output_lies_on_the_mel_clock(data_cfg):
  c = _small()
  vocoder = models.build_vocoder(c, nnx.Rngs(0))
  out = vocoder(jnp.zeros((2, 12, 32)))
  assert out.shape == (2, 12 * config_lib.mel_hop(c.data)) and vocoder.ratio * vocoder.hop == 400


def test_vocoder_learns_one_clip():
  """40 Adam steps on one clip of `talking`: the mel error of its waveform falls to a third of the untrained one."""
  c = _small()
  wave = synthetic.make_clip('talking', 1, c.data)['audio'][:16000].astype(np.float32)
  mel = audio.log_mel(wave, c.data)
  vocoder = models.build_vocoder(c, nnx.Rngs(0))
  graphdef, state = nnx.split(vocoder)
  tx = optax.adam(3e-3)
  opt = tx.init(state)

  @jax.jit
  def step(state, opt):
    loss_fn = lambda s: models.vocoder_loss(nnx.merge(graphdef, s), mel[None], wave[None], c)[0]
    grads = jax.grad(loss_fn)(state)
    updates, opt = tx.update(grads, opt, state)
    return optax.apply_updates(state, updates), opt

  before = voice.mel_error(sampling.vocode(nnx.merge(graphdef, state), mel[None])[0], mel, c.data)
  for _ in range(40):
    state, opt = step(state, opt)
  after = voice.mel_error(sampling.vocode(nnx.merge(graphdef, state), mel[None])[0], mel, c.data)
  assert after < before / 3, (before, after)


@pytest.mark.parametrize('field, value', [
    ('model.vocoder.width', 64), ('model.vocoder.depth', 2), ('model.vocoder.steps', 7), ('model.vocoder.seed', 1),
    ('model.vocoder.learning_rate', 1e-4), ('model.vocoder.resolutions', ((512, 128),)),
    ('model.vocoder.segment_frames', 16), ('data.n_mels', 64), ('data.sample_rate', 8000), ('data.num_train', 8)])
def test_fingerprint_changes_with_every_data_and_vocoder_field(field, value):
  config = tiny.get_config()
  assert vocoders.fingerprint(train_toy.changed(config, field, value)) != vocoders.fingerprint(config)


@pytest.mark.parametrize('field, value', [
    ('model.width', 64), ('model.depth', 2), ('model.ae.width', 8), ('diffusion.objective', 'flow'),
    ('train.steps', 7), ('train.learning_rate', 1.0), ('seed', 3), ('model.vocoder.use', True),
    ('model.vocoder.workdir', '/x'), ('data.data_dir', '/elsewhere'), ('model.autoencoder_root', '/x')])
def test_fingerprint_ignores_the_dit_training_switch_and_storage_fields(field, value):
  config = tiny.get_config()
  assert vocoders.fingerprint(train_toy.changed(config, field, value)) == vocoders.fingerprint(config)


def test_sampling_with_the_vocoder_found_or_trained_once(tmp_path, monkeypatch):
  config = train_toy.config(DATA_DIR, **{'model.autoencoder_root': str(tmp_path), 'model.vocoder.width': 16,
                                         'model.vocoder.depth': 1, 'model.vocoder.steps': 2,
                                         'model.vocoder.batch_size': 8, 'model.vocoder.segment_frames': 16})
  dit = models.build_dit(config, nnx.Rngs(0))
  on = train_toy.changed(config, 'model.vocoder.use', True)
  with pytest.raises(config_lib.ConfigError, match='experiments.train_vocoder'):
    sampling.sample_clips(sampling.Model(on, dit), [{'label': 0}], 'joint', seed=0)

  trained = vocoder_task.find_or_train(config, progress=False, eval_clips=2)
  assert trained == vocoders.derived_dir(config) and vocoders.check(config, trained)['eval']['vocoder']['mel_l1'] > 0
  monkeypatch.setattr(vocoder_task, 'train_and_evaluate', lambda *a, **k: pytest.fail('trained twice'))
  assert vocoder_task.find_or_train(config, progress=False, eval_clips=2) == trained

  clips = sampling.sample_clips(sampling.Model(on, dit), [{'label': 0}, {'label': 1}], 'joint', seed=0)
  samples = config_lib.num_samples(config.data)  # 0.8 s at 16 kHz.
  assert [c['audio'].shape for c in clips] == [(samples,)] * 2
  assert all(c['audio'].dtype == np.float32 and np.abs(c['audio']).max() <= 1.0 for c in clips)

  other = train_toy.changed(train_toy.changed(config, 'model.vocoder.width', 8), 'model.vocoder.workdir', trained)
  with pytest.raises(config_lib.ConfigError, match='vocoder.width: 16 \\(trained\\) vs 8'):
    sampling.load_vocoder(train_toy.changed(other, 'model.vocoder.use', True))


def test_a_config_from_before_the_vocoder_samples_with_griffin_lim():
  """A run's config.json read without configs/base.py's defaults has no model.vocoder: Griffin-Lim, no error."""
  config = tiny.get_config()
  with config.unlocked():
    del config.model['vocoder']
  mel = audio.log_mel(synthetic.make_clip('talking', 2, config.data)['audio'], config.data)[None, :8]
  assert sampling.waveforms(sampling.Model(config, dit=None), mel).shape == (1, 8 * config_lib.mel_hop(config.data))
