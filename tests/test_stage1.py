"""Stage 1 pays once: the autoencoder's fingerprint covers exactly the fields that shape it, `train` finds, trains,
resumes or refuses an autoencoder directory, and the cached latents change nothing but cost (they decode like the
encoder's latents, and the diffusion loss on them equals the loss through the encoder)."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import train_toy
from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import config_lib
from avdiff import models
from avdiff import sampling
from avdiff.data import builders
from avdiff.data import frames
from avdiff.data import pipeline
from avdiff.train import loop
from avdiff.train import stage1
from avdiff.train import tasks
from avdiff.train.tasks import autoencoder as autoencoder_task

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')


def latent_config(root: str, **extra):
  """The toy DiT on a width-8 separate_ae (4x8x8x4 video + 16x8x4 audio latent, 8 + 4 tokens), autoencoders under
  `root`."""
  overrides = {'model.encoder': 'separate_ae', 'model.video_patch': (2, 4, 4), 'model.audio_patch': (8, 4),
               'model.ae.width': 8, 'model.ae.video_channels': 4, 'model.ae.audio_channels': 4,
               'model.ae.steps': 2, 'model.ae.batch_size': 8, 'model.autoencoder_root': root,
               'train.checkpoint_every': 1}
  return train_toy.config(DATA_DIR, **{**overrides, **extra})


# ----------------------------------------------------------------------------- identity

@pytest.mark.parametrize('field, value', [
    ('data.resolution', 16), ('data.num_train', 24), ('data.fps', 5), ('data.dataset', 'impacts'),
    ('model.encoder', 'joint_ae'), ('model.ae.width', 16), ('model.ae.steps', 3), ('model.ae.kl_weight', 1e-3),
    ('model.ae.seed', 1), ('model.ae.learning_rate', 3e-4), ('model.param_dtype', 'bfloat16'),
    ('model.ae.video_stem', 'patch')])
def test_fingerprint_changes_with_every_data_and_autoencoder_field(field, value):
  config = latent_config('/tmp/unused')
  changed = train_toy.changed(config, field, value)
  assert autoencoders.fingerprint(changed) != autoencoders.fingerprint(config)
  assert autoencoders.derived_dir(changed) != autoencoders.derived_dir(config)  # Never the stale directory.


@pytest.mark.parametrize('field, value', [
    ('model.width', 64), ('model.depth', 2), ('model.video_patch', (1, 2, 2)), ('diffusion.objective', 'flow'),
    ('diffusion.sync_loss_weight', 0.0), ('train.steps', 7), ('train.learning_rate', 1.0), ('train.warmup_steps', 9),
    ('train.global_batch_size', 4), ('seed', 3), ('data.data_dir', '/elsewhere'), ('model.autoencoder_root', '/x'),
    ('eval.num_clips', 2), ('data.shuffle', False)])
def test_fingerprint_ignores_the_dit_diffusion_training_and_storage_fields(field, value):
  config = latent_config('/tmp/unused')
  assert autoencoders.fingerprint(train_toy.changed(config, field, value)) == autoencoders.fingerprint(config)


def test_a_field_added_at_its_old_behaviour_keeps_the_fingerprint():
  """model.ae fields added since version 1 (autoencoders.ADDED_AE_FIELDS) at the value that builds the old model
  leave the identity as it was: the autoencoders trained before them stay usable."""
  config = latent_config('/tmp/unused')
  before = config.copy_and_resolve_references()
  with before.unlocked():
    for field in autoencoders.ADDED_AE_FIELDS:
      del before.model.ae[field]
  assert autoencoders.fields(before) == autoencoders.fields(config)
  assert autoencoders.fingerprint(before) == autoencoders.fingerprint(config)


def test_stage1_trains_from_model_ae_not_the_dit_train_section():
  """What stage 1 reads from the config is in the fingerprint: a DiT run's optimizer fields do not reach it."""
  config = latent_config('/tmp/unused')
  other = config
  for field, value in (('train.warmup_steps', 9), ('train.ema_decay', 0.5), ('seed', 4)):
    other = train_toy.changed(other, field, value)
  a, b = autoencoder_task.stage_config(config), autoencoder_task.stage_config(other)
  assert a.train.to_dict() == b.train.to_dict() and a.seed == b.seed == config.model.ae.seed


def test_latent_dataset_name_follows_data_and_autoencoder():
  config = latent_config('/tmp/unused')
  lay = config_lib.layout(config)
  name = lambda c, ae_id: stage1.latents_lib.config_name(stage1.latents_lib.latent_fields(
      c.data, c.model.encoder, ae_id, lay.video_latent, lay.audio_latent, stage1.SPLITS))
  base = name(config, 'abc')
  assert name(config, 'abc') == base
  assert name(config, 'abd') != base  # Another autoencoder.
  assert name(train_toy.changed(config, 'data.num_train', 24), 'abc') != base  # Other clips.


