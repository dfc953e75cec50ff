"""Known-answer model: the exact optimal denoiser for jointly Gaussian audio-video data (tests and benchmarks).

Data x0 = concat(flatten(video), flatten(audio)) ~ N(mu, S) with S positive definite. Under
x_t = alpha x0 + sigma eps with per-modality (alpha, sigma), i.e. y = A x0 + n, A = diag(alpha per coordinate),
n ~ N(0, diag(sigma^2)), the MMSE estimate is E[x0 | y] = mu + S A (A S A + N)^-1 (y - A mu); it stays defined
when one modality is clean (sigma = 0). `pred_fn` returns what a perfectly trained network of any objective would.
The probability-flow ODE of this data is linear and diagonal in the eigenbasis of S, so its exact solution from t = 1
to t = 0 is known too (`ode_solution`), which measures an ODE sampler's discretization error sample by sample.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from avdiff.diffusion import objectives, schedules

_ORDER = ('video', 'audio')


@dataclasses.dataclass(frozen=True)
class GaussianData:
  """mean [D], cov [D, D] over the flattened (video, audio) coordinates; shapes: per-example shapes per modality."""
  mean: np.ndarray
  cov: np.ndarray
  shapes: dict

  @property
  def sizes(self) -> dict:
    return {k: math.prod(self.shapes[k]) for k in _ORDER}

  def flatten(self, x: dict) -> jax.Array:
    """{'video': [B, ...], 'audio': [B, ...]} -> [B, D]."""
    return jnp.concatenate([x[k].reshape(x[k].shape[0], -1) for k in _ORDER], axis=1)

  def unflatten(self, flat: jax.Array) -> dict:
    out, start = {}, 0
    for k in _ORDER:
      n = self.sizes[k]
      out[k] = flat[:, start:start + n].reshape((flat.shape[0],) + tuple(self.shapes[k]))
      start += n
    return out

  def batch_shapes(self, batch: int) -> dict:
    return {k: (batch,) + tuple(self.shapes[k]) for k in _ORDER}

  def sample(self, rng: jax.Array, batch: int) -> dict:
    """Exact data samples {'video': [B, ...], 'audio': [B, ...]}."""
    chol = np.linalg.cholesky(self.cov)
    z = jax.random.normal(rng, (batch, self.mean.shape[0]), jnp.float32)
    return self.unflatten(jnp.asarray(self.mean, jnp.float32) + z @ jnp.asarray(chol.T, jnp.float32))

  def _per_coord(self, values: dict) -> jax.Array:
    """{'video': [B], 'audio': [B]} -> [B, D], each modality's value repeated over its coordinates."""
    return jnp.concatenate([jnp.repeat(values[k][:, None], self.sizes[k], axis=1) for k in _ORDER], axis=1)

  def posterior_mean(self, x_t: dict, t: dict, schedule: schedules.Schedule, shared_t: bool = False) -> dict:
    """E[x0 | x_t] with per-modality times t {'video': [B], 'audio': [B]}.

    shared_t: every row has the times of row 0 (true when sampling); one D x D solve instead of B of them.
    """
    if shared_t:
      t = {k: v[:1] for k, v in t.items()}
    mu = jnp.asarray(self.mean, jnp.float32)
    cov = jnp.asarray(self.cov, jnp.float32)
    a_s = {k: schedule.alpha_sigma(t[k]) for k in _ORDER}
    alpha = self._per_coord({k: a_s[k][0] for k in _ORDER})  # [B, D]
    sigma = self._per_coord({k: a_s[k][1] for k in _ORDER})
    y = self.flatten(x_t)
    m = alpha[:, :, None] * cov[None] * alpha[:, None, :] + jax.vmap(jnp.diag)(sigma * sigma)  # A S A + N
    if shared_t:
      sol = jnp.linalg.solve(m[0], (y - alpha * mu).T).T
    else:
      sol = jnp.linalg.solve(m, (y - alpha * mu)[..., None])[..., 0]
    x0 = mu + jnp.einsum('de,be->bd', cov, alpha * sol)
    return self.unflatten(x0)

  def pred_fn(self, schedule: schedules.Schedule, objective: str, shared_t: bool = False):
    """Optimal network pred_fn(x, t, label) -> dict for `objective` (label ignored); shared_t as posterior_mean."""

    def fn(x: dict, t: dict, label=None) -> dict:
      del label
      x0 = self.posterior_mean(x, t, schedule, shared_t)
      out = {}
      for k in _ORDER:
        alpha, sigma = (v.reshape((-1,) + (1,) * (x[k].ndim - 1)) for v in schedule.alpha_sigma(t[k]))
        eps = jnp.where(sigma > 0, (x[k] - alpha * x0[k]) / jnp.where(sigma > 0, sigma, 1.0), 0.0)
        out[k] = objectives.target(objective, x0[k], eps, alpha, sigma)
      return out

    return fn

  def ode_solution(self, x1: dict, schedule: schedules.Schedule) -> dict:
    """Exact probability-flow ODE map of joint samples from t = 1 to t = 0: x0 = mu + S^1/2 (alpha^2 S +
    sigma^2)^-1/2 (x1 - alpha mu) with (alpha, sigma) at t = 1 (all matrices share the eigenbasis of S)."""
    lam, u = np.linalg.eigh(self.cov)
    alpha, sigma = (float(v) for v in schedule.alpha_sigma(1.0))
    gain = (u * (np.sqrt(lam) / np.sqrt(alpha ** 2 * lam + sigma ** 2))) @ u.T
    y = self.flatten(x1) - alpha * jnp.asarray(self.mean, jnp.float32)
    return self.unflatten(jnp.asarray(self.mean, jnp.float32) + y @ jnp.asarray(gain.T, jnp.float32))

  def conditional(self, given: str, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D_other] and covariance of the other modality (flattened) given modality `given` = value (flat)."""
    nv = self.sizes['video']
    idx = {'video': np.arange(nv), 'audio': np.arange(nv, nv + self.sizes['audio'])}
    g, o = idx[given], idx['audio' if given == 'video' else 'video']
    s_og = self.cov[np.ix_(o, g)]
    gain = s_og @ np.linalg.inv(self.cov[np.ix_(g, g)])
    mean = self.mean[o] + gain @ (np.asarray(value).reshape(-1) - self.mean[g])
    return mean, self.cov[np.ix_(o, o)] - gain @ s_og.T


def random_gaussian(seed: int, shapes: dict, std_range: tuple[float, float] = (0.2, 1.0),
                    correlation: float = 0.8) -> GaussianData:
  """A random correlated Gaussian over (video, audio) coordinates, stds in std_range, mean in [-1, 1].

  correlation in [0, 1): strength of the random cross- and within-modality correlations.
  """
  rs = np.random.RandomState(seed)
  d = sum(math.prod(s) for s in shapes.values())
  q, _ = np.linalg.qr(rs.normal(size=(d, d)))
  corr = (1 - correlation) * np.eye(d) + correlation * (q * rs.uniform(0, 1, d)) @ q.T
  corr = corr / np.sqrt(np.outer(np.diag(corr), np.diag(corr)))
  std = rs.uniform(*std_range, size=d)
  return GaussianData(rs.uniform(-1, 1, d), corr * np.outer(std, std), {k: tuple(shapes[k]) for k in _ORDER})
