"""Sampling, shared by the trainer (periodic samples, in-loop scoring), evaluation and `experiments.sample`.

    model = sampling.load_model('runs/tiny')                    # config + DiT (EMA params) + stage-1 autoencoder
    clips = sampling.sample_clips(model, held_out, 'audio_to_video', seed=0)
    sampling.write_clips(model.config, clips, 'out/', 'a2v')    # h264 + AAC mp4

Layers, bottom up:
  codec      `to_latents` / `from_latents`: model frames + log-mel <-> the latents the DiT denoises (identity for
             the patch encoder, the frozen autoencoder otherwise, its channels standardized with
             model.latent_norm='channel': `normalize_latents` / `denormalize_latents`).
  batch      `sample_batch`: pure and jittable; conditioning arrays [B, ...] -> diffusion.sample (the sampler
             algorithm, on latents) -> decoded frames + mel.
  cache      `jitted_sample_batch`: THE cache of jitted `sample_batch`es, one per (model structure, autoencoder,
             config, mode, mesh), so evaluation and every in-loop evaluation step reuse one compilation.
  waveform   `waveforms`: sampled mel -> waveform, by the trained neural vocoder when model.vocoder.use
             (`load_vocoder`, `vocode`; avdiff.models.vocoder) or by Griffin-Lim (the default; no training).
  clips      `sample_clips`: host clips in (labels; for conditional modes their frames / audio), host clips out
             (uint8 frames, waveform: `waveforms` of the sampled mel, or the conditioning audio). This is the sample
             function evaluators are handed (`avdiff.eval.runner.SampleFn`, bound to a `Model`).
  files      `Model` / `load_model` (the one way to restore a run's model for inference), `write_clips`,
             `sample_workdir` (the sample command).

Modes: 'joint' (from labels alone), 'audio_to_video' (generated frames paired with the real audio),
'video_to_audio' (real frames paired with generated audio), 'continuation' (the first half of the latent frames of
both modalities given).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from avdiff import autoencoders
from avdiff import checkpoint
from avdiff import config_lib
from avdiff import diffusion
from avdiff import models
from avdiff import parallel
from avdiff import run_dir
from avdiff import vocoders
from avdiff.data import audio as audio_lib
from avdiff.data import av_io
from avdiff.data import builders
from avdiff.data import frames
from avdiff.data import text_inputs
from avdiff.models import attention
from avdiff.models import text as text_lib

MODES = diffusion.MODES  # joint, audio_to_video, video_to_audio, continuation


# ----------------------------------------------------------------------------- codec

def to_latents(config: ml_collections.ConfigDict, ae: Optional[nnx.Module], video: jax.Array,
               mel: jax.Array) -> dict:
  """video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels] -> latents {'video', 'audio'} (for the patch
  encoder the frames and mel themselves, audio with a channel axis [B, T_a, n_mels, 1])."""
  if ae is None or config.model.encoder == 'patch':
    return {'video': video.astype(jnp.float32), 'audio': mel.astype(jnp.float32)[..., None]}
  return normalize_latents(config, jax.lax.stop_gradient(ae.encode(video, mel)))


def from_latents(config: ml_collections.ConfigDict, ae: Optional[nnx.Module], latents: dict):
  """Latents -> (video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels])."""
  if ae is None or config.model.encoder == 'patch':
    return latents['video'], latents['audio'][..., 0]
  return ae.decode(denormalize_latents(config, latents))


def _latent_stats(config: ml_collections.ConfigDict) -> Optional[dict]:
  """{'video': (mean, std), 'audio': (mean, std)} float32 [C] with model.latent_norm='channel', else None."""
  if config_lib.latent_norm(config) == 'none':
    return None
  st = config.model.latent_stats
  if not st.video_std or not st.audio_std:
    raise config_lib.ConfigError("model.latent_norm='channel' needs model.latent_stats, which experiments.train "
                                 'measures when it caches the latents (a run records them in its config.json)')
  return {m: (jnp.asarray(st[f'{m}_mean'], jnp.float32), jnp.asarray(st[f'{m}_std'], jnp.float32))
          for m in ('video', 'audio')}


def normalize_latents(config: ml_collections.ConfigDict, latents: dict) -> dict:
  """The autoencoder's latents {'video' [..., C_v], 'audio' [..., C_a]} as the DiT sees them (model.latent_norm)."""
  stats = _latent_stats(config)
  if stats is None:
    return latents
  return {k: (v - stats[k][0]) / stats[k][1] for k, v in latents.items()}


