"""Configs: locked fields, command-line overrides, derived clock, and validation messages naming the field."""

import importlib

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

from avdiff import config_lib
from configs import base, tiny


def _tiny():
  return tiny.get_config()


def test_tiny_and_base_validate():
  for cfg in (tiny.get_config(), base.get_config()):
    lay = config_lib.validate(cfg, num_devices=8)
    assert lay.num_tokens == lay.num_video_tokens + lay.num_audio_tokens > 0
    assert config_lib.audio_tokens_per_video_token_time(cfg) >= 1


def test_tiny_clock_is_derived():
  cfg = _tiny()
  assert config_lib.num_frames(cfg.data) == 20
  assert config_lib.mel_hop(cfg.data) == 400
  assert config_lib.num_mel_frames(cfg.data) == 80
  assert config_lib.num_samples(cfg.data) == 32000  # 2 s at 16 kHz.
  lay = config_lib.layout(cfg)
  assert lay.video_grid == (10, 4, 4) and lay.audio_grid == (10, 4)
  assert lay.video_token_seconds == pytest.approx(lay.audio_token_seconds)


def test_locked_config_rejects_misspelled_key():
  cfg = _tiny()
  cfg.lock()
  with pytest.raises(AttributeError):
    cfg.train.stpes = 10
  cfg.train.steps = 10
  assert cfg.train.steps == 10


@pytest.mark.parametrize('mutate, field', [
    (lambda c: setattr(c.data, 'resolution', 36), 'video_patch[1]'),
    (lambda c: setattr(c.data, 'mel_frames_per_video_frame', 3), 'data.mel_frames_per_video_frame'),
    (lambda c: setattr(c.data, 'clip_seconds', 2.05), 'data.clip_seconds'),
    (lambda c: setattr(c.model, 'num_heads', 3), 'model.num_heads'),
    (lambda c: setattr(c.model, 'fusion', 'triple'), 'model.fusion'),
    (lambda c: setattr(c.model, 'audio_patch', (16, 8)), 'model.audio_patch[0]'),  # 0.4 s audio vs 0.2 s video tokens.
    (lambda c: (setattr(c.diffusion, 'objective', 'flow'), setattr(c.diffusion, 'schedule', 'cosine')),
     'diffusion.schedule'),
    (lambda c: setattr(c.eval, 'params', 'last'), 'eval.params'),
    (lambda c: setattr(c.diffusion, 'time_sampling', 'beta'), 'diffusion.time_sampling'),
    (lambda c: setattr(c.diffusion, 'clean_audio_prob', 1.5), 'diffusion.clean_audio_prob'),
    (lambda c: setattr(c.train, 'global_batch_size', 12), 'train.global_batch_size'),
    (lambda c: c.mesh.shape.update({'data': 3, 'fsdp': 1, 'tensor': 1}), 'mesh.shape'),
    (lambda c: c.mesh.shape.update({'data': -1, 'fsdp': 1, 'tensor': 8}), 'model.num_heads'),
])
def test_validate_names_the_field(mutate, field):
  cfg = _tiny()
  mutate(cfg)
  with pytest.raises(config_lib.ConfigError, match=field.replace('[', r'\[').replace(']', r'\]')):
    config_lib.validate(cfg, num_devices=8)


def _parse(argv):
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_command_line_overrides_and_typos():
  cfg = _parse(['prog', '--config=configs/tiny.py', '--config.train.steps=7', '--config.model.fusion=dual_tower'])
  assert cfg.train.steps == 7 and cfg.model.fusion == 'dual_tower'
  with pytest.raises((flags.Error, KeyError, AttributeError), match='steps'):  # Says: did you mean "steps"?
    _parse(['prog', '--config=configs/tiny.py', '--config.train.stpes=7'])


def test_every_config_file_validates():
  """Ablation and pod configs are small deltas of a base and must stay valid."""
  import pathlib
  root = pathlib.Path(__file__).resolve().parents[1]
  for path in sorted(root.glob('configs/**/*.py')):
    if path.name.startswith('_') or path.name in ('base.py',) or path.parent.name == 'sweeps':
      continue  # Sweep files define get_sweep(); tests/test_study.py loads every member of theirs.
    module = '.'.join(path.relative_to(root).with_suffix('').parts)
    cfg = importlib.import_module(module).get_config()
    assert isinstance(cfg, ml_collections.ConfigDict)
    config_lib.validate(cfg)  # Mesh checks need the target device count; shapes and clocks are checked here.
