"""Neural vocoder: normalized log-mel [B, T_a, n_mels] -> waveform [B, S] at data.sample_rate, in the style of Vocos
(Siuzdak 2023), trained by `vocoder_loss`.

    mel --Conv1d(k)--> ConvNeXt blocks (depthwise conv k, LayerNorm, MLP, layer scale) at the mel frame rate
        --> LayerNorm, Dense --> per mel frame, `ratio` STFT frames of log-magnitude and phase (angle)
        --> inverse STFT (windowed overlap-add, `avdiff.models.spectral.istft`) --> waveform

Every layer runs at the mel frame rate (40 Hz at the tiny config): the network never upsamples in time, the
inverse STFT does. The STFT is the data's (n_fft, periodic Hann window) on the synthesis hop
(`avdiff.data.audio.synthesis_hop`: the mel hop divided by `ratio`, so frames overlap by >= 75%; the mel hop of the
tiny config, 400 of 512 samples, overlaps too little for a well-conditioned inverse). Fine frame r of mel frame i is
centred on sample (i * ratio + r + 1/2) * synthesis hop, symmetric about the mel frame's centre (i + 1/2) * mel hop,
so the waveform lies on the mel clock: T_a frames -> S = T_a * mel hop samples.

Loss (no adversarial term: Vocos trains with multi-period and multi-resolution discriminators, which would
several-fold the cost of a step on 2 CPU cores; this model is meant to train in minutes): multi-resolution STFT
magnitude loss (spectral convergence + L1 of log magnitudes at each of model.vocoder.resolutions), plus
model.vocoder.mel_weight x L1 between the normalized log-mel of the output and of the target (`spectral.log_mel`,
the data's analysis), plus model.vocoder.phase_weight x `phase_advance_loss`. Magnitude losses leave the phase
free, and without a discriminator nothing else asks partials to keep their frequency from frame to frame; with the
phase-advance loss pyin finds fewer voiced frames where the original has none and more where it has some
(benchmarks/vocoder.md, the no_phase_loss row).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from avdiff import config_lib
from avdiff.data import audio as audio_lib
from avdiff.models import layers
from avdiff.models import spectral

# Largest predicted magnitude (units: a full-scale sine = 1 in its bin), about +20 dB: a bound on exp() overflow.
_MAX_LOG_MAGNITUDE = 2.3
# Initial log-magnitude (bias of the head): -60 dB per bin, so the untrained vocoder starts quiet, not at full scale.
_INITIAL_LOG_MAGNITUDE = -6.9


class Norm(nnx.Module):
  """LayerNorm over the last axis with per-channel scale and bias."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.scale = layers.param(rngs, nnx.initializers.ones, (width,), (None,), jnp.float32)
    self.bias = layers.param(rngs, layers.zeros_init, (width,), (None,), jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    return layers.layer_norm(x) * self.scale[...] + self.bias[...]


class Conv1d(nnx.Module):
  """'SAME' 1-D convolution over time, [B, T, C_in] -> [B, T, C_out]; depthwise (one filter per channel) when
  `depthwise` (then C_out = C_in)."""

  def __init__(self, c_in: int, c_out: int, kernel: int, *, rngs: nnx.Rngs, depthwise: bool = False):
    self.groups = c_in if depthwise else 1
    init = nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
    self.kernel = layers.param(rngs, init, (kernel, c_in // self.groups, c_out), (None, None, None), jnp.float32)
    self.bias = layers.param(rngs, layers.zeros_init, (c_out,), (None,), jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, self.kernel[...], (1,), 'SAME', dimension_numbers=('NWC', 'WIO', 'NWC'),
                                     feature_group_count=self.groups)
    return y + self.bias[...]


class ConvNeXtBlock(nnx.Module):
  """x + gamma * MLP(LayerNorm(depthwise_conv(x))) on [B, T, width]; gamma starts at 1 / depth (layer scale)."""

  def __init__(self, width: int, kernel: int, hidden: int, depth: int, *, rngs: nnx.Rngs):
    self.conv = Conv1d(width, width, kernel, rngs=rngs, depthwise=True)
    self.norm = Norm(width, rngs=rngs)
    self.up = layers.Dense(width, hidden, (None, None), rngs=rngs)
    self.down = layers.Dense(hidden, width, (None, None), rngs=rngs)
    self.gamma = nnx.Param(jnp.full((width,), 1.0 / depth, jnp.float32), out_sharding=(None,), eager_sharding=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.down(jax.nn.gelu(self.up(self.norm(self.conv(x)))))
    return x + self.gamma[...] * h


class Vocoder(nnx.Module):
  """Normalized log-mel [B, T_a, n_mels] -> waveform float32 [B, T_a * mel hop] (see the module docstring).

  Attributes: n_fft (STFT size, = data.n_fft), hop (synthesis hop, samples), ratio (STFT frames per mel frame),
  mel_hop (samples per mel frame)."""

  def __init__(self, data_cfg: ml_collections.ConfigDict, vocoder_cfg: ml_collections.ConfigDict, *,
               rngs: nnx.Rngs):
    v = vocoder_cfg
    self.n_fft = int(data_cfg.n_fft)
    self.mel_hop = config_lib.mel_hop(data_cfg)
    self.hop = audio_lib.synthesis_hop(data_cfg)
    self.ratio = self.mel_hop // self.hop
    self.bins = self.n_fft // 2 + 1
    self.scale = audio_lib.magnitude_scale(self.n_fft)
    self.embed = Conv1d(int(data_cfg.n_mels), v.width, v.kernel, rngs=rngs)
    self.embed_norm = Norm(v.width, rngs=rngs)
    hidden = int(round(v.width * v.mlp_ratio))
    self.blocks = nnx.List([ConvNeXtBlock(v.width, v.kernel, hidden, v.depth, rngs=rngs) for _ in range(v.depth)])
    self.out_norm = Norm(v.width, rngs=rngs)
    # Per mel frame: ratio frames x (log-magnitude, phase) x bins.
    self.head = layers.Dense(v.width, (self.ratio, 2, self.bins), (None, None, None, None), rngs=rngs)
    self.head.bias.value = self.head.bias.value.at[:, 0].set(_INITIAL_LOG_MAGNITUDE)

  def spectrum(self, mel: jax.Array) -> jax.Array:
    """Complex STFT [B, T_a * ratio, n_fft // 2 + 1] (magnitudes on the waveform's scale) of a mel [B, T_a, n_mels]."""
    x = self.embed_norm(self.embed(mel.astype(jnp.float32)))
    for block in self.blocks:
      x = block(x)
    out = self.head(self.out_norm(x))  # [B, T_a, ratio, 2, bins]
    out = out.reshape(out.shape[0], out.shape[1] * self.ratio, 2, self.bins)
    magnitude = jnp.exp(jnp.minimum(out[:, :, 0], _MAX_LOG_MAGNITUDE)) * self.scale
    phase = out[:, :, 1]
    return jax.lax.complex(magnitude * jnp.cos(phase), magnitude * jnp.sin(phase))

  def __call__(self, mel: jax.Array) -> jax.Array:
    """mel [B, T_a, n_mels] -> waveform float32 [B, T_a * mel hop] (not clipped)."""
    spec = self.spectrum(mel)
    return spectral.istft(spec, self.n_fft, self.hop, mel.shape[1] * self.mel_hop, self.hop // 2)


def build_vocoder(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> Vocoder:
  return Vocoder(config.data, config.model.vocoder, rngs=rngs)


def stft_loss(output: jax.Array, target: jax.Array, resolutions) -> tuple[jax.Array, dict]:
  """Multi-resolution STFT magnitude loss of waveforms [B, S]: per (n_fft, hop) in resolutions, spectral
  convergence ||(|Y| - |X|)||_F / ||X||_F + mean |log |Y| - log |X|| (magnitudes floored at 1e-5); the mean over
  resolutions, and its two parts ('spectral_convergence', 'log_magnitude')."""
  sc, lm = 0.0, 0.0
  for n_fft, hop in resolutions:
    y = jnp.abs(spectral.stft(output, int(n_fft), int(hop)))
    x = jnp.abs(spectral.stft(target, int(n_fft), int(hop)))
    sc = sc + jnp.sqrt(jnp.sum(jnp.square(y - x))) / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(x))), 1e-5)
    lm = lm + jnp.mean(jnp.abs(jnp.log(jnp.maximum(y, 1e-5)) - jnp.log(jnp.maximum(x, 1e-5))))
  sc, lm = sc / len(resolutions), lm / len(resolutions)
  return sc + lm, {'spectral_convergence': sc, 'log_magnitude': lm}


def phase_advance_loss(output: jax.Array, target: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """Error of the phase advance from one STFT frame to the next (the instantaneous frequency) of waveforms [B, S]:
  the mean of 1 - cos(advance(output) - advance(target)) over bins and frames, weighted by the target's
  |X_t| |X_t-1|. It is blind to a constant phase offset of a partial, which no mel determines, and wraps by itself
  (cos), so it rewards partials that keep their frequency from frame to frame (what a pitch tracker reads)."""
  y, x = spectral.stft(output, n_fft, hop), spectral.stft(target, n_fft, hop)
  advance_y = y[..., 1:, :] * jnp.conj(y[..., :-1, :])
  advance_x = x[..., 1:, :] * jnp.conj(x[..., :-1, :])
  weight = jnp.abs(advance_x)
  cos = jnp.real(advance_y * jnp.conj(advance_x)) / (jnp.abs(advance_y) * weight + 1e-8)
  return jnp.sum(weight * (1.0 - cos)) / jnp.maximum(jnp.sum(weight), 1e-8)


def mel_l1(output: jax.Array, target: jax.Array, data_cfg: ml_collections.ConfigDict) -> jax.Array:
  """Mean |log-mel(output) - log-mel(target)| of waveforms [B, S], normalized log-mel units (1 = 40 dB with the
  default -80 dB floor)."""
  return jnp.mean(jnp.abs(spectral.log_mel(output, data_cfg) - spectral.log_mel(target, data_cfg)))


def vocoder_loss(vocoder: Vocoder, mel: jax.Array, wave: jax.Array, config: ml_collections.ConfigDict
                 ) -> tuple[jax.Array, dict]:
  """(loss, metrics) of the vocoder on mel [B, T_a, n_mels] and its waveform [B, T_a * mel hop]: multi-resolution
  STFT loss + model.vocoder.mel_weight x mel L1 (metrics 'stft', 'mel_l1', 'spectral_convergence',
  'log_magnitude')."""
  v = config.model.vocoder
  output = vocoder(mel)
  stft, parts = stft_loss(output, wave, v.resolutions)
  mel_err = mel_l1(output, wave, config.data)
  loss, metrics = stft + v.mel_weight * mel_err, dict(parts, stft=stft, mel_l1=mel_err)
  if v.phase_weight > 0:
    phase = phase_advance_loss(output, wave, *v.phase_resolution)
    loss, metrics = loss + v.phase_weight * phase, dict(metrics, phase_advance=phase)
  return loss, metrics