def denormalize_latents(config: ml_collections.ConfigDict, latents: dict) -> dict:
  """Inverse of `normalize_latents`: the DiT's latents as the autoencoder decodes them."""
  stats = _latent_stats(config)
  if stats is None:
    return latents
  return {k: v * stats[k][1] + stats[k][0] for k, v in latents.items()}


# ----------------------------------------------------------------------------- sample_batch

def sample_batch(config: ml_collections.ConfigDict, dit: nnx.Module, ae: Optional[nnx.Module], label: jax.Array,
                 rng: jax.Array, mode: str = 'joint', cond_video: Optional[jax.Array] = None,
                 cond_mel: Optional[jax.Array] = None, text: Optional[text_lib.Text] = None, prefix_frames: int = 0,
                 windows: Optional[tuple] = None):
  """Pure, jittable. label int32 [B]; for the conditional modes cond_video float [B, T, H, W, 3] in [-1, 1] and
  cond_mel [B, T_a, n_mels]; text: the prompts of a text model (`text_lib.Text`: token ids int32 [B, L], or
  precomputed embeddings [B, L, D] with their mask [B, L]) -> (video float [B, T, H, W, 3] in [-1, 1], mel
  [B, T_a, n_mels]).

  Windows of a long clip (`avdiff.long_clips`): prefix_frames > 0 (static, video frames, a multiple of the
  autoencoder's temporal stride) in audio_to_video / video_to_audio: the first prefix_frames frames of the generated
  modality are known (the previous window's tail, at the start of cond_video / cond_mel) and kept. windows=
  (num_windows, hop_frames[, share_above]): the batch holds num_windows consecutive windows of each clip, hop_frames
  video frames apart, denoised together and averaged where they overlap after every step, sharing their still
  appearance while t >= share_above (`diffusion.fuse_overlaps`).
  """
  if mode not in MODES:
    raise ValueError(f'sampling mode {mode!r} is not one of {MODES}')
  lay = config_lib.layout(config)
  cond, cond_frames = None, 0
  if mode != 'joint':
    given = to_latents(config, ae, cond_video, cond_mel)
    cond = {'audio_to_video': {'audio': given['audio']}, 'video_to_audio': {'video': given['video']},
            'continuation': given}[mode]
    cond_frames = lay.video_latent[0] // 2 if mode == 'continuation' else 0
    if prefix_frames and mode != 'continuation':
      cond, cond_frames = given, prefix_frames * lay.video_latent[0] // config_lib.num_frames(config.data)
  num = label.shape[0]
  shapes = {'video': (num,) + tuple(lay.video_latent), 'audio': (num,) + tuple(lay.audio_latent)}
  fuse = None
  if windows is not None:
    num_windows, hop_frames, *share = windows
    fuse = diffusion.fuse_overlaps(num_windows, hop_frames * lay.video_latent[0] // config_lib.num_frames(config.data),
                                   *share)
  null_text = None if text is None else text_lib.null_like(text)
  latents = diffusion.sample(dit, shapes, label, rng, config.diffusion, mode=mode, cond=cond, cond_frames=cond_frames,
                             null_label=config.model.num_classes, text=text, null_text=null_text, fuse=fuse)
  return from_latents(config, ae, latents)


# ----------------------------------------------------------------------------- sampler cache

_SAMPLERS: dict = {}  # (graphdef, ae graphdef, mode, config JSON, mesh, prefix, windows) -> jitted sample_batch.
_MAX_SAMPLERS = 8


