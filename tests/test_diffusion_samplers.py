"""Known-answer tests of the samplers, guidance and conditional modes with the exact Gaussian denoiser.

Tolerances: samples are whitened with the data's Cholesky factor, so each whitened mean coordinate has standard
error 1/sqrt(N) and each whitened covariance entry at most sqrt(2/N) (N samples). We allow 5 standard errors: a
correct sampler fails one of the D (or D^2) checks with probability below 1e-4 (and the seeds are fixed, so the test
is deterministic). Step counts are chosen so that the discretization bias is small against that (first-order samplers
converge as 1/n, second-order ones as 1/n^2; see test_higher_order_needs_fewer_evaluations).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from avdiff import diffusion
from avdiff.diffusion import gaussian, guidance, samplers, schedules

SHAPES = {'video': (2, 2, 1), 'audio': (3, 1)}  # D = 7 coordinates, 4 video + 3 audio.
DATA = gaussian.random_gaussian(0, SHAPES, correlation=0.8)
N = 2048
NULL = 8


def cfg(objective='flow', schedule='flow', **kw):
  c = ml_collections.ConfigDict(dict(
      objective=objective, schedule=schedule, flow_shift=1.0, num_train_timesteps=1000, sampler='euler',
      num_sampling_steps=50, ddim_eta=0.0, guidance_video=1.0, guidance_audio=1.0))
  c.update(kw)
  return c


def whitened_errors(flat, mean, cov):
  """(max |whitened mean error| / SE, max |whitened cov - I| / SE) for samples flat [N, D]."""
  inv = np.linalg.inv(np.linalg.cholesky(cov))
  n = flat.shape[0]
  m = inv @ (flat.mean(0) - mean)
  w = inv @ np.cov(flat.T) @ inv.T
  return np.abs(m).max() * np.sqrt(n), np.abs(w - np.eye(len(m))).max() / np.sqrt(2.0 / n)


def run_sample(c, rng=0, **kw):
  s = schedules.from_config(c)
  fn = jax.jit(lambda r: diffusion.sample(DATA.pred_fn(s, c.objective), DATA.batch_shapes(N), None, r, c,
                                          null_label=NULL, **kw))
  return fn(jax.random.key(rng))


@pytest.mark.parametrize('sampler,steps,objective,schedule', [
    ('ddpm', 250, 'flow', 'flow'), pytest.param('ddim', 200, 'flow', 'flow', marks=pytest.mark.slow),
    pytest.param('euler', 200, 'flow', 'flow', marks=pytest.mark.slow), ('heun', 30, 'flow', 'flow'),
    pytest.param('dpmpp_2m', 30, 'flow', 'flow', marks=pytest.mark.slow), ('dpmpp_2m', 30, 'eps', 'cosine'),
    pytest.param('ddpm', 250, 'v', 'linear', marks=pytest.mark.slow),
    pytest.param('heun', 30, 'eps', 'cosine', marks=pytest.mark.slow),
    pytest.param('euler', 200, 'v', 'cosine', marks=pytest.mark.slow), ('heun', 30, 'x', 'flow'),
    ('dpmpp_2m', 30, 'x', 'cosine'), pytest.param('ddpm', 250, 'x', 'flow', marks=pytest.mark.slow)])
def test_sampler_reproduces_gaussian_mean_and_covariance(sampler, steps, objective, schedule):
  c = cfg(objective, schedule, sampler=sampler, num_sampling_steps=steps)
  flat = np.asarray(DATA.flatten(run_sample(c)), np.float64)
  mean_err, cov_err = whitened_errors(flat, DATA.mean, DATA.cov)
  assert mean_err < 5.0 and cov_err < 5.0, (mean_err, cov_err)
  std_rel = np.abs(flat.std(0) / np.sqrt(np.diag(DATA.cov)) - 1.0).max()
  assert std_rel < 5.0 / np.sqrt(2 * N), std_rel  # The same bound stated per coordinate in data units.


def test_too_few_steps_is_detected():
  """The statistics check can fail: 3 Euler steps leave the sample covariance far off."""
  flat = np.asarray(DATA.flatten(run_sample(cfg(sampler='euler', num_sampling_steps=3))), np.float64)
  assert whitened_errors(flat, DATA.mean, DATA.cov)[1] > 10.0


@functools.lru_cache(maxsize=None)
def _runner(sampler, objective, schedule, eta):
  """One compiled sampler for every step count (num_steps is a traced argument)."""
  s = schedules.from_config(cfg(objective, schedule))

  def run(x, r, steps):
    den = samplers.make_denoiser(DATA.pred_fn(s, objective), s, objective, jnp.zeros((x['video'].shape[0],)))
    return samplers.run(sampler, den, x, r, s, steps, eta)

  return jax.jit(run)


def _run_direct(sampler, c, x1, rng, steps, eta=0.0):
  return _runner(sampler, c.objective, c.schedule, eta)(x1, rng, jnp.int32(steps))


def test_deterministic_samplers_depend_only_on_initial_noise():
  c = cfg()
  x1 = DATA.unflatten(jax.random.normal(jax.random.key(3), (64, 7)))
  for sampler in ('ddim', 'euler', 'heun', 'dpmpp_2m'):
    a = _run_direct(sampler, c, x1, jax.random.key(0), 8)
    b = _run_direct(sampler, c, x1, jax.random.key(1), 8)
    for k in a:
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  a = _run_direct('ddpm', c, x1, jax.random.key(0), 8)
  b = _run_direct('ddpm', c, x1, jax.random.key(1), 8)
  assert np.abs(np.asarray(a['video']) - np.asarray(b['video'])).max() > 1e-2


@pytest.mark.parametrize('objective,schedule', [('flow', 'flow'),
                                               pytest.param('eps', 'cosine', marks=pytest.mark.slow)])
def test_ddpm_equals_ddim_eta_one(objective, schedule):
  c = cfg(objective, schedule)
  x1 = DATA.unflatten(jax.random.normal(jax.random.key(3), (64, 7)))
  a = _run_direct('ddpm', c, x1, jax.random.key(5), 10)
  b = _run_direct('ddim', c, x1, jax.random.key(5), 10, eta=1.0)
  for k in a:
    np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), atol=2e-4)


def ode_error(sampler, c, steps, x1):
  """RMS whitened distance between the sampler's output and the exact probability-flow ODE solution."""
  s = schedules.from_config(c)
  out = DATA.flatten(_run_direct(sampler, c, x1, jax.random.key(0), steps))
  exact = DATA.flatten(DATA.ode_solution(x1, s))
  inv = np.linalg.inv(np.linalg.cholesky(DATA.cov))
  return float(np.sqrt(np.mean(np.square((np.asarray(out) - np.asarray(exact)) @ inv.T))))


