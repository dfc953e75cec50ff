"""The caption -> embedding table of a frozen pretrained text encoder ('precomputed' text models): computed once by
`python -m experiments.embed_text` with Hugging Face `transformers`, stored next to the dataset, read by the input
pipeline and by sampling.

    python -m experiments.embed_text --config=configs/text.py --encoder=/models/t5-base --tag=t5_base
    table = text_embeddings.load(config)      # config.model.text.embeddings = 't5_base'
    emb, mask = table.lookup(['a blue round face, high voice, four syllables'])  # float32 [B, L, D], bool [B, L]

File: <dataset data_path>/text_embeddings/<tag>.npz (or model.text.embeddings itself, an absolute path), holding
`captions` str [U], `embeddings` [U, L, D] (float16; float32 where float16 would overflow), `mask` bool [U, L], and
`encoder` (the model's path as given). Each entry is the encoder's last hidden state, padding zeroed and masked. L
is the --max_length of the command for every entry, so embedding more prompts later keeps the shapes a model was
built for; a text longer than L tokens is an error, never cut (as with the byte tokenizer). The empty caption needs
no entry: it is the null text, every token masked (`avdiff.models.text.null_like`).

Precomputed rather than run in the train step: the encoder is frozen and the distinct captions are few (a few
hundred in `talking`), so the trainer needs neither torch nor the encoder's weights, and no step pays for it.
`transformers` and torch are imported only by `embed` (test / development dependencies, not runtime ones).
"""

from __future__ import annotations

import functools
import io
import os
from typing import Optional, Sequence

import ml_collections
import numpy as np
from etils import epath

from avdiff import config_lib
from avdiff import console
from avdiff.data import builders
from avdiff.data import tokenizer

_COMMAND = 'python -m experiments.embed_text'


