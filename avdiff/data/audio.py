"""Normalized log-mel spectrograms on the video clock, and their inversion to waveforms by Griffin-Lim.

The mel hop is `config_lib.mel_hop(data_cfg)` samples, so a clip of S = T_a * hop samples gives exactly
T_a = T * mel_frames_per_video_frame mel frames. Mel frame i is centred on sample (i + 1/2) * hop, the middle of
the hop interval it summarizes, so mel frames m * k .. m * k + k - 1 cover video frame m (k mel frames per video
frame) and nothing leaks across the shared clock.

Scale: the STFT magnitude is divided by half the window sum, so a full-scale sine reads 0 dB in its bin. Mel
filters are unnormalized triangles (peak 1). dB values are normalized as `(dB - floor / 2) / (-floor / 2)` and
clipped to [-1, 1] (floor = data.mel_db_floor; with -80 dB: -80 dB -> -1, 0 dB -> 1).
"""

from __future__ import annotations

import functools

import librosa
import ml_collections
import numpy as np

from avdiff import config_lib

_WINDOW = 'hann'


@functools.lru_cache(maxsize=16)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
  """[n_mels, n_fft // 2 + 1] triangular filters with peak 1 (librosa, Slaney mel scale)."""
  return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, norm=None,
                             dtype=np.float32)


def _params(data_cfg: ml_collections.ConfigDict) -> dict:
  return dict(sample_rate=int(data_cfg.sample_rate), n_fft=int(data_cfg.n_fft), n_mels=int(data_cfg.n_mels),
              fmin=float(data_cfg.fmin), fmax=float(data_cfg.fmax))


def _magnitude_scale(n_fft: int) -> float:
  """Divides |STFT| so that a full-scale sine has magnitude 1 in its bin."""
  return float(librosa.filters.get_window(_WINDOW, n_fft, fftbins=True).sum() / 2)


