"""SyncNet port: MFCC front end vs python_speech_features, forward pass vs a PyTorch reference with random weights."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from avdiff.eval import lipsync
from avdiff.eval import syncnet

torch = pytest.importorskip('torch')
psf = pytest.importorskip('python_speech_features')
nn = torch.nn


class _ReferenceS(nn.Module):
  """syncnet_python SyncNetModel.S, written out in PyTorch as the reference."""

  def __init__(self, num_layers_in_fc_layers=1024):
    super().__init__()
    self.netcnnaud = nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
        nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)), nn.BatchNorm2d(192),
        nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
        nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(384), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
        nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)), nn.BatchNorm2d(512), nn.ReLU())
    self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                  nn.Linear(512, num_layers_in_fc_layers))
    self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
                                  nn.Linear(512, num_layers_in_fc_layers))
    self.netcnnlip = nn.Sequential(
        nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0), nn.BatchNorm3d(96),
        nn.ReLU(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), nn.BatchNorm3d(256),
        nn.ReLU(inplace=True), nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
        nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU(inplace=True))

  def forward_aud(self, x):
    mid = self.netcnnaud(x)
    return self.netfcaud(mid.view((mid.size()[0], -1)))

  def forward_lip(self, x):
    mid = self.netcnnlip(x)
    return self.netfclip(mid.view((mid.size()[0], -1)))


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  torch.manual_seed(0)
  ref = _ReferenceS()
  # Non-trivial BatchNorm statistics, so a mix-up of mean / var / scale / bias shows.
  for mod in ref.modules():
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
      mod.running_mean.uniform_(-0.5, 0.5)
      mod.running_var.uniform_(0.5, 2.0)
      mod.weight.data.uniform_(0.5, 1.5)
      mod.bias.data.uniform_(-0.2, 0.2)
  ref.eval()
  path = os.path.join(tmp_path_factory.mktemp('syncnet'), 'syncnet_v2.model')
  torch.save(ref.state_dict(), path)
  return ref, path


def test_mfcc_matches_python_speech_features():
  rng = np.random.default_rng(0)
  audio = np.clip(rng.normal(0, 0.2, 16000) + 0.3 * np.sin(np.arange(16000) * 0.05), -1, 1)
  ours = syncnet.mfcc(syncnet.int16_scale(audio))
  ref = psf.mfcc(syncnet.int16_scale(audio), 16000)
  assert ours.shape == ref.shape == (99, 13)  # 1 + ceil((16000 - 400) / 160) frames.
  np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_forward_matches_pytorch_reference(reference):
  ref, path = reference
  model = syncnet.load_syncnet(path)
  rng = np.random.default_rng(1)
  mfcc = rng.normal(0, 5, (3, 13, 20)).astype(np.float32)
  frames = rng.uniform(0, 255, (1, 5, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    ref_aud = ref.forward_aud(torch.from_numpy(mfcc[:, None])).numpy()
    ref_lip = ref.forward_lip(torch.from_numpy(np.transpose(frames, (0, 4, 1, 2, 3)).copy())).numpy()
  ours_aud = np.asarray(model.forward_aud(jnp.asarray(mfcc)))
  ours_lip = np.asarray(model.forward_lip(jnp.asarray(frames)))
  assert ours_aud.shape == (3, 1024) and ours_lip.shape == (1, 1024)
  np.testing.assert_allclose(ours_aud, ref_aud, rtol=1e-3, atol=1e-3 * np.abs(ref_aud).max())
  np.testing.assert_allclose(ours_lip, ref_lip, rtol=1e-3, atol=1e-3 * np.abs(ref_lip).max())


def test_converter_rejects_mismatched_state_dict(reference):
  ref, _ = reference
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  model = syncnet.SyncNet(nnx.Rngs(0))
  with pytest.raises(KeyError):
    syncnet.convert_state_dict(model, {k: v for k, v in sd.items() if k != 'netfclip.3.bias'})
  bad = dict(sd)
  bad['netcnnaud.0.weight'] = np.zeros((64, 1, 5, 5), np.float32)
  with pytest.raises(ValueError):
    syncnet.convert_state_dict(model, bad)


def test_clip_embeddings_and_protocol(reference):
  _, path = reference
  model = syncnet.load_syncnet(path)
  rng = np.random.default_rng(2)
  frames = rng.integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
  audio = rng.uniform(-0.5, 0.5, 16000 * 8 // 25)
  v, a = syncnet.clip_embeddings(model, frames, audio, batch_size=2)
  # As the reference: min(frames, samples / 640) - 5 windows.
  assert v.shape == a.shape == (3, 1024)
  res = lipsync.score_embeddings(v, a, max_offset=2)
  assert len(res.mean_distances) == 5 and res.lse_c >= 0


def test_folder_mode_with_syncnet_weights(reference, tmp_path):
  from avdiff.data import av_io
  from avdiff.eval import folder
  from configs import tiny
  _, path = reference
  rng = np.random.default_rng(3)
  # 1 s: long enough for the weight-free metrics at the tiny config's 10 fps, 20 SyncNet windows at 25 fps.
  frames = rng.integers(0, 255, (25, 32, 32, 3), dtype=np.uint8)
  audio = rng.uniform(-0.3, 0.3, 16000).astype(np.float32)
  av_io.write_video(str(tmp_path / 'face.mkv'), frames, audio, 25, 16000, 'pcm')
  config = tiny.get_config()
  config.eval.bootstrap_samples = 10
  config.eval.faces = 'off'  # The file stands for a pre-cropped face video.
  res = folder.evaluate_folder(str(tmp_path), config, syncnet_model=syncnet.load_syncnet(path))
  clip = res['clips']['face.mkv']
  assert 'syncnet_error' not in clip, clip
  assert -15 <= clip['syncnet_offset_frames'] <= 15 and clip['syncnet_lse_c'] >= 0
  assert res['protocol']['syncnet']