@pytest.mark.parametrize('objective,schedule', [('flow', 'flow'),
                                               pytest.param('eps', 'cosine', marks=pytest.mark.slow)])
def test_higher_order_needs_fewer_evaluations(objective, schedule):
  c = cfg(objective, schedule)
  x1 = DATA.unflatten(jax.random.normal(jax.random.key(7), (128, 7)))
  steps = (4, 8, 16, 32, 64)
  err = {sm: [ode_error(sm, c, n, x1) for n in steps] for sm in ('ddim', 'euler', 'heun', 'dpmpp_2m')}
  for sm, e in err.items():
    assert all(b < a for a, b in zip(e, e[1:])), (sm, e)  # Error falls with the number of steps.
  # Order of convergence over 8 -> 32 steps: ~1 for first order, ~2 for second order.
  order = {sm: np.log2(e[1] / e[3]) / 2 for sm, e in err.items()}
  assert order['ddim'] < 1.4 and order['euler'] < 1.4, order
  assert order['heun'] > 1.6 and order['dpmpp_2m'] > 1.6, order
  # Evaluations needed to reach the error first-order samplers reach with 64 evaluations.
  target = min(err['ddim'][-1], err['euler'][-1])
  nfe = lambda sm: min(samplers.num_evals(sm, n) for n, e in zip(steps, err[sm]) if e <= target)
  assert nfe('dpmpp_2m') <= 32 and nfe('heun') < 64, (nfe('dpmpp_2m'), nfe('heun'))