def jitted_sample_batch(config: ml_collections.ConfigDict, graphdef, ae_def, mode: str,
                        mesh: Optional[jax.sharding.Mesh] = None, prefix_frames: int = 0,
                        windows: Optional[tuple] = None):
  """jitted (dit state, ae state, label [B], rng, cond video [B, T, H, W, 3] | None, cond mel [B, T_a, n_mels] |
  None, prompts (`text_lib.Text`) | None) -> (video float [B, T, H, W, 3] in [-1, 1], mel [B, T_a, n_mels]);
  prefix_frames, windows: `sample_batch`'s (windows of a long clip). On `mesh` when given (the training loop's, or
  `load_model`'s: params may be sharded over processes) the result is replicated, so every process can read it, and
  with a context axis the sequence is split as in training.

  Built once per (model structure, config, mode, mesh, windows) and kept: evaluation samples each condition, and the
  training loop samples and scores at every eval step with the same structure, so none compiles it again.
  """
  key = (graphdef, ae_def, mode, config.to_json_best_effort(sort_keys=True), mesh, prefix_frames, windows)
  if key in _SAMPLERS:
    return _SAMPLERS[key]

  sequence = attention.sequence_parallel(config, mesh) if mesh is not None else None

  # With the sequence split over a context axis, attention splits the batch over the data axes: pad it to a multiple.
  multiple = int(np.prod([mesh.shape[a] for a in sequence.batch])) if sequence is not None else 1

  def run(st, ae_st, label, rng, cond_video, cond_mel, text):
    auto = nnx.merge(ae_def, ae_st) if ae_def is not None else None
    dit = nnx.merge(graphdef, st)
    if sequence is not None:  # A mesh with a context axis: the sequence split over it, as in training.
      dit.sequence_parallel = sequence
    num = label.shape[0]
    unit = windows[0] if windows is not None else 1  # Windows of a clip stay together: pad whole clips.
    pad = next(k * unit for k in range(multiple + 1) if (num + k * unit) % multiple == 0)
    if pad:
      grow = lambda x: None if x is None else jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
      label = jnp.pad(label, (0, pad), constant_values=config.model.num_classes)
      cond_video, cond_mel, text = grow(cond_video), grow(cond_mel), jax.tree.map(grow, text)
    video, mel = sample_batch(config, dit, auto, label, rng, mode, cond_video, cond_mel, text, prefix_frames, windows)
    return video[:num], mel[:num]

  if len(_SAMPLERS) >= _MAX_SAMPLERS:
    _SAMPLERS.pop(next(iter(_SAMPLERS)))
  rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()) if mesh is not None else None
  _SAMPLERS[key] = jax.jit(run, out_shardings=(rep, rep) if rep is not None else None)
  return _SAMPLERS[key]


# ----------------------------------------------------------------------------- clips

@dataclasses.dataclass
class Model:
  """A model to sample from: the run's config, the DiT with the params to use, the stage-1 autoencoder (None for
  the patch encoder), the checkpoint step they came from (None for in-memory models), the mesh its params live
  on (None: one device), and the neural vocoder (None: Griffin-Lim, or with model.vocoder.use the config's trained
  vocoder, loaded by `waveforms` on first use)."""
  config: ml_collections.ConfigDict
  dit: nnx.Module
  ae: Optional[nnx.Module] = None
  step: Optional[int] = None
  mesh: Optional[jax.sharding.Mesh] = None
  vocoder: Optional[nnx.Module] = None


# ----------------------------------------------------------------------------- waveform

def load_vocoder(config: ml_collections.ConfigDict) -> Optional[nnx.Module]:
  """The config's trained neural vocoder with its EMA params when model.vocoder.use, else None (Griffin-Lim).
  Raises config_lib.ConfigError when its directory (`vocoders.directory`) holds no finished vocoder, naming the
  command that trains it, or one trained for other data / model.vocoder fields (naming them)."""
  if not vocoders.enabled(config):
    return None
  vocoder_dir = vocoders.directory(config)
  if vocoders.check(config, vocoder_dir) is None:
    raise config_lib.ConfigError(
        f'model.vocoder.use=True: no finished vocoder in {vocoder_dir} (fingerprint {vocoders.fingerprint(config)}); '
        '`python -m experiments.train_vocoder` with this config (and its --config.data.* / --config.model.vocoder.* '
        'overrides) trains it, or set --config.model.vocoder.use=False for Griffin-Lim')
  return checkpoint.restore_params(vocoder_dir, model=models.build_vocoder(config, nnx.Rngs(0)), ema=True)


