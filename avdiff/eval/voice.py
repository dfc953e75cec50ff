"""How much of a voice survives mel -> waveform: pitch (f0) and voicing of a resynthesized waveform against the
original, by librosa.pyin, and the mel error of the waveform re-analysed into log-mel.

    reference = voice.pitch(original, sample_rate)         # (f0 Hz [F], voiced bool [F]) of the ground truth
    scores = voice.score_clip(resynthesized, mel, reference, data_cfg)
    voice.mean_scores([scores, ...])

pyin searches FMIN_HZ-FMAX_HZ (the `talking` voices lie at 95-260 Hz with per-syllable jitter and glides) with a
frame of FRAME_SECONDS and a hop of HOP_SECONDS, both rounded to samples at the clip's rate. Per clip:
  f0_cents          median |1200 log2(f0 / f0_ref)| over the frames voiced in both (NaN when there is none; an
                    octave error counts 1200 cents)
  gross_pitch_error fraction of the frames voiced in both whose f0 is off by more than 20% (~316 cents), the usual
                    GPE of pitch tracking (NaN when none is voiced in both)
  voiced_precision  frames voiced in both / frames voiced in the resynthesis (NaN when it has none)
  voiced_recall     frames voiced in both / frames voiced in the original
  voiced_accuracy   frames where the two voicing decisions agree / all frames
  mel_l1            mean |log-mel(resynthesis) - mel| (normalized log-mel units: 1 = 40 dB at an -80 dB floor)
"""

from __future__ import annotations

import librosa
import ml_collections
import numpy as np

from avdiff.data import audio as audio_lib

FMIN_HZ = 60.0
FMAX_HZ = 400.0
FRAME_SECONDS = 0.064  # 1024 samples at 16 kHz: more than two periods of the lowest f0 searched.
HOP_SECONDS = 0.01
SCORES = ('f0_cents', 'gross_pitch_error', 'voiced_precision', 'voiced_recall', 'voiced_accuracy', 'mel_l1')


def pitch(wave: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
  """(f0 float [F] in Hz (NaN where unvoiced), voiced bool [F]) of a waveform [S] by librosa.pyin (module
  docstring: range, frame and hop)."""
  frame = int(round(FRAME_SECONDS * sample_rate))
  f0, voiced, _ = librosa.pyin(np.asarray(wave, np.float32), fmin=FMIN_HZ, fmax=FMAX_HZ, sr=sample_rate,
                               frame_length=frame, hop_length=int(round(HOP_SECONDS * sample_rate)))
  return f0, np.asarray(voiced, bool)


def pitch_agreement(reference: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]) -> dict:
  """f0_cents, gross_pitch_error, voiced_precision, voiced_recall, voiced_accuracy of `other` against `reference`
  (each `pitch`'s output for waveforms of one length)."""
  (f0_ref, v_ref), (f0, v) = reference, other
  both = v_ref & v
  cents = np.abs(1200.0 * np.log2(f0[both] / f0_ref[both])) if both.any() else np.array([np.nan])
  gross = float(np.mean(np.abs(f0[both] / f0_ref[both] - 1.0) > 0.2)) if both.any() else float('nan')
  return {'f0_cents': float(np.median(cents)), 'gross_pitch_error': gross,
          'voiced_precision': float(both.sum() / v.sum()) if v.any() else float('nan'),
          'voiced_recall': float(both.sum() / v_ref.sum()) if v_ref.any() else float('nan'),
          'voiced_accuracy': float(np.mean(v_ref == v))}


def mel_error(wave: np.ndarray, mel: np.ndarray, data_cfg: ml_collections.ConfigDict) -> float:
  """Mean |log_mel(wave) - mel|: waveform [S] at data_cfg.sample_rate against normalized log-mel [T_a, n_mels]."""
  return float(np.mean(np.abs(audio_lib.log_mel(wave, data_cfg) - np.asarray(mel, np.float32))))


def score_clip(wave: np.ndarray, mel: np.ndarray, reference: tuple[np.ndarray, np.ndarray],
               data_cfg: ml_collections.ConfigDict) -> dict:
  """SCORES of a waveform [S] made from mel [T_a, n_mels], against the original's `pitch` (reference)."""
  return dict(pitch_agreement(reference, pitch(wave, int(data_cfg.sample_rate))),
              mel_l1=mel_error(wave, mel, data_cfg))


def mean_scores(scores: list[dict]) -> dict:
  """Mean of each of SCORES over clips, NaN-skipping (f0_cents of a clip with no frame voiced in both is left out;
  'f0_clips' counts the clips that had one)."""
  out = {}
  for name in SCORES:
    values = np.asarray([s[name] for s in scores], np.float64)
    out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float('nan')
  out['f0_clips'] = int(sum(np.isfinite(s['f0_cents']) for s in scores))
  return out