# ----------------------------------------------------------------------------- resolution

class _FakeStage1:
  """Stands in for `train_and_evaluate`: records each call and marks the directory as the real one does last."""

  def __init__(self, stopped='done'):
    self.calls = []
    self.stopped = stopped

  def __call__(self, config, workdir, progress=True):
    self.calls.append(workdir)
    if self.stopped == 'done':
      autoencoders.write_marker(workdir, autoencoder_task.stage_config(config), step=config.model.ae.steps)
    return {'stopped': self.stopped, 'step': 1, 'ema': {'psnr_video': 20.0}}


def test_train_finds_trains_resumes_or_refuses(tmp_path, monkeypatch, capsys):
  config = latent_config(str(tmp_path / 'stage1'))
  fake = _FakeStage1()
  monkeypatch.setattr(autoencoder_task, 'train_and_evaluate', fake)
  ae_dir = autoencoders.derived_dir(config)
  assert ae_dir.startswith(str(tmp_path / 'stage1' / 'separate_ae-'))

  # Missing: trained there first.
  assert stage1.find_or_train(config, progress=False) == ae_dir and fake.calls == [ae_dir]
  assert f'Training autoencoder at {ae_dir} first (fingerprint {autoencoders.fingerprint(config)}' in (
      capsys.readouterr().err)
  # Complete: used, not trained again; a DiT-only change finds the same one.
  dit_change = train_toy.changed(config, 'model.width', 64)
  assert stage1.find_or_train(dit_change, progress=False) == ae_dir and len(fake.calls) == 1
  assert f'Using trained autoencoder at {ae_dir} (fingerprint {autoencoders.fingerprint(config)})' in (
      capsys.readouterr().err)
  # A changed AE field: its own directory, trained there (never the stale one).
  wider = train_toy.changed(config, 'model.ae.width', 16)
  assert stage1.find_or_train(wider, progress=False) != ae_dir and len(fake.calls) == 2
  # Killed run (checkpoints, no marker): stage 1 runs again in the same directory, which resumes from its checkpoint.
  os.remove(os.path.join(ae_dir, autoencoders.MARKER))
  assert stage1.find_or_train(config, progress=False) == ae_dir and fake.calls[-1] == ae_dir
  # Preempted stage 1: no marker, a clear message, rerun continues.
  os.remove(os.path.join(ae_dir, autoencoders.MARKER))
  monkeypatch.setattr(autoencoder_task, 'train_and_evaluate', _FakeStage1('preempted'))
  with pytest.raises(stage1.Preempted, match='rerun the same command'):
    stage1.find_or_train(config, progress=False)
  monkeypatch.setattr(autoencoder_task, 'train_and_evaluate', fake)
  stage1.find_or_train(config, progress=False)

  # An explicit directory with a marker of other fields is refused, naming them (training and sampling alike).
  explicit = train_toy.changed(config, 'model.autoencoder_workdir', ae_dir)
  explicit = train_toy.changed(explicit, 'model.ae.kl_weight', 0.5)
  for resolve in (lambda: stage1.find_or_train(explicit, progress=False), lambda: sampling.load_autoencoder(explicit)):
    with pytest.raises(config_lib.ConfigError, match=r'ae\.kl_weight: 0\.0001 \(trained\) vs 0\.5 \(config\)'):
      resolve()
  # An explicit matching directory is used as given.
  same = train_toy.changed(config, 'model.autoencoder_workdir', ae_dir)
  calls = len(fake.calls)
  assert stage1.find_or_train(same, progress=False) == ae_dir and len(fake.calls) == calls
  # A recorded path that is gone (runs/ moved since the run recorded it): the directory of the same fingerprint.
  moved = train_toy.changed(config, 'model.autoencoder_workdir', str(tmp_path / 'gone' / os.path.basename(ae_dir)))
  assert autoencoders.trained_dir(moved) == ae_dir
  assert stage1.find_or_train(moved, progress=False) == ae_dir and len(fake.calls) == calls


def test_sampling_names_the_command_when_no_autoencoder_is_trained(tmp_path):
  config = latent_config(str(tmp_path / 'stage1'))
  with pytest.raises(config_lib.ConfigError, match='experiments.train'):
    sampling.load_autoencoder(config)


# ----------------------------------------------------------------------------- cached latents

