"""What the network predicts (eps, v or flow velocity), its training target, and its conversion to (x0, eps).

With x_t = alpha x0 + sigma eps:
  eps:  target eps.
  v:    target v = alpha eps - sigma x0 (Salimans & Ho 2022).
  flow: target u = eps - x0, the rectified-flow velocity dx_t/dt of the flow schedule (alpha = 1 - t, sigma = t).
Each is an invertible linear function of (x0, eps) given x_t, so every sampler, which works on (x0, eps) estimates,
runs with every objective. The formulas hold for any (alpha, sigma), not only the schedule an objective is usually
paired with. alpha and sigma broadcast against the arrays (e.g. [B, 1, 1, 1] for video [B, T, H, W, C]).
"""

from __future__ import annotations

import jax.numpy as jnp

OBJECTIVES = ('eps', 'v', 'flow')


def _check(objective: str):
  if objective not in OBJECTIVES:
    raise ValueError(f'objective {objective!r} is not one of {OBJECTIVES}')


def target(objective: str, x0, eps, alpha, sigma):
  """Training target (= the ideal network output) for clean x0 and noise eps at (alpha, sigma)."""
  _check(objective)
  if objective == 'eps':
    return eps
  if objective == 'v':
    return alpha * eps - sigma * x0
  return eps - x0


def to_x0_eps(objective: str, pred, x_t, alpha, sigma):
  """Network output `pred` at x_t -> (x0 estimate, eps estimate).

  eps: x0 = (x_t - sigma pred) / alpha (alpha > 0: the VP schedules clip their terminal log-SNR for this reason).
  v and flow solve the 2x2 linear system [x_t; pred] = M [x0; eps], whose determinant is alpha^2 + sigma^2 (v) or
  alpha + sigma (flow), never zero.
  """
  _check(objective)
  if objective == 'eps':
    return (x_t - sigma * pred) / alpha, pred
  if objective == 'v':
    r2 = alpha * alpha + sigma * sigma
    return (alpha * x_t - sigma * pred) / r2, (sigma * x_t + alpha * pred) / r2
  s = alpha + sigma
  return (x_t - sigma * pred) / s, (x_t + alpha * pred) / s
