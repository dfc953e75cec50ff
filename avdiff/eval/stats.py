"""The statistics every evaluation number is made of: correlation, per-clip summaries and intervals over seeds.

  pearson                Pearson r of two series, NaN when it is undefined (too short, a constant series).
  lagged_correlations    pearson of x[t] with y[t + k] for every lag k in -K..K.
  ClipSummary / summarize  mean, sd, median, count and bootstrap interval of one value per clip; NaN values are
                         undecided clips, counted and left out of every statistic.
  normal_interval        mean +- 1.96 sd / sqrt(n) of a stored per-clip summary.
  seed_interval          95% t-interval of the mean of one value per seed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import scipy.stats

MIN_STD = 1e-12  # A series whose standard deviation is below this is constant: its correlation is undefined.
Z95 = 1.96  # Two-sided 95% normal quantile of the per-clip intervals.


def pearson(a: np.ndarray, b: np.ndarray) -> float:
  """Pearson correlation of two equal-length series float [N], in [-1, 1]; NaN when N < 3 or either series is
  constant (standard deviation < MIN_STD)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 3 or a.std() < MIN_STD or b.std() < MIN_STD:
    return math.nan
  return float(np.corrcoef(a, b)[0, 1])


def lagged_correlations(x: np.ndarray, y: np.ndarray, max_lag: int) -> np.ndarray:
  """pearson(x[t], y[t + k]) over the overlapping samples for k in -max_lag..max_lag, float [2 * max_lag + 1].

  x, y: float [N] on one clock (e.g. one value per video frame; k then counts frames).
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  out = []
  for k in range(-max_lag, max_lag + 1):
    lo, hi = max(0, -k), min(n, n - k)
    out.append(pearson(x[lo:hi], y[lo + k:hi + k]))
  return np.asarray(out)


def bootstrap_ci(values: np.ndarray, num_samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of values float [N] (num_samples resamples); NaN when N = 0."""
  v = np.asarray(values, np.float64)
  if len(v) == 0 or num_samples <= 0:
    return math.nan, math.nan
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, len(v), (num_samples, len(v)))].mean(1)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return float(lo), float(hi)


@dataclasses.dataclass(frozen=True)
class ClipSummary:
  """One value per clip, summarized over the decided (finite) values."""
  mean: float
  std: float  # Population sd (ddof 0).
  median: float
  n: int  # Decided clips.
  undecided: int  # Clips whose value is NaN (or inf).
  ci95: tuple[float, float]  # Bootstrap interval of the mean (NaN when not asked for).

  def outcome_dict(self) -> dict:
    """The form of an outcome measure: {'mean', 'std', 'n', 'undecided'}."""
    return {'mean': self.mean, 'std': self.std, 'n': self.n, 'undecided': self.undecided}

  def metric_dict(self) -> dict:
    """The form of an aggregated clip metric: {'mean', 'median', 'ci95', 'n', 'n_nan'}."""
    return {'mean': self.mean, 'median': self.median, 'ci95': list(self.ci95), 'n': self.n, 'n_nan': self.undecided}


def summarize(values, num_bootstrap: int = 0, seed: int = 0) -> ClipSummary:
  """ClipSummary of values float [N] (one per clip); a bootstrap interval of num_bootstrap resamples when > 0."""
  v = np.asarray(values, np.float64).reshape(-1)
  ok = v[np.isfinite(v)]
  if not len(ok):
    return ClipSummary(math.nan, math.nan, math.nan, 0, len(v), (math.nan, math.nan))
  return ClipSummary(float(ok.mean()), float(ok.std()), float(np.median(ok)), len(ok), len(v) - len(ok),
                     bootstrap_ci(ok, num_bootstrap, seed))


def normal_interval(mean: float, std: float, n: int) -> Optional[tuple[float, float]]:
  """(mean - h, mean + h) with h = 1.96 std / sqrt(n): the 95% interval of a mean over n clips; None when n < 2."""
  if not n or n < 2:
    return None
  half = Z95 * std / math.sqrt(n)
  return mean - half, mean + half


def seed_interval(values) -> dict:
  """{'mean', 'std', 'n', 'lo', 'hi'} of values float [n] (one per seed): the sample sd (ddof 1; 0 for one seed) and
  the 95% t-interval mean +- t(n - 1) sd / sqrt(n); lo, hi None for a single seed."""
  v = np.asarray(values, np.float64)
  mean, n = float(v.mean()), len(v)
  if n < 2:
    return {'mean': mean, 'std': 0.0, 'n': n, 'lo': None, 'hi': None}
  std = float(v.std(ddof=1))
  half = float(scipy.stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
  return {'mean': mean, 'std': std, 'n': n, 'lo': mean - half, 'hi': mean + half}