def mel_power(wave: np.ndarray, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """Mel power spectrogram on the video clock.

  Args:
    wave: float waveform [S] or [B, S] at data_cfg.sample_rate, S a multiple of the mel hop.
    data_cfg: the config's `data` section.
  Returns:
    float32 [T_a, n_mels] or [B, T_a, n_mels], T_a = S / hop (linear power, full-scale sine = 1).
  """
  p = _params(data_cfg)
  hop = config_lib.mel_hop(data_cfg)
  wave = np.asarray(wave, np.float32)
  num = wave.shape[-1] // hop
  # Dropping hop/2 samples and centering frames puts frame i's centre on sample (i + 1/2) * hop.
  spec = librosa.stft(wave[..., hop // 2:], n_fft=p['n_fft'], hop_length=hop, window=_WINDOW, center=True,
                      pad_mode='constant')[..., :num]
  power = (np.abs(spec) / _magnitude_scale(p['n_fft']))**2
  mel = np.einsum('mf,...ft->...tm', _mel_basis(**p), power.astype(np.float32))
  return mel.astype(np.float32)


def normalize_db(db: np.ndarray, floor_db: float) -> np.ndarray:
  """dB -> roughly [-1, 1]: floor -> -1, 0 dB -> 1 (clipped)."""
  half = -floor_db / 2
  return np.clip((db - floor_db / 2) / half, -1.0, 1.0).astype(np.float32)


def denormalize_db(mel: np.ndarray, floor_db: float) -> np.ndarray:
  """Inverse of `normalize_db` (within the clip range): normalized mel -> dB."""
  half = -floor_db / 2
  return np.asarray(mel, np.float32) * half + floor_db / 2


def log_mel(wave: np.ndarray, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """Normalized log-mel spectrogram.

  Args:
    wave: float waveform [S] or [B, S] in [-1, 1] at data_cfg.sample_rate; S = T_a * mel_hop (a longer wave is
      cut to whole hops).
    data_cfg: the config's `data` section (sample_rate, n_fft, n_mels, fmin, fmax, mel_db_floor, fps, ...).
  Returns:
    float32 [T_a, n_mels] or [B, T_a, n_mels] in [-1, 1] (mel_db_floor dB -> -1, 0 dB -> 1).
  """
  power = mel_power(wave, data_cfg)
  db = 10.0 * np.log10(np.maximum(power, 1e-12))
  return normalize_db(db, float(data_cfg.mel_db_floor))


def mel_basis(data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """float32 [n_mels, n_fft // 2 + 1]: the mel filters of `log_mel` (triangles with peak 1)."""
  return _mel_basis(**_params(data_cfg))


def magnitude_scale(n_fft: int) -> float:
  """What `log_mel` divides |STFT| (periodic Hann window of n_fft samples) by: half the window sum."""
  return _magnitude_scale(n_fft)


def synthesis_hop(data_cfg: ml_collections.ConfigDict) -> int:
  """Hop in samples of waveform synthesis from the mel (Griffin-Lim, the neural vocoder's inverse STFT): the mel hop
  divided by the smallest integer that makes it <= n_fft / 4 (75% window overlap), so it divides the mel hop."""
  hop = config_lib.mel_hop(data_cfg)
  return hop // _resynthesis_ratio(hop, int(data_cfg.n_fft))


def _resynthesis_ratio(hop: int, n_fft: int) -> int:
  """Smallest divisor r of hop with hop / r <= n_fft / 4 (75% window overlap for Griffin-Lim)."""
  for ratio in range(1, hop + 1):
    if hop % ratio == 0 and hop // ratio <= n_fft // 4:
      return ratio
  return hop


def mel_to_waveform(mel: np.ndarray, data_cfg: ml_collections.ConfigDict, n_iter: int = 32,
                    seed: int = 0) -> np.ndarray:
  """Waveform from a normalized log-mel by NNLS mel inversion and Griffin-Lim (librosa).

  The mel bands are inverted to linear STFT magnitudes by non-negative least squares (librosa.util.nnls), bands
  at the dB floor count as silence, and the phase is recovered by librosa.griffinlim on a hop fine enough for
  75% window overlap.

  Args:
    mel: float [T_a, n_mels] normalized log-mel as produced by `log_mel` (model output may be unclipped).
    data_cfg: the config's `data` section.
    n_iter: Griffin-Lim iterations.
    seed: seed of Griffin-Lim's random initial phase (deterministic output).
  Returns:
    float32 [S] waveform, S = T_a * mel_hop, clipped to [-1, 1].
  """
  p = _params(data_cfg)
  hop = config_lib.mel_hop(data_cfg)
  mel = np.asarray(mel, np.float32)
  num = mel.shape[0]
  db = denormalize_db(np.clip(mel, -1.0, 1.0), float(data_cfg.mel_db_floor))
  power = np.power(10.0, db / 10.0).T  # [n_mels, T_a]
  floor_power = 10.0**(float(data_cfg.mel_db_floor) / 10.0)
  power = np.where(power <= floor_power * 1.0001, 0.0, power)  # The floor means "silence", not -80 dB noise.
  stft_power = librosa.util.nnls(_mel_basis(**p), power)  # [n_fft // 2 + 1, T_a]
  magnitude = np.sqrt(np.maximum(stft_power, 0.0)) * _magnitude_scale(p['n_fft'])
  # Griffin-Lim needs well-overlapping windows; the analysis hop may be close to n_fft (tiny: 400 of 512), so
  # resynthesize on a finer hop, interpolating magnitudes between the analysis frame centres (i + 1/2) * hop.
  ratio = _resynthesis_ratio(hop, p['n_fft'])
  fine_hop = hop // ratio
  fine_centres = np.arange(num * ratio + 1) * fine_hop
  coarse_centres = (np.arange(num) + 0.5) * hop
  fine = np.stack([np.interp(fine_centres, coarse_centres, row) for row in magnitude])
  wave = librosa.griffinlim(fine, n_iter=n_iter, hop_length=fine_hop, n_fft=p['n_fft'], window=_WINDOW,
                            center=True, pad_mode='constant', length=num * hop,
                            random_state=np.random.default_rng(seed)).astype(np.float32)
  return np.clip(wave, -1.0, 1.0)


def frame_rms(wave: np.ndarray, samples_per_frame: int) -> np.ndarray:
  """RMS amplitude of consecutive frames: float [..., S] -> [..., S // samples_per_frame]."""
  wave = np.asarray(wave, np.float32)
  num = wave.shape[-1] // samples_per_frame
  frames = wave[..., :num * samples_per_frame].reshape(wave.shape[:-1] + (num, samples_per_frame))
  return np.sqrt(np.mean(frames**2, axis=-1))