def test_ode_solution_matches_data_distribution():
  """The reference the ODE error is measured against is itself right: it maps N(0, I) to the data Gaussian."""
  x1 = DATA.unflatten(jax.random.normal(jax.random.key(11), (N, 7)))
  flat = np.asarray(DATA.flatten(DATA.ode_solution(x1, schedules.Schedule('flow'))), np.float64)
  assert max(whitened_errors(flat, DATA.mean, DATA.cov)) < 5.0


# ----------------------------------------------------------------------------- conditional modes

def _given(rng=2, batch=N):
  """One data clip's audio / video, repeated over the batch (so the conditional law is the same for all rows)."""
  one = DATA.sample(jax.random.key(rng), 1)
  return {k: jnp.repeat(v, batch, axis=0) for k, v in one.items()}, one


@pytest.mark.parametrize('objective', ['flow', 'x'])
def test_audio_to_video_has_the_conditional_distribution_and_keeps_audio_exact(objective):
  c = cfg(objective, sampler='heun', num_sampling_steps=30)
  cond, one = _given()
  out = run_sample(c, mode='audio_to_video', cond={'audio': cond['audio']})
  np.testing.assert_array_equal(np.asarray(out['audio']), np.asarray(cond['audio']))
  mean, cov = DATA.conditional('audio', np.asarray(one['audio']))
  video = np.asarray(out['video'], np.float64).reshape(N, -1)
  mean_err, cov_err = whitened_errors(video, mean, cov)
  assert mean_err < 5.0 and cov_err < 5.0, (mean_err, cov_err)
  # The conditional law differs from the marginal one measurably (otherwise this test could not fail).
  marg_err = whitened_errors(video, DATA.mean[:4], DATA.cov[:4, :4])
  assert max(marg_err) > 5.0, marg_err


def test_video_to_audio_has_the_conditional_distribution_and_keeps_video_exact():
  c = cfg('eps', 'cosine', sampler='dpmpp_2m', num_sampling_steps=30)
  cond, one = _given(rng=4)
  out = run_sample(c, mode='video_to_audio', cond={'video': cond['video']})
  np.testing.assert_array_equal(np.asarray(out['video']), np.asarray(cond['video']))
  mean, cov = DATA.conditional('video', np.asarray(one['video']))
  audio = np.asarray(out['audio'], np.float64).reshape(N, -1)
  assert max(whitened_errors(audio, mean, cov)) < 5.0


@pytest.mark.parametrize('sampler', ['ddpm', 'ddim', 'dpmpp_2m', 'euler', 'heun'])
def test_continuation_keeps_known_frames_exact(sampler):
  shapes = {'video': (4, 4, 2, 2, 1), 'audio': (4, 8, 2, 1)}  # 2 audio latent frames per video latent frame.
  cond = {k: jax.random.normal(jax.random.key(i), s) for i, (k, s) in enumerate(shapes.items())}
  pred_fn = lambda x, t, label: {k: 0.5 * v + t[k].reshape((-1,) + (1,) * (v.ndim - 1)) for k, v in x.items()}
  c = cfg(sampler=sampler, num_sampling_steps=6, ddim_eta=0.5)
  out = jax.jit(lambda r: diffusion.sample(pred_fn, shapes, jnp.zeros((4,), jnp.int32), r, c, mode='continuation',
                                           cond=cond, cond_frames=1))(jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(out['video'][:, :1]), np.asarray(cond['video'][:, :1]))
  np.testing.assert_array_equal(np.asarray(out['audio'][:, :2]), np.asarray(cond['audio'][:, :2]))
  assert not np.allclose(np.asarray(out['video'][:, 1:]), np.asarray(cond['video'][:, 1:]))
  assert np.all(np.isfinite(np.asarray(out['audio'])))
  # Only the known frames may be given.
  short = {k: v[:, :(1 if k == 'video' else 2)] for k, v in cond.items()}
  out2 = diffusion.sample(pred_fn, shapes, jnp.zeros((4,), jnp.int32), jax.random.key(0), c, mode='continuation',
                          cond=short, cond_frames=1)
  np.testing.assert_array_equal(np.asarray(out2['video'][:, :1]), np.asarray(cond['video'][:, :1]))


