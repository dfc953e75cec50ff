"""The shared statistics (avdiff.eval.stats) and the audio-shuffle pairing against independent computations."""

import math

import numpy as np
import pytest
import scipy.stats

from avdiff.eval import shift
from avdiff.eval import stats


def test_pearson_matches_scipy_and_is_undefined_for_constant_or_short_series():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=50), rng.normal(size=50)
  b = a + 0.5 * b
  assert stats.pearson(a, b) == pytest.approx(scipy.stats.pearsonr(a, b)[0], abs=1e-12)
  assert stats.pearson(a, -2 * a + 3) == pytest.approx(-1.0)
  assert math.isnan(stats.pearson(a, np.full(50, 0.3)))  # Summation noise in np.std must not pass for variation.
  assert math.isnan(stats.pearson(np.full(50, 7.0), a))
  assert math.isnan(stats.pearson([1.0, 2.0], [2.0, 1.0]))
  assert stats.pearson([1.0, 2.0, 4.0], [1.0, 2.0, 4.0]) == pytest.approx(1.0)


def test_lagged_correlations_peak_at_the_lag():
  rng = np.random.default_rng(1)
  x = rng.normal(size=40)
  for k in (-3, 0, 2):
    corr = stats.lagged_correlations(x, np.roll(x, k), 4)
    assert corr.shape == (9,) and int(np.nanargmax(corr)) - 4 == k and corr[k + 4] == pytest.approx(1.0)
  # Each lag is pearson over the overlap: x[t] against y[t + k].
  y = rng.normal(size=40)
  corr = stats.lagged_correlations(x, y, 3)
  assert corr[3 + 2] == pytest.approx(stats.pearson(x[:-2], y[2:]))
  assert corr[3 - 1] == pytest.approx(stats.pearson(x[1:], y[:-1]))
  assert np.all(np.isnan(stats.lagged_correlations(x[:3], y[:3], 2)[[0, 4]]))  # One point of overlap.


def test_summarize_counts_undecided_and_matches_numpy():
  values = [0.2, np.nan, 0.5, 0.9, np.inf, 0.4]
  s = stats.summarize(values, num_bootstrap=500, seed=0)
  ok = np.asarray([0.2, 0.5, 0.9, 0.4])
  assert (s.n, s.undecided) == (4, 2)
  assert s.mean == pytest.approx(ok.mean()) and s.std == pytest.approx(ok.std()) and s.median == pytest.approx(0.45)
  assert s.ci95[0] < s.mean < s.ci95[1] and ok.min() <= s.ci95[0] and s.ci95[1] <= ok.max()
  assert s.outcome_dict() == {'mean': s.mean, 'std': s.std, 'n': 4, 'undecided': 2}
  assert s.metric_dict() == {'mean': s.mean, 'median': s.median, 'ci95': list(s.ci95), 'n': 4, 'n_nan': 2}
  assert stats.summarize(values, 500, 0) == s  # Seeded.
  assert math.isnan(stats.summarize(values).ci95[0])  # No bootstrap asked for.
  empty = stats.summarize([np.nan, np.nan], 100, 0)
  assert empty.n == 0 and empty.undecided == 2 and math.isnan(empty.mean) and math.isnan(empty.ci95[1])


def test_bootstrap_ci_of_a_large_sample_is_the_normal_interval():
  v = np.random.default_rng(2).normal(3.0, 2.0, size=400)
  lo, hi = stats.bootstrap_ci(v, 4000, seed=0)
  n_lo, n_hi = stats.normal_interval(v.mean(), v.std(), len(v))
  assert lo == pytest.approx(n_lo, abs=0.03) and hi == pytest.approx(n_hi, abs=0.03)


def test_intervals_against_scipy():
  lo, hi = stats.normal_interval(0.5, 0.2, 10)
  assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * 1.96 * 0.2 / math.sqrt(10))
  assert stats.normal_interval(0.5, 0.2, 1) is None
  values = [0.61, 0.7, 0.52, 0.66]
  s = stats.seed_interval(values)
  t_lo, t_hi = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values))
  assert s['n'] == 4 and s['mean'] == pytest.approx(np.mean(values)) and s['std'] == pytest.approx(np.std(values, ddof=1))
  assert s['lo'] == pytest.approx(t_lo) and s['hi'] == pytest.approx(t_hi)
  assert stats.seed_interval([0.3]) == {'mean': 0.3, 'std': 0.0, 'n': 1, 'lo': None, 'hi': None}


def test_shuffled_audio_never_pairs_a_clip_with_itself_and_is_seeded():
  for n in (2, 3, 7, 20):
    clips = [{'audio': np.full(4, i, np.float32)} for i in range(n)]
    for seed in range(10):
      partners = [int(a[0]) for a in shift.shuffled_audio(clips, seed)]
      assert sorted(partners) == list(range(n)) and all(p != i for i, p in enumerate(partners)), (n, seed)
      assert [int(a[0]) for a in shift.shuffled_audio(clips, seed)] == partners
  clips = [{'audio': np.full(4, i, np.float32)} for i in range(20)]
  pairings = {tuple(int(a[0]) for a in shift.shuffled_audio(clips, seed)) for seed in range(5)}
  assert len(pairings) == 5
  with pytest.raises(ValueError):
    shift.shuffled_audio(clips[:1], 0)