@functools.partial(jax.jit, static_argnums=0)
def _vocode(graphdef, state, mel):
  return nnx.merge(graphdef, state)(mel)


def vocode(vocoder: nnx.Module, mel: np.ndarray) -> np.ndarray:
  """Neural vocoder on host mel float [B, T_a, n_mels] -> waveform float32 [B, T_a * mel hop], clipped to [-1, 1]
  (one compilation per model structure and shape)."""
  graphdef, state = nnx.split(vocoder)
  wave = jax.device_get(_vocode(graphdef, state, jnp.asarray(mel, jnp.float32)))
  return np.clip(np.asarray(wave, np.float32), -1.0, 1.0)


def waveforms(model: Model, mel: np.ndarray) -> np.ndarray:
  """Sampled mel float [B, T_a, n_mels] -> waveforms float32 [B, T_a * mel hop] in [-1, 1] at data.sample_rate:
  the neural vocoder with model.vocoder.use (loaded into model.vocoder on first use), else Griffin-Lim."""
  mel = np.asarray(mel, np.float32)
  if vocoders.enabled(model.config):
    if model.vocoder is None:
      model.vocoder = load_vocoder(model.config)
    return vocode(model.vocoder, mel)
  return np.stack([audio_lib.mel_to_waveform(m, model.config.data) for m in mel])


def label_clips(config: ml_collections.ConfigDict, num: int) -> list[builders.Clip]:
  """`num` conditioning clips for joint sampling: labels 0, 1, ... cycled over model.num_classes."""
  return [{'label': i % config.model.num_classes} for i in range(num)]


def prompt_clips(prompts: list[str], config: ml_collections.ConfigDict) -> list[builders.Clip]:
  """Conditioning clips from prompts (no label: the null label), validated before anything compiles: raises
  tokenizer.PromptError for an empty, over-long or non-string prompt, a prompt a 'precomputed' model's table has
  no embeddings of (naming experiments.embed_text --prompts), or when the model takes no text."""
  text_inputs.TextInputs(config).check(prompts)
  return [{'caption': p} for p in prompts]


def clip_text(config: ml_collections.ConfigDict, inputs: Optional[text_inputs.TextInputs],
              chunk: list[builders.Clip]) -> Optional[text_lib.Text]:
  """The clips' captions for the model (a clip without one: the null prompt), `text_inputs.model_text`; None for a
  model without text (inputs None)."""
  if inputs is None:
    return None
  return text_inputs.model_text(config, inputs([c.get('caption', '') for c in chunk]))


def clip_labels(config: ml_collections.ConfigDict, chunk: list[builders.Clip]) -> jax.Array:
  """int32 [B]: each clip's label; a clip without one (a prompt) gets the null label, and so does every clip of a
  model trained with label_dropout 1 (a text-only model never saw another)."""
  null = config.model.num_classes
  return jnp.asarray([null if config.diffusion.label_dropout >= 1.0 else c.get('label', null) for c in chunk],
                     jnp.int32)


def text_inputs_of(config: ml_collections.ConfigDict) -> Optional[text_inputs.TextInputs]:
  """The model's caption -> token reader (tokenizer / embedding table, read once), or None for a model without text."""
  return text_inputs.TextInputs(config) if config_lib.text_encoder(config) else None


