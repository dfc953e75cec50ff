"""Training loss: per-modality noise levels, clean-modality masking, label dropout, and that each objective trains."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy.stats import norm

from avdiff import diffusion
from avdiff.diffusion import diagnostics, gaussian, loss as loss_lib, objectives, schedules

SHAPES = {'video': (2, 2, 1), 'audio': (3, 1)}
DATA = gaussian.random_gaussian(0, SHAPES)
NUM_CLASSES = 4


def cfg(objective='flow', schedule='flow', **kw):
  c = ml_collections.ConfigDict(dict(
      objective=objective, schedule=schedule, flow_shift=1.0, num_train_timesteps=1000, loss_weight_video=1.0,
      loss_weight_audio=1.0, independent_t_prob=0.5, clean_video_prob=0.1, clean_audio_prob=0.1, label_dropout=0.1,
      time_sampling='uniform', logit_normal_mean=0.0, logit_normal_std=1.0, sync_loss_weight=0.0,
      sync_loss_temperature=0.1, motion_loss_weight=0.0))
  c.update(kw)
  return c


def recording_pred_fn(log):
  def fn(x, t, label):
    log.update(x=x, t=t, label=label)
    return {k: jnp.zeros_like(v) for k, v in x.items()}
  return fn


def test_shared_and_independent_times_and_clean_modalities():
  x0 = DATA.sample(jax.random.key(0), 4096)
  label = jnp.zeros((4096,), jnp.int32)
  log = {}
  diffusion.training_loss(recording_pred_fn(log), x0, label, jax.random.key(1),
                          cfg(independent_t_prob=0.0, clean_video_prob=0.0, clean_audio_prob=0.0), NUM_CLASSES)
  np.testing.assert_array_equal(np.asarray(log['t']['video']), np.asarray(log['t']['audio']))
  _, metrics = diffusion.training_loss(recording_pred_fn(log), x0, label, jax.random.key(1),
                                       cfg(independent_t_prob=1.0, clean_video_prob=0.3, clean_audio_prob=0.2),
                                       NUM_CLASSES)
  tv, ta = np.asarray(log['t']['video']), np.asarray(log['t']['audio'])
  clean_v, clean_a = tv == 0, ta == 0
  assert abs(clean_v.mean() - 0.3) < 0.03 and abs(clean_a.mean() - 0.2) < 0.03
  assert not np.any(clean_v & clean_a)  # Never both clean.
  # A clean modality is fed exactly as the data.
  np.testing.assert_array_equal(np.asarray(log['x']['video'])[clean_v], np.asarray(x0['video'])[clean_v])
  assert abs(np.corrcoef(tv[~clean_v & ~clean_a], ta[~clean_v & ~clean_a])[0, 1]) < 0.05  # Independent draws.
  assert abs(float(metrics['clean_video_frac']) - clean_v.mean()) < 1e-6


def test_clean_modality_loss_is_masked_and_labels_dropped():
  x0 = DATA.sample(jax.random.key(0), 64)
  log = {}
  loss, metrics = diffusion.training_loss(recording_pred_fn(log), x0, jnp.ones((64,), jnp.int32), jax.random.key(2),
                                          cfg(clean_video_prob=1.0, clean_audio_prob=0.0, label_dropout=1.0),
                                          NUM_CLASSES)
  assert float(metrics['loss_video']) == 0.0 and float(metrics['loss_audio']) > 0.1
  assert np.all(np.asarray(log['label']) == NUM_CLASSES)
  # Loss weights: zeroing audio's weight leaves nothing (video is masked).
  loss0, _ = diffusion.training_loss(recording_pred_fn({}), x0, jnp.ones((64,), jnp.int32), jax.random.key(2),
                                     cfg(clean_video_prob=1.0, clean_audio_prob=0.0, loss_weight_audio=0.0),
                                     NUM_CLASSES)
  assert float(loss) > 0.1 and float(loss0) == 0.0


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_sync_loss_pairs_the_same_moment():
  """InfoNCE over all clips and steps: near 0 when each video step's embedding equals its audio partner's, about
  log(B T) for unrelated embeddings, large when the audio is moved one step; clips with both modalities at pure
  noise carry no weight, and the weighting is the per-clip mean of the two directions' cross-entropies."""
  rng = np.random.default_rng(0)
  b, steps, dim = 4, 5, 32
  v = _unit(rng.normal(size=(b, steps, dim))).astype(np.float32)
  clean = {'video': jnp.zeros(b), 'audio': jnp.zeros(b)}
  loss = lambda a, t=clean, temp=0.05: float(loss_lib.sync_loss({'video': jnp.asarray(v), 'audio': jnp.asarray(a)},
                                                                 t, temp))
  assert loss(v) < 0.01
  unrelated = loss(_unit(rng.normal(size=v.shape)).astype(np.float32), temp=1.0)
  assert abs(unrelated - np.log(b * steps)) < 0.2
  assert loss(np.roll(v, 1, axis=1)) > 10.0
  assert loss(v, {'video': jnp.ones(b), 'audio': jnp.ones(b)}) == 0.0
  # Against a direct computation: clip 0 half noised in both modalities, clip 1 at pure noise.
  a = _unit(rng.normal(size=v.shape)).astype(np.float32)
  t = {'video': jnp.asarray([0.5, 1.0, 0.2, 0.0]), 'audio': jnp.asarray([1.0 / 1.5 * 0.75, 1.0, 0.0, 0.9])}
  logits = v.reshape(-1, dim) @ a.reshape(-1, dim).T / 0.1
  log_softmax = lambda z: z - np.log(np.exp(z).sum(1, keepdims=True))
  ce = -0.5 * (np.diag(log_softmax(logits)) + np.diag(log_softmax(logits.T)))
  w = np.repeat(1.0 - np.asarray(t['video']) * np.asarray(t['audio']), steps)
  np.testing.assert_allclose(loss(a, t, 0.1), np.sum(w * ce) / np.sum(w), rtol=1e-4)