def _fit(config, steps=60):
  """A briefly fitted autoencoder (plain Adam on one training batch) for the comparisons below."""
  ae = models.build_autoencoder(config, nnx.Rngs(0))
  batch = next(pipeline.InputPipeline(config, 'train', shuffle=False, batch_size=8))
  host = {'video': frames.to_float(batch['video']), 'audio_mel': batch['audio_mel']}
  graphdef, params = nnx.split(ae, nnx.Param)
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt, rng):
    loss, grads = jax.value_and_grad(lambda p: models.ae_loss(nnx.merge(graphdef, p), host, rng)[0])(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  opt = tx.init(params)
  for i in range(steps):
    params, opt, _ = step(params, opt, jax.random.key(i))
  return nnx.merge(graphdef, params)


@pytest.fixture(scope='module')
def cached(tmp_path_factory):
  """(config naming a marked autoencoder directory, the autoencoder, {split: cached latents})."""
  root = tmp_path_factory.mktemp('stage1')
  # Its own data folder: the cache is named by the marker's fingerprint, which this hand-fitted autoencoder shares
  # with any other of the same fields.
  config = latent_config(str(root))
  config.data.data_dir = str(tmp_path_factory.mktemp('data'))
  ae = _fit(config)
  ae_dir = autoencoders.derived_dir(config)
  autoencoders.write_marker(ae_dir, config)
  config.model.autoencoder_workdir = ae_dir
  return config, ae, stage1.cache_latents(config, ae_dir, ae)


def _mse(a, b):
  return float(jnp.mean(jnp.square(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32))))


def test_cached_latents_decode_like_the_encoders(cached):
  config, ae, sources = cached
  assert {s: len(sources[s]) for s in stage1.SPLITS} == {'train': 16, 'validation': 8}
  pixels = builders.load_source(config, 'train')
  idx = [0, 5, 15]
  video = frames.to_float(np.stack([pixels[i]['video'] for i in idx]))
  mel = np.stack([pixels[i]['audio_mel'] for i in idx])
  cached_z = {'video': np.stack([sources['train'][i]['video_latent'] for i in idx]),
              'audio': np.stack([sources['train'][i]['audio_latent'] for i in idx])}
  assert [int(sources['train'][i]['label']) for i in idx] == [int(pixels[i]['label']) for i in idx]
  encoded = ae.encode(jnp.asarray(video), jnp.asarray(mel))
  for k in ('video', 'audio'):  # The posterior mean of each clip, in the pixel split's order.
    np.testing.assert_allclose(cached_z[k], encoded[k], atol=1e-5)
  from_cache, direct = ae.decode(cached_z), ae.decode(encoded)
  for got, want, clip in zip(from_cache, direct, (video, mel)):
    assert _mse(got, want) < 1e-9
    # Within the autoencoder's own reconstruction error of the clip, which the fit took below the clip's variance
    # (the error of predicting its mean).
    assert abs(_mse(got, clip) - _mse(want, clip)) <= 1e-6 + 1e-3 * _mse(want, clip)
    assert _mse(got, clip) < 0.8 * float(jnp.var(jnp.asarray(clip)))


def test_cache_is_reused_and_never_stale(cached):
  config, ae, _ = cached
  ae_dir = config.model.autoencoder_workdir
  assert stage1.latent_builder(config, ae_dir).is_prepared()
  # Another autoencoder (a marker of other fields): another dataset, not built yet.
  other = train_toy.changed(train_toy.changed(config, 'model.ae.kl_weight', 0.5), 'model.autoencoder_workdir', '')
  autoencoders.write_marker(autoencoders.derived_dir(other), other)
  assert not stage1.latent_builder(other, autoencoders.derived_dir(other)).is_prepared()
  # Other clips: the autoencoder of the former ones is refused, naming the field.
  with pytest.raises(config_lib.ConfigError, match=r'data\.num_validation: 8 \(trained\) vs 9 \(config\)'):
    stage1.latent_builder(train_toy.changed(config, 'data.num_validation', 9), ae_dir)


@pytest.mark.parametrize('latent_norm', ['none', 'channel'])
def test_loss_on_cached_latents_equals_the_loss_through_the_encoder(cached, latent_norm):
  config, ae, sources = cached
  config = train_toy.changed(config, 'model.latent_norm', latent_norm)
  if latent_norm == 'channel':
    config.model.latent_stats.update(stage1.latent_stats(sources['train']))
  cached_task = tasks.DiffusionTask(config, ae, sources)
  encoder_task = tasks.DiffusionTask(config, ae)
  assert cached_task.frozen_params() is None  # The step gets no encoder at all.
  latent = next(cached_task.input_pipeline(config, 'train', shuffle=False))
  pixel = next(encoder_task.input_pipeline(config, 'train', shuffle=False))
  assert 'video' not in latent and latent['video_latent'].shape[1:] == config_lib.layout(config).video_latent
  np.testing.assert_array_equal(latent['label'], pixel['label'])
  dit = cached_task.build_model(config, nnx.Rngs(0))
  keep = lambda b: {k: v for k, v in b.items() if k in cached_task.batch_keys}
  pixel = dict(keep(pixel), video=frames.to_float(pixel['video']))
  rng = jax.random.key(7)
  loss_cached, m_cached = cached_task.loss(dit, keep(latent), rng, None)
  loss_encoder, m_encoder = encoder_task.loss(dit, pixel, rng, encoder_task.frozen_params())
  np.testing.assert_allclose(float(loss_cached), float(loss_encoder), rtol=1e-5)
  for k in ('loss_video', 'loss_audio'):
    np.testing.assert_allclose(float(m_cached[k]), float(m_encoder[k]), rtol=1e-5)