def test_continuation_pulls_generated_frames_towards_the_conditional_law():
  """Replacement conditioning on the first video frame of correlated data moves the rest towards the conditional
  mean (it is approximate, so only the direction is checked)."""
  data = gaussian.random_gaussian(1, {'video': (2, 1), 'audio': (2, 1)}, correlation=0.9)
  s = schedules.Schedule('flow')
  one = data.sample(jax.random.key(9), 1)
  cond = {k: jnp.repeat(v, 1024, axis=0) for k, v in one.items()}
  out = diffusion.sample(data.pred_fn(s, 'flow'), data.batch_shapes(1024), None, jax.random.key(1),
                         cfg(sampler='ddpm', num_sampling_steps=100), mode='continuation', cond=cond,
                         cond_frames=1, null_label=NULL)
  flat = np.asarray(data.flatten(out), np.float64)
  known = np.array([0, 2])  # video frame 0, audio frame 0.
  g, o = known, np.array([1, 3])
  gain = data.cov[np.ix_(o, g)] @ np.linalg.inv(data.cov[np.ix_(g, g)])
  cond_mean = data.mean[o] + gain @ (np.asarray(data.flatten(one))[0, g] - data.mean[g])
  got = flat[:, o].mean(0)
  assert np.linalg.norm(got - cond_mean) < np.linalg.norm(data.mean[o] - cond_mean), (got, cond_mean, data.mean[o])


@pytest.mark.parametrize('order', ['audio_first', 'video_first'])
def test_ordered_joint_sampling_reproduces_the_joint_law(order):
  """One modality sampled with the other held at pure noise (t = 1 tells nothing: its marginal), then the other
  given it clean (its conditional law): with the exact denoiser the joint mean and covariance come out."""
  c = cfg(sampler='heun', num_sampling_steps=30, joint_order=order)
  flat = np.asarray(DATA.flatten(run_sample(c)), np.float64)
  mean_err, cov_err = whitened_errors(flat, DATA.mean, DATA.cov)
  assert mean_err < 5.0 and cov_err < 5.0, (mean_err, cov_err)


def test_ordered_joint_sampling_feeds_the_waiting_modality_as_noise():
  """The first stage sees the other modality at t = 1 and only the leading one moves; then the other follows with
  the first given clean at t = 0."""
  seen = []

  def pred_fn(x, t, label):
    seen.append({k: float(v[0]) for k, v in t.items()})
    return {k: jnp.zeros_like(v) for k, v in x.items()}

  c = cfg(objective='x', sampler='euler', num_sampling_steps=4, joint_order='audio_first')
  with jax.disable_jit():
    diffusion.sample(pred_fn, {'video': (2, 3), 'audio': (2, 5)}, jnp.zeros(2, jnp.int32), jax.random.key(0), c)
  assert [s['video'] for s in seen[:4]] == [1.0] * 4 and seen[0]['audio'] == 1.0 and seen[3]['audio'] < 1.0
  assert [s['audio'] for s in seen[4:]] == [0.0] * 4 and seen[4]['video'] == 1.0 and len(seen) == 8