class Table:
  """Caption -> (embeddings float [L, D], mask bool [L]) of one encoder. Plain numpy arrays and a dict, so the input
  pipeline's map function stays picklable (grain may send it to worker processes).

  path: the .npz it was read from; tag: model.text.embeddings; encoder: the model that computed it.
  captions: U texts; embeddings [U, L, D]; mask bool [U, L].
  """

  def __init__(self, path: str, tag: str, encoder: str, captions: Sequence[str], embeddings: np.ndarray,
               mask: np.ndarray):
    self.path, self.tag, self.encoder = path, tag, encoder
    self.captions = list(captions)
    self.embeddings, self.mask = embeddings, np.asarray(mask, bool)
    self.index = {c: i for i, c in enumerate(self.captions)}

  @property
  def length(self) -> int:
    """L: tokens per entry."""
    return self.embeddings.shape[1]

  @property
  def dim(self) -> int:
    """D: the encoder's width."""
    return self.embeddings.shape[2]

  def missing(self, captions: Sequence[str]) -> list[str]:
    """The distinct non-empty captions that have no entry, in order of first appearance."""
    return list(dict.fromkeys(c for c in captions if c and c not in self.index))

  def lookup(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Captions (B strings; '' is the null text) -> (embeddings float32 [B, L, D], mask bool [B, L]).

    Raises tokenizer.PromptError naming the captions without an entry and the command that embeds them.
    """
    missing = self.missing(captions)
    if missing:
      shown = ', '.join(repr(c) for c in missing[:3]) + (f' and {len(missing) - 3} more' if len(missing) > 3 else '')
      raise tokenizer.PromptError(
          f'{len(missing)} prompt(s) not in the text-embedding table {self.path}: {shown}. Embed them with '
          f'`{_COMMAND} --config=<the run\'s config> --encoder={self.encoder} --tag={self.tag} --prompts=FILE` '
          '(one prompt a line; the entries already there are kept)')
    emb = np.zeros((len(captions), self.length, self.dim), np.float32)
    mask = np.zeros((len(captions), self.length), bool)
    for i, caption in enumerate(captions):
      if caption:
        emb[i], mask[i] = self.embeddings[self.index[caption]], self.mask[self.index[caption]]
    return emb, mask


def path_for(config: ml_collections.ConfigDict, tag: str) -> str:
  """The table file of `tag`: <data_path of config.data's dataset>/text_embeddings/<tag>.npz, or `tag` itself when
  it is an absolute path (or a gs:// one)."""
  if not tag:
    raise config_lib.ConfigError("model.text.encoder='precomputed' needs model.text.embeddings: the --tag given to "
                                 f'`{_COMMAND}` (or the absolute path of its table)')
  if os.path.isabs(tag) or '://' in tag:
    return tag
  if os.sep in tag or '/' in tag:
    raise config_lib.ConfigError(f'model.text.embeddings={tag!r} is neither a name (a file under the dataset '
                                 'directory) nor an absolute path')
  return str(epath.Path(builders.get_builder(config).data_path) / 'text_embeddings' / f'{tag}.npz')


def table_path(config: ml_collections.ConfigDict) -> str:
  """The table file named by config.model.text.embeddings (see `path_for`)."""
  return path_for(config, config.model.text.embeddings)


def write(path: str, encoder: str, captions: Sequence[str], embeddings: np.ndarray, mask: np.ndarray) -> None:
  """Writes a table: captions U strings, embeddings [U, L, D], mask bool [U, L]. Written to a temporary file first
  and renamed, so a reader never sees half a table."""
  buffer = io.BytesIO()
  np.savez(buffer, captions=np.asarray(list(captions), dtype=str), embeddings=embeddings,
           mask=np.asarray(mask, bool), encoder=np.asarray(encoder))
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = target.parent / (target.name + '.tmp')
  tmp.write_bytes(buffer.getvalue())
  tmp.replace(target)


def _read(path: str, tag: str) -> Table:
  with epath.Path(path).open('rb') as f:
    data = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return Table(path, tag, str(data['encoder']), data['captions'].tolist(), data['embeddings'], data['mask'])


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, tag: str, mtime: float) -> Table:
  del mtime  # Part of the key only: a table rewritten since (more prompts embedded) is read again.
  return _read(path, tag)


def load(config: ml_collections.ConfigDict) -> Table:
  """The table of config.model.text.embeddings (read once per file version). Raises console.UserError when it does
  not exist (naming the command that writes it) and config_lib.ConfigError when its shape is not the model's
  (model.text.embed_len, embed_dim)."""
  tag = config.model.text.embeddings
  path = table_path(config)
  p = epath.Path(path)
  if not p.exists():
    raise console.UserError(
        f'no text embeddings {tag!r} for dataset {config.data.dataset!r} ({path} does not exist): compute them '
        f'once with `{_COMMAND} --config=<this config> --encoder=/path/to/a/local/hf_model --tag={tag}`')
  table = _read_cached(path, tag, p.stat().mtime)
  t = config.model.text
  if (table.length, table.dim) != (t.embed_len, t.embed_dim):
    raise config_lib.ConfigError(
        f'the text embeddings {path} hold L={table.length} tokens of width D={table.dim}, but the model takes '
        f'model.text.embed_len={t.embed_len}, embed_dim={t.embed_dim}: train with '
        f'--config.model.text.embed_len={table.length} --config.model.text.embed_dim={table.dim}')
  return table


def dataset_captions(config: ml_collections.ConfigDict, splits: Optional[Sequence[str]] = None) -> list[str]:
  """The distinct non-empty captions of `splits` (default: every split) of config.data's dataset (built first if it
  is a built-in one), in order of first appearance."""
  builder = builders.prepare(config)
  found = {}
  for split in (builder.info.splits if splits is None else splits):
    source = builders.load_source(config, split)
    for i in range(len(source)):
      caption = source[i].get('caption', b'')
      caption = caption.decode('utf-8') if isinstance(caption, bytes) else str(caption)
      if caption:
        found[caption] = None
  return list(found)


def _encoder_model(transformers, encoder: str):
  """The encoder's tokenizer and its text-encoding part: the encoder stack of an encoder-decoder (T5's
  T5EncoderModel: no decoder weights loaded), the model itself otherwise (a decoder-only model such as Gemma)."""
  tok = transformers.AutoTokenizer.from_pretrained(encoder, local_files_only=True)
  if tok.pad_token is None:  # Some decoder-only tokenizers have none; the padding is masked out anyway.
    tok.pad_token = tok.eos_token
  try:
    model = transformers.AutoModelForTextEncoding.from_pretrained(encoder, local_files_only=True)
  except ValueError:  # Not a registered text encoder (e.g. Gemma): the base model's last hidden state.
    model = transformers.AutoModel.from_pretrained(encoder, local_files_only=True)
    if getattr(model.config, 'is_encoder_decoder', False):
      model = model.get_encoder()
  return tok, model.eval()


def _check_encoder(encoder: str) -> None:
  if not os.path.isdir(encoder):
    raise console.UserError(f'--encoder={encoder!r} is not a folder: give a Hugging Face model saved locally '
                            '(save_pretrained, or a downloaded snapshot); nothing is downloaded here')


def encode(encoder: str, texts: Sequence[str], max_length: int,
           batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """Texts (U non-empty strings) -> (embeddings float32 [U, L, D], mask bool [U, L]), L = max_length: the last
  hidden state of the local Hugging Face model `encoder` (a folder), padding zeroed. Raises console.UserError when
  transformers is missing, the folder does not exist, or a text is longer than max_length tokens."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise console.UserError(f'{_COMMAND} needs torch and transformers ({e}): '
                            'pip install -r requirements-dev.txt') from None
  _check_encoder(encoder)
  tok, model = _encoder_model(transformers, encoder)
  lengths = [len(ids) for ids in tok(list(texts))['input_ids']]
  too_long = [(n, t) for n, t in zip(lengths, texts) if n > max_length]
  if too_long:
    n, text = max(too_long)
    raise console.UserError(f'{len(too_long)} text(s) are longer than --max_length={max_length} tokens (the longest, '
                            f'{n} tokens: {text[:60]!r}); texts are never cut: raise --max_length')
  embeddings, masks = [], []
  with torch.no_grad():
    for s in range(0, len(texts), batch_size):
      batch = tok(list(texts[s:s + batch_size]), padding='max_length', max_length=max_length, return_tensors='pt')
      hidden = model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask']).last_hidden_state
      mask = batch['attention_mask'].bool()
      embeddings.append((hidden.float() * mask[..., None]).numpy())
      masks.append(mask.numpy())
  return np.concatenate(embeddings), np.concatenate(masks)


def embed(config: ml_collections.ConfigDict, encoder: str, tag: str, prompts: Optional[Sequence[str]] = None,
          max_length: int = 64, batch_size: int = 32) -> dict:
  """Embeds every caption of config.data's dataset and `prompts` with `encoder` (see `encode`) into the table `tag`
  (see `path_for`). Entries of an existing table of the same encoder and length are kept and not computed again
  (so prompts embedded earlier stay); a table of another encoder or length is replaced.

  Returns {'path', 'encoder', 'num_entries', 'num_new', 'embed_len' L, 'embed_dim' D}.
  """
  _check_encoder(encoder)  # Before the dataset is read (or built).
  path = path_for(config, tag)
  texts = list(dict.fromkeys(dataset_captions(config) + [p for p in (prompts or ()) if p]))
  if not texts:
    raise console.UserError(f'dataset {config.data.dataset!r} has no captions and no prompts were given: nothing to '
                            'embed (a text model needs captioned clips)')
  old = _read(path, tag) if epath.Path(path).exists() else None
  if old is not None and (old.encoder != encoder or old.length != max_length):
    old = None
  new = old.missing(texts) if old is not None else texts
  if new:
    console.say(f'Embedding {len(new)} texts with {encoder}')
    embeddings, mask = encode(encoder, new, max_length, batch_size)
  else:
    embeddings, mask = np.zeros((0, max_length, old.dim), np.float32), np.zeros((0, max_length), bool)
  if old is not None:
    captions = old.captions + new
    embeddings = np.concatenate([old.embeddings.astype(np.float32), embeddings])
    mask = np.concatenate([old.mask, mask])
  else:
    captions = new
  half = embeddings.astype(np.float16)
  # float16 halves the file and the pipeline's memory; an encoder whose outputs overflow it is kept in float32.
  write(path, encoder, captions, half if np.isfinite(half).all() else embeddings, mask)
  return {'path': path, 'encoder': encoder, 'num_entries': len(captions), 'num_new': len(new),
          'embed_len': max_length, 'embed_dim': int(embeddings.shape[-1])}
