"""Input pipeline: grain over a TFDS data source -> host-local numpy batches -> global arrays on the mesh.

Order. The split is shuffled with the seed (a fresh permutation every epoch) into one global stream of examples;
global batch b is stream elements [b * B, (b + 1) * B), and process p reads only its contiguous slice
[b * B + p * B / P, b * B + (p + 1) * B / P) of it (B: global batch, P: process count). The global batch is
therefore the same whatever the number of processes or devices, and each process loads only its share.

Resume. `get_state()` returns the iterator position as bytes (a small JSON document); `set_state` on a pipeline
built with the same arguments makes the next batch exactly the one that would have come.

Host batch (numpy), per the batch contract: `video` uint8 [b, T, H, W, 3]; `audio_mel` float32 [b, T_a, n_mels];
`label` int32 [b]; `audio` float32 [b, S] when `with_waveform`; ground truth where the dataset has it:
`mouth_open` float32 [b, T], `mouth_box` int32 [b, 4], `impact` float32 [b, T]. With a text model
(model.text.encoder) the captions as `avdiff.data.text_inputs` writes them: `text` int32 [b, L] (byte or
SentencePiece ids), or `text_embeddings` float32 [b, L, D] and `text_mask` bool [b, L] (a frozen encoder's).
Over a cached latent dataset (`source`, `avdiff.data.latents`): `video_latent` and `audio_latent` in place of
`video`, `audio_mel` and `audio`, with `label` and the text keys. b = global batch / process count.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Iterator, Optional, Sequence

import grain
import jax
import ml_collections
import numpy as np

from avdiff import config_lib
from avdiff import console
from avdiff.data import builders
from avdiff.data import frames
from avdiff.data import text_inputs

_GROUND_TRUTH = {'mouth_open': np.float32, 'mouth_box': np.int32, 'impact': np.float32}


class _ProcessSlice(grain.MapDataset):
  """Local element j of process p: global element (j // b) * B + p * b + j % b (b = B / P)."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, process_index: int, process_count: int):
    super().__init__(parent)
    self._global = global_batch
    self._local = global_batch // process_count
    self._offset = process_index * self._local
    num_batches = len(parent) // global_batch
    self._length = sys.maxsize if len(parent) >= sys.maxsize else num_batches * self._local

  def __len__(self) -> int:
    return self._length

  def __str__(self) -> str:
    return f'_ProcessSlice(global={self._global}, local={self._local}, offset={self._offset})'

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, within = divmod(index, self._local)
    return self._parent[batch * self._global + self._offset + within]


class _DropWords:
  """Caption augmentation (diffusion.word_dropout): each whitespace-separated word of the example's caption is left
  out with probability p (a caption left with no word is the null prompt)."""

  def __init__(self, p: float):
    self._p = float(p)

  def __call__(self, example: dict, rng: np.random.Generator) -> dict:
    caption = example['caption']
    words = (caption.decode('utf-8') if isinstance(caption, bytes) else str(caption)).split()
    kept = [w for w, u in zip(words, rng.random(len(words))) if u >= self._p]
    return {**example, 'caption': ' '.join(kept)}


class _ToContract:
  """Stored example -> contract arrays (int16 PCM -> float32 waveform; for a text model the caption -> its
  `text_inputs` arrays; other text keys dropped)."""

  def __init__(self, with_waveform: bool, text: Optional[text_inputs.TextInputs] = None):
    self._with_waveform = with_waveform
    self._text = text

  def __call__(self, example: dict) -> dict:
    if 'video_latent' in example:  # A cached latent dataset (avdiff.data.latents): no pixels, no waveform.
      out = {k: np.asarray(example[k], np.float32) for k in ('video_latent', 'audio_latent')}
    else:
      out = {'video': np.asarray(example['video'], np.uint8),
             'audio_mel': np.asarray(example['audio_mel'], np.float32)}
      if self._with_waveform:
        out['audio'] = np.asarray(example['audio'], np.float32) / 32767.0
    out['label'] = np.int32(example['label'])
    for key, dtype in _GROUND_TRUTH.items():
      if key in example:
        out[key] = np.asarray(example[key], dtype)
    if self._text is not None:
      caption = example['caption']
      caption = caption.decode('utf-8') if isinstance(caption, bytes) else str(caption)
      # A caption without a stored embedding (the dataset changed since the table was written) raises PromptError.
      out.update({k: v[0] for k, v in self._text([caption]).items()})
    return out


class InputPipeline:
  """Iterable of host-local numpy batches of one split with exact, serializable iterator state.

  Args:
    config: full avdiff config (uses config.data, config.seed, config.train.global_batch_size).
    split: 'train' | 'validation' | 'test'.
    shuffle: default config.data.shuffle for 'train', False otherwise.
    num_epochs: passes over the split; None -> config.data.num_epochs for 'train' (-1 = forever), 1 otherwise.
    process_index, process_count: default jax.process_index() / jax.process_count().
    seed: shuffle seed; default config.seed.
    batch_size: global batch size; default config.train.global_batch_size. Must divide by process_count.
    with_waveform: add `audio` [b, S]; default config.data.with_waveform.
    source: random-access examples to read instead of the dataset's split, in its order (a cached latent dataset,
      `avdiff.data.latents`: its batches hold `video_latent` float32 [b, T_l, H_l, W_l, C_v] and `audio_latent`
      float32 [b, T_al, F_l, C_a] in place of `video`, `audio_mel` and `audio`).
  """

  def __init__(self, config: ml_collections.ConfigDict, split: str, *, shuffle: Optional[bool] = None,
               num_epochs: Optional[int] = None, process_index: Optional[int] = None,
               process_count: Optional[int] = None, seed: Optional[int] = None, batch_size: Optional[int] = None,
               with_waveform: Optional[bool] = None, source: Optional[Any] = None):
    d = config.data
    self.split = split
    self.shuffle = bool(d.shuffle and split == 'train') if shuffle is None else bool(shuffle)
    if num_epochs is None:
      num_epochs = d.num_epochs if split == 'train' else 1
    self.num_epochs = None if num_epochs is None or num_epochs < 0 else int(num_epochs)
    self.process_index = jax.process_index() if process_index is None else int(process_index)
    self.process_count = jax.process_count() if process_count is None else int(process_count)
    self.seed = int(config.seed if seed is None else seed)
    self.global_batch_size = int(config.train.global_batch_size if batch_size is None else batch_size)
    if self.global_batch_size % self.process_count:
      raise ValueError(f'Global batch {self.global_batch_size} is not divisible by {self.process_count} processes')
    self.local_batch_size = self.global_batch_size // self.process_count
    self.with_waveform = bool(d.with_waveform if with_waveform is None else with_waveform)
    self.source = builders.load_source(config, split) if source is None else source
    if len(self.source) < self.global_batch_size:
      raise console.UserError(f'split {split!r} of {d.dataset!r} has {len(self.source)} clips, fewer than one '
                              f'global batch ({self.global_batch_size}): add clips or lower train.global_batch_size')

    ds = grain.MapDataset.source(self.source)
    if self.shuffle:
      ds = ds.shuffle(seed=self.seed)
    ds = ds.repeat(self.num_epochs)
    ds = _ProcessSlice(ds, self.global_batch_size, self.process_index, self.process_count)
    encoder = config_lib.text_encoder(config)
    if encoder and 'caption' not in self.source[0]:
      raise console.UserError(
          f'model.text.encoder={encoder!r} needs captions in the examples of {d.dataset!r}, which have '
          f'{sorted(self.source[0])}: use a dataset with captions (data.attributes=\'independent\', or a folder '
          'whose sidecars have a caption)')
    if encoder and split == 'train' and config.diffusion.get('word_dropout', 0.0) > 0:
      # Seeded by the example's position in the repeated, sliced order: every epoch drops other words, and a
      # resumed run the same ones.
      ds = ds.random_map(_DropWords(config.diffusion.word_dropout), seed=self.seed)
    # Tokenizer / table read once here, not per example; a missing table is a UserError naming experiments.embed_text.
    ds = ds.map(_ToContract(self.with_waveform, text_inputs.TextInputs(config) if encoder else None))
    ds = ds.batch(self.local_batch_size, drop_remainder=True)
    num_threads = max(1, min(8, self.local_batch_size))
    iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(
        1, int(d.prefetch)) * self.local_batch_size))
    self.worker_count = int(d.worker_count)
    if self.worker_count > 0:  # Needs absl flags parsed (true under absl.app.run).
      iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count))
    self._dataset = ds
    self._iter_dataset = iter_ds
    self._iterator = iter(iter_ds)

  @property
  def num_batches(self) -> Optional[int]:
    """Batches per pass over all epochs (None when repeating forever)."""
    return None if self.num_epochs is None else len(self._dataset)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def close(self) -> None:
    """Stops prefetch threads / worker processes."""
    close = getattr(self._iterator, 'close', None)
    if close is not None:
      close()

  def _identity(self) -> dict[str, Any]:
    return dict(split=self.split, shuffle=self.shuffle, seed=self.seed, num_epochs=self.num_epochs,
                global_batch_size=self.global_batch_size, process_index=self.process_index,
                process_count=self.process_count, num_examples=len(self.source), worker_count=self.worker_count)

  def get_state(self) -> bytes:
    """Serialized iterator position (plus the arguments it is only valid for)."""
    return json.dumps({'pipeline': self._identity(), 'iterator': self._iterator.get_state()},
                      sort_keys=True).encode()

  def set_state(self, state: bytes) -> None:
    """Restores a position saved by `get_state` of a pipeline over the same data and global batch.

    The position is a global batch index: every process's local batch k is its slice of global batch k, so a
    position saved by any process of a run with another process count (an elastic resume) continues with the next
    global batch, no example repeated or skipped. Prefetch worker processes keep per-worker state: with them the
    process split must stay the same. Raises config_lib.ConfigError naming what changed.
    """
    saved = json.loads(bytes(state).decode())
    old, new = saved['pipeline'], self._identity()
    must_match = ['split', 'shuffle', 'seed', 'num_epochs', 'global_batch_size', 'num_examples']
    positional = set(saved['iterator']) == {'next_index'} and self.worker_count == 0
    if not positional:
      must_match += ['process_index', 'process_count', 'worker_count']
    changed = [f'{k}: {old.get(k)!r} when saved, {new.get(k)!r} now' for k in must_match if old.get(k) != new.get(k)]
    if changed:
      raise config_lib.ConfigError(
          f'The saved data position of the {self.split!r} split does not apply to this input pipeline ('
          + '; '.join(changed) + '). It counts global batches of one size over one shuffled order: keep '
          'train.global_batch_size, seed and the dataset of the run (and data.worker_count with prefetch workers), '
          'or start a new --workdir.')
    self._iterator.set_state(saved['iterator'])


@functools.lru_cache(maxsize=8)
def _video_to_float(sharding: jax.sharding.Sharding):
  return jax.jit(frames.to_float, out_shardings=sharding)


def to_device(host_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh,
              data_axes: Sequence[str] = ('data', 'fsdp')) -> dict[str, jax.Array]:
  """Global arrays from each process's local batch, split over the mesh's data axes.

  Args:
    host_batch: this process's batch (leading dimension b = global batch / process count).
    mesh: device mesh.
    data_axes: mesh axes the batch dimension is split over (config.mesh.data_axes; axes not in the mesh are
      ignored).
  Returns:
    dict of jax.Array with leading dimension b * process_count, sharded as P(data_axes); `video` becomes
    float32 in [-1, 1] (converted on device, so uint8 crosses the host-device link).
  """
  axes = tuple(a for a in data_axes if a in mesh.axis_names)
  batch_spec = axes[0] if len(axes) == 1 else (axes or None)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(batch_spec))
  out = {}
  for key, value in host_batch.items():
    value = np.asarray(value)
    global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  if 'video' in out:
    out['video'] = _video_to_float(sharding)(out['video'])
  return out