def sample_clips(model: Model, clips: list[builders.Clip], mode: str, seed: int, batch_size: int = 8,
                 mesh: Optional[jax.sharding.Mesh] = None) -> list[builders.Clip]:
  """One sample per clip: video uint8 [T, H, W, 3] + waveform float32 [S] + label (+ the clip's mouth_box).

  Joint sampling reads only each clip's label; the conditional modes also its frames and audio (`audio_mel` if
  present, else the log-mel of `audio`). audio_to_video pairs the generated frames with the clip's own waveform,
  video_to_audio the clip's frames with the generated audio (`waveforms` of the generated mel, as for the others).
  mesh: see `jitted_sample_batch` (the training loop's); default the model's.
  """
  config = model.config
  mesh = mesh if mesh is not None else model.mesh
  if mode not in MODES:
    raise ValueError(f'sampling mode {mode!r} is not one of {MODES}')
  graphdef, state = nnx.split(model.dit)
  ae_def, ae_state = nnx.split(model.ae) if model.ae is not None else (None, None)
  sample = jitted_sample_batch(config, graphdef, ae_def, mode, mesh)
  inputs = text_inputs_of(config)  # Read once, not per batch.
  out = []
  rng = jax.random.key(seed)
  for s in range(0, len(clips), batch_size):
    chunk = clips[s:s + batch_size]
    label = clip_labels(config, chunk)
    cond_video = cond_mel = None
    if mode != 'joint':
      cond_video = frames.to_float(np.stack([c['video'] for c in chunk]))
      cond_mel = np.stack([c['audio_mel'] if 'audio_mel' in c else audio_lib.log_mel(c['audio'], config.data)
                           for c in chunk]).astype(np.float32)
    video, mel = jax.device_get(sample(state, ae_state, label, jax.random.fold_in(rng, s), cond_video, cond_mel,
                                       clip_text(config, inputs, chunk)))
    video, mel = frames.to_uint8(video), np.asarray(mel)
    waves = waveforms(model, mel) if mode != 'audio_to_video' else None
    for i, c in enumerate(chunk):
      audio = c['audio'] if mode == 'audio_to_video' else waves[i]
      gen = {'video': c['video'] if mode == 'video_to_audio' else video[i],
             'audio': np.asarray(audio, np.float32), 'label': c.get('label', config.model.num_classes)}
      if 'caption' in c:
        gen['caption'] = c['caption']
      if 'mouth_box' in c:
        gen['mouth_box'] = c['mouth_box']  # The model draws each speaker's face where the data does.
      out.append(gen)
  return out


# ----------------------------------------------------------------------------- files

def load_autoencoder(config: ml_collections.ConfigDict) -> Optional[nnx.Module]:
  """The stage-1 autoencoder of the config with its EMA params; None for the patch encoder. Its directory is
  model.autoencoder_workdir (a run trained by `experiments.train` records it there), else, or when that path is
  gone, the one found from the config's fingerprint (`avdiff.autoencoders.trained_dir`). Raises config_lib.ConfigError when that directory holds
  no finished autoencoder, or one trained for other data / model.ae fields (naming them)."""
  if config.model.encoder == 'patch':
    return None
  ae_dir = autoencoders.trained_dir(config)
  marker = autoencoders.check(config, ae_dir)
  # A directory named by hand may predate markers; a derived one is used only once its stage 1 finished.
  if marker is None and (not config.model.autoencoder_workdir or checkpoint.latest_step(ae_dir) is None):
    raise config_lib.ConfigError(
        f'model.encoder={config.model.encoder!r}: no finished autoencoder in {ae_dir} (fingerprint '
        f'{autoencoders.fingerprint(config)}); `python -m experiments.train` with this config trains it first')
  return checkpoint.restore_params(ae_dir, model=models.build_autoencoder(config, nnx.Rngs(0)), ema=True)


def param_shardings(config: ml_collections.ConfigDict, dit: nnx.Module, mesh: jax.sharding.Mesh):
  """The training shardings of the DiT's params on `mesh` (config.mesh.axis_rules): a pure-dict tree of
  NamedShardings, as `checkpoint.restore_params` takes it."""
  return parallel.named(mesh, parallel.param_specs(nnx.state(dit, nnx.Param), config.mesh.axis_rules, mesh))


def load_model(workdir: str, config: Optional[ml_collections.ConfigDict] = None, params: Optional[str] = None,
               step: Optional[int] = None, mesh: Optional[jax.sharding.Mesh] = None) -> Model:
  """The model of the run in `workdir` for inference: its config (W/config.json unless given), the DiT with the EMA
  or raw params (`params`, default config.eval.params) of checkpoint `step` (default: the newest readable one), and
  its autoencoder. mesh: restore the params straight into their training shardings on it (`param_shardings`; a
  model larger than one device's memory; every process calls this) and sample there; None: one device."""
  config = config if config is not None else checkpoint.load_config(workdir)
  params = params or config.eval.params
  if params not in ('ema', 'raw'):
    raise ValueError(f"params={params!r} is not 'ema' or 'raw'")
  abstract = nnx.eval_shape(lambda: models.build_dit(config, nnx.Rngs(0)))
  shardings = param_shardings(config, abstract, mesh) if mesh is not None else None
  dit, step = checkpoint.restore_latest_params(workdir, abstract, ema=params == 'ema', step=step, shardings=shardings)
  return Model(config, dit, load_autoencoder(config), step, mesh, load_vocoder(config))