def test_motion_weights_favour_what_moves():
  """A clip that is static but for one pixel: weights average 1 per clip, the moving pixel gets (1 + s d) / (1 + s)
  with d its share of all motion, still pixels 1 / (1 + s); strength 0 is uniform; the video loss scales by them."""
  video = np.zeros((2, 4, 3, 3, 2), np.float32)
  video[:, :, 1, 2, :] = np.asarray([1.0, -1.0, 1.0, -1.0])[None, :, None]  # One blinking pixel.
  w = np.asarray(loss_lib.motion_weights(jnp.asarray(video), 3.0))
  assert w.shape == (2, 4, 3, 3, 1)
  np.testing.assert_allclose(w.mean(axis=(1, 2, 3, 4)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(w[:, :, 1, 2], (1.0 + 3.0 * 9.0) / 4.0, rtol=1e-6)  # d = 9: all motion in 1 of 9.
  np.testing.assert_allclose(w[:, :, 0, 0], 0.25, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(loss_lib.motion_weights(jnp.asarray(video), 0.0)), 1.0)
  x0 = {'video': jnp.asarray(video), 'audio': jnp.zeros((2, 3, 1))}
  label = jnp.zeros((2,), jnp.int32)
  ones = lambda x, t, lab: {k: jnp.ones_like(v) for k, v in x.items()}  # Error concentrated where the target is 0.
  c = dict(objective='x', clean_video_prob=0.0, clean_audio_prob=0.0, label_dropout=0.0)
  _, plain = diffusion.training_loss(ones, x0, label, jax.random.key(0), cfg(**c), NUM_CLASSES)
  _, weighted = diffusion.training_loss(ones, x0, label, jax.random.key(0), cfg(motion_loss_weight=3.0, **c),
                                        NUM_CLASSES)
  assert float(weighted['loss_video']) != pytest.approx(float(plain['loss_video']), rel=1e-3)
  np.testing.assert_allclose(float(weighted['loss_audio']), float(plain['loss_audio']), rtol=1e-6)


def test_training_loss_adds_the_weighted_sync_loss():
  """With sync_loss_weight > 0 the network also returns sync embeddings: the loss gains weight * loss_sync."""
  x0 = DATA.sample(jax.random.key(0), 8)
  emb = {m: jnp.asarray(_unit(np.random.default_rng(i).normal(size=(8, 3, 4))), jnp.float32)
         for i, m in enumerate(('video', 'audio'))}
  with_emb = lambda x, t, label: ({k: jnp.zeros_like(v) for k, v in x.items()}, emb)
  label = jnp.ones((8,), jnp.int32)
  plain, _ = diffusion.training_loss(recording_pred_fn({}), x0, label, jax.random.key(2), cfg(), NUM_CLASSES)
  both, metrics = diffusion.training_loss(with_emb, x0, label, jax.random.key(2), cfg(sync_loss_weight=0.5),
                                          NUM_CLASSES)
  assert float(metrics['loss_sync']) > 1.0
  np.testing.assert_allclose(float(both), float(plain) + 0.5 * float(metrics['loss_sync']), rtol=1e-5)


@pytest.mark.parametrize('objective,schedule', [('eps', 'cosine'), ('v', 'linear'), ('flow', 'flow'),
                                                ('x', 'flow'), ('x', 'cosine')])
def test_objective_conversions_invert_the_target(objective, schedule):
  s = schedules.Schedule(schedule)
  x0, eps = jax.random.normal(jax.random.key(0), (2, 8, 3))
  t = jnp.linspace(0.02, 0.98, 8)[:, None]
  alpha, sigma = s.alpha_sigma(t)
  pred = objectives.target(objective, x0, eps, alpha, sigma)
  x0_hat, eps_hat = objectives.to_x0_eps(objective, pred, alpha * x0 + sigma * eps, alpha, sigma)
  np.testing.assert_allclose(np.asarray(x0_hat), np.asarray(x0), atol=2e-4)
  np.testing.assert_allclose(np.asarray(eps_hat), np.asarray(eps), atol=2e-4)


def test_logit_normal_time_sampling_has_its_quantiles():
  c = cfg(time_sampling='logit_normal', logit_normal_mean=0.8, logit_normal_std=0.8, independent_t_prob=1.0,
          clean_video_prob=0.0, clean_audio_prob=0.0)
  t, _ = loss_lib.sample_times(jax.random.key(0), 20000, c, schedules.Schedule('flow'))
  logit = np.log(np.asarray(t['video'])) - np.log1p(-np.asarray(t['video']))
  assert abs(logit.mean() - 0.8) < 0.03 and abs(logit.std() - 0.8) < 0.03, (logit.mean(), logit.std())
  uniform, _ = loss_lib.sample_times(jax.random.key(0), 20000, cfg(clean_video_prob=0.0),
                                     schedules.Schedule('flow'))
  assert abs(float(np.median(np.asarray(uniform['video']))) - 0.5) < 0.02


def test_x_objective_loss_is_the_implied_velocity_error():
  """x objective: weight * |x0_hat - x0|^2 equals |u_hat - u|^2 of the flow velocity the estimate implies (for
  sigma above the clamp), and the weight is capped by the clamp near the clean end."""
  s = schedules.Schedule('flow')
  x0, eps, err = jax.random.normal(jax.random.key(0), (3, 8, 5))
  t = jnp.linspace(0.06, 0.98, 8)[:, None]
  alpha, sigma = s.alpha_sigma(t)
  x_t = alpha * x0 + sigma * eps
  x0_hat, eps_hat = objectives.to_x0_eps('x', x0 + err, x_t, alpha, sigma)
  u_err = np.sum(np.square(np.asarray((eps_hat - x0_hat) - (eps - x0))), axis=1)
  weighted = np.asarray(objectives.loss_weight('x', alpha, sigma))[:, 0] * np.sum(np.square(np.asarray(err)), 1)
  np.testing.assert_allclose(weighted, u_err, rtol=1e-4)
  w = objectives.loss_weight('x', *s.alpha_sigma(jnp.asarray([0.0, 0.01, 0.05])))
  np.testing.assert_allclose(np.asarray(w), [400.0, 400.0, 400.0], rtol=1e-5)
  assert float(objectives.loss_weight('flow', 0.5, 0.5)) == 1.0


def test_schedules_endpoints_and_shift():
  for name in ('cosine', 'linear', 'flow'):
    s = schedules.Schedule(name)
    a0, s0 = s.alpha_sigma(0.0)
    assert float(a0) == 1.0 and float(s0) == 0.0
    lsnr = np.asarray(s.log_snr(jnp.linspace(0.01, 0.99, 50)))
    assert np.all(np.diff(lsnr) < 0), name
  # Terminal log-SNR: cosine clipped at -20 (finite eps -> x0); linear as DDPM's alpha_bar_1000 = 4.0e-5.
  assert float(schedules.Schedule('cosine').log_snr(1.0)) == pytest.approx(-20.0, abs=0.01)
  # Linear: the continuous form follows the discrete DDPM betas 1e-4 .. 0.02 at every step k / 1000.
  ab = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
  lsnr = np.asarray(schedules.Schedule('linear').log_snr(jnp.arange(1, 1001) / 1000.0))
  np.testing.assert_allclose(lsnr, np.log(ab / (1 - ab)), atol=0.12)
  shifted = schedules.Schedule('flow', shift=3.0)
  assert float(shifted.network_time(0.5)) == pytest.approx(0.75)
  assert float(schedules.Schedule('cosine').train_time(0.0)) == pytest.approx(1e-3)  # Never t = 0 in training.
  assert schedules.resolution_shift(1024, base_tokens=256) == pytest.approx(2.0)


def _mlp_pred_fn(params, x, t, label):
  """A tiny MLP on the flattened (video, audio) vector, time features and a label embedding."""
  flat = DATA.flatten(x)
  feats = jnp.concatenate([flat, jnp.stack([t['video'], t['audio']], 1), params['label'][label]], axis=1)
  h = jax.nn.gelu(feats @ params['w1'] + params['b1'])
  h = jax.nn.gelu(h @ params['w2'] + params['b2'])
  return DATA.unflatten(h @ params['w3'])


@pytest.mark.parametrize('objective,schedule', [('eps', 'cosine'), ('v', 'cosine'), ('flow', 'flow'),
                                                ('x', 'flow')])
def test_each_objective_trains_a_tiny_model(objective, schedule):
  c = cfg(objective, schedule)
  ks = jax.random.split(jax.random.key(0), 4)
  width = 64
  params = {'w1': jax.random.normal(ks[0], (7 + 2 + 8, width)) * 0.3, 'b1': jnp.zeros(width),
            'w2': jax.random.normal(ks[1], (width, width)) / 8, 'b2': jnp.zeros(width),
            'w3': jnp.zeros((width, 7)), 'label': jax.random.normal(ks[2], (NUM_CLASSES + 1, 8)) * 0.1}
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  def loss_fn(p, rng):
    x0 = DATA.sample(jax.random.fold_in(rng, 1), 128)
    label = jax.random.randint(jax.random.fold_in(rng, 2), (128,), 0, NUM_CLASSES)
    return diffusion.training_loss(lambda x, t, lab: _mlp_pred_fn(p, x, t, lab), x0, label, rng, c, NUM_CLASSES)

  @jax.jit
  def train(params, opt_state):
    def step(carry, i):
      p, s = carry
      (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, jax.random.key(i))
      updates, s = opt.update(g, s, p)
      return (optax.apply_updates(p, updates), s), loss
    return jax.lax.scan(step, (params, opt_state), jnp.arange(200))

  eval_rngs = [jax.random.key(10_000 + i) for i in range(8)]
  one_loss = jax.jit(lambda p, r: loss_fn(p, r)[0])
  eval_loss = lambda p: np.mean([float(one_loss(p, r)) for r in eval_rngs])
  before = float(eval_loss(params))
  (params, _), losses = train(params, opt_state)
  after = float(eval_loss(params))
  assert np.all(np.isfinite(np.asarray(losses)))
  assert after < 0.8 * before, (before, after)
  # The optimum is the Gaussian posterior: the trained model gets within reach of the exact denoiser's loss.
  s = schedules.from_config(c)
  exact = DATA.pred_fn(s, objective)
  exact_loss = jax.jit(lambda r: diffusion.training_loss(
      exact, DATA.sample(jax.random.fold_in(r, 1), 256), jax.random.randint(jax.random.fold_in(r, 2), (256,), 0, 4), r,
      c, NUM_CLASSES)[0])
  optimal = np.mean([float(exact_loss(r)) for r in eval_rngs])
  assert optimal <= after + 0.02 and after < optimal + 0.5 * (before - optimal), (before, after, optimal)


def test_training_share_above_matches_the_closed_form():
  # logit-normal(0.8, 0.8) then the SD3 shift s: t > x  <=>  u > x / (s - (s - 1) x).
  for shift in (1.0, 3.0):
    c = cfg(time_sampling='logit_normal', logit_normal_mean=0.8, logit_normal_std=0.8, flow_shift=shift)
    share = diagnostics.training_share_above(c, (0.5, 0.9, 0.95))
    for s, x in zip(share, (0.5, 0.9, 0.95)):
      u = x / (shift - (shift - 1) * x)
      expected = 1 - norm.cdf((np.log(u / (1 - u)) - 0.8) / 0.8)
      assert abs(s - expected) < 0.005, (shift, x, s, expected)


def test_evidence_in_noise_reads_a_mean_until_the_noise_drowns_it():
  # Two classes of [T=4, 16, 16, 3] clips whose first channel differs by 0.2 (a colour) under per-clip texture and
  # brightness: the clean input tells the class, pure noise does not (chance), and the accuracy falls with t.
  rng = np.random.default_rng(0)
  classes = np.arange(64) % 2
  x0 = (rng.normal(0, 0.3, (64, 4, 16, 16, 3)) + rng.normal(0, 0.5, (64, 1, 1, 1, 1))).astype(np.float32)
  x0[..., 0] += 0.2 * classes[:, None, None, None]
  acc = diagnostics.evidence_in_noise(x0, classes, (0.0, 0.5, 0.95, 1.0), cfg())
  assert acc[0] == 1.0 and acc[1] > 0.95, acc
  assert acc[2] < acc[1] and abs(acc[3] - 0.5) < 0.15, acc


def test_given_modality_errors_tell_a_network_that_reads_its_condition_from_one_that_ignores_it():
  # Audio equals the clip's video: a network that reads the clean video (the x objective's output is its x0 guess)
  # recovers the audio exactly beside the clip's own video and not beside another clip's; one that ignores the video
  # errs the same beside either. The given modality is presented clean (t = 0) and the generated one at t.
  video = jax.random.normal(jax.random.key(0), (6, 8))
  x0 = {'video': video, 'audio': video}
  label = jnp.zeros((6,), jnp.int32)
  seen = {}

  def reads(x, t, label):
    seen.update(t=t)
    return {'audio': x['video'], 'video': x['video']}

  def ignores(x, t, label):
    return {'audio': jnp.zeros_like(x['audio']), 'video': x['video']}

  c = cfg(objective='x')
  e = diagnostics.given_modality_errors(reads, x0, label, jax.random.key(1), c, 'audio', (0.5, 0.9))
  np.testing.assert_allclose(e['own'], 0.0, atol=1e-12)
  assert np.all(e['other'] > 1.0)  # Two unit-variance clips apart: mean squared difference ~2.
  np.testing.assert_array_equal(seen['t']['video'], 0.0)
  np.testing.assert_allclose(seen['t']['audio'], 0.9)
  e = diagnostics.given_modality_errors(ignores, x0, label, jax.random.key(1), c, 'audio', (0.5, 0.9))
  np.testing.assert_allclose(e['own'], e['other'])
  with pytest.raises(ValueError, match='generated'):
    diagnostics.given_modality_errors(ignores, x0, label, jax.random.key(1), c, 'text')