def test_modes_validate_their_inputs():
  shapes = {'video': (2, 4, 1), 'audio': (2, 8, 1)}
  pred_fn = lambda x, t, label: x
  with pytest.raises(ValueError, match='needs cond'):
    diffusion.sample(pred_fn, shapes, jnp.zeros(2, jnp.int32), jax.random.key(0), cfg(), mode='audio_to_video')
  with pytest.raises(ValueError, match='not one of'):
    diffusion.sample(pred_fn, shapes, jnp.zeros(2, jnp.int32), jax.random.key(0), cfg(), mode='text_to_video')
  with pytest.raises(ValueError, match='null_label'):
    diffusion.sample(pred_fn, shapes, jnp.zeros(2, jnp.int32), jax.random.key(0), cfg(guidance_video=3.0))
  masks = diffusion.frame_masks(shapes, 3)
  assert masks['video'].tolist() == [True] * 3 + [False] and masks['audio'].tolist() == [True] * 6 + [False] * 2


# ----------------------------------------------------------------------------- guidance

def _label_pred_fn(x, t, label):
  """A toy network whose output depends on the label (null label 8 -> 0)."""
  shift = jnp.where(label == NULL, 0.0, 1.0 + label.astype(jnp.float32))
  return {k: 0.3 * v + shift.reshape((-1,) + (1,) * (v.ndim - 1)) * (1.0 + t[k]).reshape(
      (-1,) + (1,) * (v.ndim - 1)) for k, v in x.items()}


def test_guidance_scale_one_equals_conditional_model():
  x = {'video': jax.random.normal(jax.random.key(0), (3, 2, 2)), 'audio': jax.random.normal(jax.random.key(1), (3, 4))}
  t = {'video': jnp.array([0.1, 0.5, 0.9]), 'audio': jnp.array([0.0, 0.3, 1.0])}
  label = jnp.array([0, 3, 8])
  assert guidance.guided_pred_fn(_label_pred_fn, NULL, 1.0, 1.0) is _label_pred_fn
  batched = guidance.guided_pred_fn(_label_pred_fn, NULL, 1.0, 1.0, force_batched=True)(x, t, label)
  want = _label_pred_fn(x, t, label)
  for k in x:
    np.testing.assert_allclose(np.asarray(batched[k]), np.asarray(want[k]), atol=1e-6)
  # Separate scales: video guided at 3, audio at 0 (= unconditional).
  g = guidance.guided_pred_fn(_label_pred_fn, NULL, 3.0, 0.0)(x, t, label)
  uncond = _label_pred_fn(x, t, jnp.full_like(label, NULL))
  np.testing.assert_allclose(np.asarray(g['audio']), np.asarray(uncond['audio']), atol=1e-6)
  np.testing.assert_allclose(np.asarray(g['video']),
                             np.asarray(uncond['video'] + 3.0 * (want['video'] - uncond['video'])), atol=1e-5)


def test_guided_sampling_batches_cond_and_uncond_in_one_call():
  calls = []

  def counting(x, t, label):
    calls.append(label.shape[0])
    return _label_pred_fn(x, t, label)

  shapes = {'video': (2, 4, 1), 'audio': (2, 8, 1)}
  c = cfg(sampler='heun', num_sampling_steps=3, guidance_video=2.0, guidance_audio=1.5)
  out = diffusion.sample(counting, shapes, jnp.array([1, 2], jnp.int32), jax.random.key(0), c, null_label=NULL)
  assert set(calls) == {4} and all(np.all(np.isfinite(np.asarray(v))) for v in out.values())
  plain = cfg(sampler='heun', num_sampling_steps=3)
  a = diffusion.sample(_label_pred_fn, shapes, jnp.array([1, 2], jnp.int32), jax.random.key(0), plain)
  b = diffusion.sample(counting, shapes, jnp.array([1, 2], jnp.int32), jax.random.key(0), c, null_label=NULL)
  assert not np.allclose(np.asarray(a['video']), np.asarray(b['video']))
