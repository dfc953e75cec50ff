"""The EMA serves short runs: its decay warms up with the step count, so a short run's EMA params denoise at least
as well as its raw params (with a fixed 0.999 decay they stay near the initialization and do not)."""

import numpy as np
import pytest

import train_toy
from avdiff.diffusion import diagnostics
from avdiff.train.tasks import DiffusionTask
from avdiff.train import loop, metrics as metrics_lib, optim


def test_warmup_decay_rises_with_the_step_count_up_to_the_configured_decay():
  cfg = train_toy.config('unused', **{'train.ema_decay': 0.999})
  got = [float(optim.ema_decay(cfg.train, n)) for n in (0, 90, 990, 100_000)]
  np.testing.assert_allclose(got, [0.1, 0.91, 0.991, 0.999], rtol=1e-6)
  cfg.train.ema_warmup = False
  assert float(optim.ema_decay(cfg.train, 0)) == pytest.approx(0.999)


def _gains(tmp_path, name, **overrides):
  cfg = train_toy.config(str(tmp_path / 'data'), **{
      'train.steps': 150, 'train.eval_every': 150, 'train.eval_clips': 8, 'train.ema_decay': 0.999,
      'train.log_every': 50, 'diffusion.objective': 'x', **overrides})
  workdir = str(tmp_path / name)
  loop.train(cfg, workdir, DiffusionTask(cfg), progress=False)
  row = {r['step']: r for r in metrics_lib.read_metrics(workdir)}[150]
  keys = [f'gain_{m}_t{t:g}' for m in diagnostics.MODALITIES for t in diagnostics.TIMES]
  return np.asarray([row[f'val_{k}'] for k in keys]), np.asarray([row[f'val_ema_{k}'] for k in keys])


def test_short_run_ema_denoises_as_well_as_the_raw_params(tmp_path):
  raw, ema = _gains(tmp_path, 'warmup')
  low_noise = np.asarray([t <= 0.5 for _ in diagnostics.MODALITIES for t in diagnostics.TIMES])
  assert np.all(raw[low_noise] < 1.0), raw  # The raw model learned to denoise (a 150-step toy: at low noise).
  # Over the noise levels the EMA is not worse (5%); no single level is far worse (the EMA of a 150-step run
  # averages its last ~15 steps, while the raw params still move fast).
  assert np.mean(ema) <= 1.05 * np.mean(raw) and np.all(ema <= 1.3 * raw + 0.02), (raw, ema)
  # The same run with a fixed decay: its EMA is far worse than its raw params (so the check above can fail).
  raw_fixed, ema_fixed = _gains(tmp_path, 'fixed', **{'train.ema_warmup': False})
  assert np.mean(ema_fixed) > 1.3 * np.mean(raw_fixed), (raw_fixed, ema_fixed)
