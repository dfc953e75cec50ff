"""Distribution metrics between two feature sets: Frechet distance and kernel inception distance (KID).

Features are float [N, D] arrays from any extractor (avdiff.eval.features). These numbers depend entirely on the
extractor: computed on sync-expert embeddings they are NOT comparable to published FVD / FAD values.
"""

from __future__ import annotations

import numpy as np


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
  """Frechet distance of Gaussians fitted to features x [N, D] and y [M, D].

  ||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2)); the last trace is computed as the sum of the square
  roots of the eigenvalues of S_x^(1/2) S_y S_x^(1/2) (symmetric PSD, so no complex round-off as with sqrtm).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(f'features must be [N, D] and [M, D], got {x.shape} and {y.shape}')
  mx, my = x.mean(0), y.mean(0)
  sx, sy = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
  w, v = np.linalg.eigh(sx)
  root_x = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  mid = root_x @ sy @ root_x
  tr_cross = np.sqrt(np.clip(np.linalg.eigvalsh((mid + mid.T) / 2), 0, None)).sum()
  return float(np.sum((mx - my) ** 2) + np.trace(sx) + np.trace(sy) - 2 * tr_cross)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """KID kernel k(a, b) = (a.b / D + 1)^3, [N, M]."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 (polynomial kernel) between x [N, D] and y [M, D]: diagonal terms excluded."""
  n, m = len(x), len(y)
  if n < 2 or m < 2:
    raise ValueError('unbiased MMD needs at least 2 samples per set')
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())


def kid(x: np.ndarray, y: np.ndarray, subset_size: int = 1000, num_subsets: int = 100,
        seed: int = 0) -> tuple[float, float]:
  """KID = mean unbiased MMD^2 over random subsets (as in Binkowski et al. 2018); returns (mean, std over subsets).

  With fewer samples than `subset_size`, each subset is the whole (smaller) set size, drawn without replacement.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  size = min(subset_size, len(x), len(y))
  rng = np.random.default_rng(seed)
  if size == len(x) == len(y):
    return mmd2_unbiased(x, y), 0.0
  vals = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
          for _ in range(num_subsets)]
  return float(np.mean(vals)), float(np.std(vals))
