r"""Embeds every caption of a dataset (and optional prompts) once with a frozen pretrained text encoder, for
model.text.encoder='precomputed' (avdiff.data.text_embeddings):

    python -m experiments.embed_text --config=configs/text.py --encoder=/models/t5-base --tag=t5_base
    python -m experiments.embed_text --config=configs/text.py --encoder=/models/t5-base --tag=t5_base \
        --prompts=prompts.txt   # also these sampling prompts, one a line; entries already there are kept

--encoder is a Hugging Face model saved on this machine (any T5 / Gemma-style encoder: save_pretrained, or a
downloaded snapshot); nothing is downloaded. Needs torch and transformers (requirements-dev.txt). It prints the
flags to train with, e.g. `--config.model.text.encoder=precomputed --config.model.text.embeddings=t5_base
--config.model.text.embed_dim=768 --config.model.text.embed_len=64`.
"""

from __future__ import annotations

from avdiff import console

console.quiet_logging()  # Before JAX loads: its C++ log level is read then.

from absl import flags
from ml_collections import config_flags

from avdiff.data import text_embeddings

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/text.py', 'Config file (its `data` section is used).')
_ENCODER = flags.DEFINE_string('encoder', None, 'Folder of a Hugging Face text encoder saved locally.', required=True)
_TAG = flags.DEFINE_string('tag', None, 'Name of the table (a file under the dataset directory; train with '
                           '--config.model.text.embeddings=TAG), or an absolute .npz path.', required=True)
_PROMPTS = flags.DEFINE_string('prompts', None, 'File of extra prompts to embed, one a line (blank lines skipped).')
_MAX_LENGTH = flags.DEFINE_integer('max_length', 64, 'Tokens per text L (padded; a longer text is an error).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Texts per forward pass of the encoder.')


def main(argv):
  del argv
  prompts = []
  if _PROMPTS.value:
    with open(_PROMPTS.value, encoding='utf-8') as f:
      prompts = [line.strip() for line in f if line.strip()]
  out = text_embeddings.embed(_CONFIG.value, _ENCODER.value, _TAG.value, prompts, _MAX_LENGTH.value,
                              _BATCH_SIZE.value)
  print(f'text embeddings: {out["path"]} ({out["num_entries"]} texts, {out["num_new"]} new; '
        f'L={out["embed_len"]} tokens of width D={out["embed_dim"]})')
  print(f'train with: --config.model.text.encoder=precomputed --config.model.text.embeddings={_TAG.value} '
        f'--config.model.text.embed_dim={out["embed_dim"]} --config.model.text.embed_len={out["embed_len"]}')


if __name__ == '__main__':
  console.run(main)
