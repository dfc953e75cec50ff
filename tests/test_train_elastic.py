"""Elastic resume: a run saved on one mesh continues on another device count (8 -> 4 -> 1 fake CPU devices; 2
processes -> 1 in the slow test), parameters, optimizer state and EMA resharded, the data order continuing with
the next global batch. Losses match an unchanged run up to float32 reduction-order noise (rtol 1e-5): the devices
sum the same numbers in another grouping."""

import os
import tempfile

import jax
import numpy as np
import pytest

import train_toy
from avdiff import parallel
from avdiff.train import loop
from avdiff.train import metrics as metrics_lib
from avdiff.train.tasks import DiffusionTask

DATA_DIR = os.path.join(tempfile.gettempdir(), 'avdiff_train_tests_data')
RUN = {'train.checkpoint_every': 2}


def _train(workdir, steps, num_devices):
  config = train_toy.config(DATA_DIR, **RUN, **{'train.steps': steps})
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:num_devices])
  return loop.train(config, workdir, DiffusionTask(config), mesh=mesh, progress=False)


def _losses(workdir):
  return {r['step']: r['loss'] for r in metrics_lib.read_metrics(workdir) if 'loss' in r}


def test_resume_on_fewer_devices_continues_the_run(tmp_path):
  reference, elastic = str(tmp_path / 'reference'), str(tmp_path / 'elastic')
  _train(reference, 6, 8)
  _train(elastic, 2, 8)
  _train(elastic, 4, 4)  # Resumes step 2's checkpoint on 4 devices.
  result = _train(elastic, 6, 1)  # And step 4's on one.
  assert result['step'] == 6
  a, b = _losses(reference), _losses(elastic)
  assert sorted(b) == list(range(1, 7))
  np.testing.assert_allclose([b[s] for s in range(1, 7)], [a[s] for s in range(1, 7)], rtol=1e-5)


def test_a_changed_global_batch_is_refused_by_name(tmp_path):
  workdir = str(tmp_path)
  _train(workdir, 2, 8)
  config = train_toy.config(DATA_DIR, **RUN, **{'train.steps': 4, 'train.global_batch_size': 16})
  with pytest.raises(ValueError, match='global_batch_size: 8 when saved, 16 now'):
    loop.train(config, workdir, DiffusionTask(config), progress=False)
