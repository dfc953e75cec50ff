"""What the network predicts (x, eps, v or flow velocity), its training target, and its conversion to (x0, eps).

With x_t = alpha x0 + sigma eps:
  x:    target x0, the clean signal (Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise"). Its
        loss is measured on the flow velocity it implies (`loss_weight`), as in that paper. A token whose patch holds
        more values than the network is wide cannot carry the patch's noise through (what eps, v and flow ask of it),
        but can carry the clean patch, which lies near a low-dimensional manifold.
  eps:  target eps.
  v:    target v = alpha eps - sigma x0 (Salimans & Ho 2022).
  flow: target u = eps - x0, the rectified-flow velocity dx_t/dt of the flow schedule (alpha = 1 - t, sigma = t).
Each is an invertible linear function of (x0, eps) given x_t (x: for sigma > 0), so every sampler, which works on
(x0, eps) estimates, runs with every objective. The formulas hold for any (alpha, sigma), not only the schedule an objective is usually
paired with. alpha and sigma broadcast against the arrays (e.g. [B, 1, 1, 1] for video [B, T, H, W, C]).
"""

from __future__ import annotations

import jax.numpy as jnp

OBJECTIVES = ('x', 'eps', 'v', 'flow')
# x objective: sigma is floored here where the implied velocity divides by it. The loss floor (0.05) is the
# paper's clamp of the time near the clean end; the conversion floor only keeps t = 0 finite (at t = 0 the sampler
# never uses eps: the step to t = 0 multiplies it by sigma' = 0).
X_LOSS_SIGMA_MIN = 0.05
_X_SIGMA_MIN = 1e-6


def _check(objective: str):
  if objective not in OBJECTIVES:
    raise ValueError(f'objective {objective!r} is not one of {OBJECTIVES}')


def target(objective: str, x0, eps, alpha, sigma):
  """Training target (= the ideal network output) for clean x0 and noise eps at (alpha, sigma)."""
  _check(objective)
  if objective == 'x':
    return x0
  if objective == 'eps':
    return eps
  if objective == 'v':
    return alpha * eps - sigma * x0
  return eps - x0


def to_x0_eps(objective: str, pred, x_t, alpha, sigma):
  """Network output `pred` at x_t -> (x0 estimate, eps estimate).

  x: eps = (x_t - alpha pred) / sigma.
  eps: x0 = (x_t - sigma pred) / alpha (alpha > 0: the VP schedules clip their terminal log-SNR for this reason).
  v and flow solve the 2x2 linear system [x_t; pred] = M [x0; eps], whose determinant is alpha^2 + sigma^2 (v) or
  alpha + sigma (flow), never zero.
  """
  _check(objective)
  if objective == 'x':
    return pred, (x_t - alpha * pred) / jnp.maximum(sigma, _X_SIGMA_MIN)
  if objective == 'eps':
    return (x_t - sigma * pred) / alpha, pred
  if objective == 'v':
    r2 = alpha * alpha + sigma * sigma
    return (alpha * x_t - sigma * pred) / r2, (sigma * x_t + alpha * pred) / r2
  s = alpha + sigma
  return (x_t - sigma * pred) / s, (x_t + alpha * pred) / s


def loss_weight(objective: str, alpha, sigma):
  """Per-example weight of the squared error of `pred` against `target` (same broadcasting as alpha, sigma).

  1 for eps / v / flow. For x it is ((alpha + sigma) / max(sigma, 0.05))^2: the squared error of the flow velocity
  u = eps - x0 implied by the x0 estimate (u_hat - u = -(x0_hat - x0) (alpha + sigma) / sigma), so training an x
  predictor weights noise levels as flow matching does; the floor keeps the weight finite near the clean end (for
  the flow schedule it is 1 / max(t, 0.05)^2, the paper's clamp).
  """
  _check(objective)
  if objective != 'x':
    return jnp.ones_like(jnp.asarray(sigma, jnp.float32))
  return jnp.square((alpha + sigma) / jnp.maximum(sigma, X_LOSS_SIGMA_MIN))