def write_mp4(path: str, video: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int) -> None:
  """A local h264 + AAC file of uint8 frames [T, H, W, 3] and audio float [S] or [S, C] at sample_rate (NaN -> 0,
  clipped to [-1, 1]: a diverged sample still writes)."""
  wave = np.clip(np.nan_to_num(np.asarray(audio, np.float32)), -1.0, 1.0)
  av_io.write_video(path, video, wave, fps, sample_rate)


def write_clips(config: ml_collections.ConfigDict, clips: list[builders.Clip], out_dir: str, prefix: str,
                write: bool = True) -> list[str]:
  """Clips (uint8 frames, waveform) -> out_dir/<prefix>_<i>.mp4 (h264 + AAC at data.fps / data.sample_rate), and
  <prefix>_<i>.mp4.json with the clip's caption (its prompt) where it has one.
  out_dir may be on a bucket (gs://...): PyAV writes a local file, so the clips are staged in a temporary folder and
  copied up. write=False returns the paths only (processes other than the first in a multi-process run)."""
  names = [f'{prefix}_{i}.mp4' for i in range(len(clips))]
  if write:
    with run_dir.staged(out_dir) as local:
      for name, clip in zip(names, clips):
        write_mp4(os.path.join(local, name), clip['video'], clip['audio'], config.data.fps, config.data.sample_rate)
        if clip.get('caption'):  # The prompt, as the sidecar a folder dataset reads (avdiff.data.sidecar).
          with open(os.path.join(local, name + '.json'), 'w', encoding='utf-8') as f:
            json.dump({'caption': clip['caption']}, f)
  return [str(epath.Path(out_dir) / name) for name in names]


def sample_workdir(workdir: str, mode: str = 'joint', num: int = 8, split: str = 'test', seed: int = 0,
                   params: str = 'ema', step: Optional[int] = None,
                   config: Optional[ml_collections.ConfigDict] = None,
                   prompts: Optional[list[str]] = None, mesh: Optional[jax.sharding.Mesh] = None) -> list[str]:
  """Samples clips from the run in workdir and writes W/samples/<step>/<mode>_<i>.mp4 (and <mode>_<i>.mp4.json with
  the prompt, for a text model). config: the run's (default W/config.json).

  Joint samples: `num` per prompt of `prompts` when given (a text model); else a text model takes the captions of
  the first `num` clips of `split`, and a label model cycles the labels. The conditional modes take the first `num`
  clips of `split` (labels too), each with the prompt prompts[i % len(prompts)] instead of its caption when given.
  Prompts are checked (`prompt_clips`) before the model loads. mesh: `load_model`'s; with several processes each
  samples (the same clips) and process 0 writes.
  """
  config = config if config is not None else checkpoint.load_config(workdir)
  asked = prompt_clips(prompts, config) if prompts is not None else None
  model = load_model(workdir, config, params=params, step=step, mesh=mesh)
  if mode == 'joint' and asked is not None:
    given = [dict(c) for c in asked for _ in range(num)]
  elif mode == 'joint' and not config_lib.text_encoder(config):
    given = label_clips(model.config, num)
  else:
    given = builders.load_clips(model.config, split, num)
    if mode == 'joint':  # A text model: the clips' captions (and labels) only.
      given = [{k: c[k] for k in ('label', 'caption', 'mouth_box') if k in c} for c in given]
    for i, c in enumerate(given if asked is not None else ()):
      c['caption'] = asked[i % len(asked)]['caption']
  clips = sample_clips(model, given, mode, seed)
  return write_clips(model.config, clips, str(run_dir.RunDir(workdir).samples(model.step)), mode,
                     write=parallel.is_primary())