def test_channel_norm_standardizes_the_training_latents_and_decodes_back(cached):
  """model.latent_norm='channel': the DiT sees each training-split channel at mean 0 and std 1, and from_latents
  undoes it (a clip round-trips as through the raw autoencoder)."""
  config, ae, sources = cached
  stats = stage1.latent_stats(sources['train'])
  normed = train_toy.changed(config, 'model.latent_norm', 'channel')
  normed.model.latent_stats.update(stats)
  train = {m: np.stack([sources['train'][i][f'{m}_latent'] for i in range(len(sources['train']))])
           for m in ('video', 'audio')}
  for m, z in train.items():  # The statistics against numpy's, over clips, time and space.
    flat = z.reshape(-1, z.shape[-1]).astype(np.float64)
    np.testing.assert_allclose(stats[f'{m}_mean'], flat.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats[f'{m}_std'], flat.std(0), rtol=1e-6)
    seen = np.asarray(sampling.normalize_latents(normed, {m: z})[m]).reshape(-1, z.shape[-1])
    np.testing.assert_allclose(seen.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(seen.std(0), 1.0, rtol=1e-4)
  pixels = builders.load_source(config, 'validation')
  video = frames.to_float(np.stack([pixels[i]['video'] for i in range(3)]))
  mel = np.stack([pixels[i]['audio_mel'] for i in range(3)])
  raw = ae.decode(ae.encode(jnp.asarray(video), jnp.asarray(mel)))
  through = sampling.from_latents(normed, ae, sampling.to_latents(normed, ae, jnp.asarray(video), jnp.asarray(mel)))
  for got, want in zip(through, raw):
    np.testing.assert_allclose(got, want, atol=1e-4)
  # Without the statistics there is nothing to undo: a clear error, not raw latents fed to a normalized DiT.
  with pytest.raises(config_lib.ConfigError, match='model.latent_stats'):
    sampling.to_latents(train_toy.changed(config, 'model.latent_norm', 'channel'), ae, jnp.asarray(video),
                        jnp.asarray(mel))
  with pytest.raises(config_lib.ConfigError, match='needs an autoencoder'):
    config_lib.validate(train_toy.changed(train_toy.config(DATA_DIR), 'model.latent_norm', 'channel'))


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow  # Compiles the stage-1 and the DiT train steps: ~1 minute on 2 cores.
def test_train_trains_stage1_once_then_reads_cached_latents(tmp_path, capsys):
  config = latent_config(str(tmp_path / 'stage1'), **{'train.steps': 1, 'train.eval_every': 1,
                                                     'train.eval_clips': 8, 'model.latent_norm': 'channel'})
  run_config, task = tasks.build('diffusion', config, progress=False)
  assert len(run_config.model.latent_stats.video_std) == config.model.ae.video_channels  # Measured on the cache.
  ae_dir = autoencoders.derived_dir(config)
  assert run_config.model.autoencoder_workdir == ae_dir and checkpoint.latest_step(ae_dir) == 2
  assert autoencoders.read_marker(ae_dir)['fingerprint'] == autoencoders.fingerprint(config)
  assert 'Training autoencoder at' in capsys.readouterr().err
  result = loop.train(run_config, str(tmp_path / 'run'), task, progress=False)
  assert result['step'] == 1 and np.isfinite(result['loss'])
  # The run's config.json names the autoencoder: sampling loads the same one.
  saved = checkpoint.load_config(str(tmp_path / 'run'))
  assert saved.model.autoencoder_workdir == ae_dir and sampling.load_autoencoder(saved) is not None
  assert saved.model.latent_stats.to_dict() == run_config.model.latent_stats.to_dict()
  # A second DiT run with other DiT fields trains nothing.
  tasks.build('diffusion', train_toy.changed(config, 'model.width', 64), progress=False)
  assert 'Using trained autoencoder at' in capsys.readouterr().err
