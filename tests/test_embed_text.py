"""Precomputed text embeddings (model.text.encoder='precomputed'): `experiments.embed_text` with a small randomly
initialised T5 encoder saved locally stores every caption of a tiny `talking` dataset, each entry the encoder's own
output; the input pipeline, a few train steps and sampling read the table; missing tables and prompts are clear
errors naming the command."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import config_lib
from avdiff import console
from avdiff import sampling
from avdiff.data import captions
from avdiff.data import pipeline
from avdiff.data import text_embeddings
from avdiff.data import tokenizer
from avdiff.train.tasks import DiffusionTask
from tests.test_models_dit import perturbed

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

MAX_LENGTH = 24
DATA = {'data.attributes': 'independent', 'data.clip_seconds': 2.0, 'data.num_test_novel': 8}


def _save_tiny_t5(folder: str) -> None:
  """A word-level tokenizer trained on the caption vocabulary (built offline with `tokenizers`) and a 1-layer,
  width-16 T5 encoder with random weights, saved as a Hugging Face model folder."""
  from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
  corpus = [captions.caption(np.array(a), seed) for a in itertools.product(range(4), range(2), range(2), range(2),
                                                                          range(4)) for seed in range(5)]
  tok = Tokenizer(models.WordLevel(unk_token='<unk>'))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=['<pad>', '</s>', '<unk>']))
  tok.post_processor = processors.TemplateProcessing(single='$A </s>', special_tokens=[('</s>', 1)])  # As T5's.
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token='<pad>', eos_token='</s>',
                                              unk_token='<unk>')
  fast.save_pretrained(folder)
  cfg = transformers.T5Config(vocab_size=len(fast), d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8,
                              pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
  torch.manual_seed(0)
  transformers.T5EncoderModel(cfg).save_pretrained(folder)


def _config(data_dir: str, **extra):
  c = train_toy.config(data_dir, **DATA, **extra)
  c.model.num_classes = 16
  t = c.model.text
  t.encoder, t.embeddings, t.embed_dim, t.embed_len = 'precomputed', 'tiny_t5', 16, MAX_LENGTH
  t.width, t.num_heads, t.num_tokens = 32, 2, 4
  c.diffusion.label_dropout = 1.0
  config_lib.validate(c)
  return c


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """(config, encoder folder, the command's output) after `experiments.embed_text` on a fresh dataset."""
  encoder = str(tmp_path_factory.mktemp('tiny_t5'))
  _save_tiny_t5(encoder)
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  cmd = [sys.executable, '-m', 'experiments.embed_text', '--config=configs/text.py', f'--encoder={encoder}',
         '--tag=tiny_t5', f'--max_length={MAX_LENGTH}'] + train_toy.flags(data_dir, **DATA)
  done = subprocess.run(cmd, cwd=train_toy.REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return _config(data_dir), encoder, done.stdout


def test_table_holds_every_caption_as_the_encoder_computes_it(setup):
  config, encoder, stdout = setup
  assert (f'--config.model.text.encoder=precomputed --config.model.text.embeddings=tiny_t5 '
          f'--config.model.text.embed_dim=16 --config.model.text.embed_len={MAX_LENGTH}') in stdout
  table = text_embeddings.load(config)
  assert table.path.startswith(config.data.data_dir) and table.encoder == encoder
  texts = text_embeddings.dataset_captions(config)
  assert len(texts) > 10 and not table.missing(texts)

  tok = transformers.AutoTokenizer.from_pretrained(encoder)
  model = transformers.T5EncoderModel.from_pretrained(encoder).eval()
  with torch.no_grad():
    ids = tok([texts[0]], return_tensors='pt')
    direct = model(**ids).last_hidden_state[0].numpy()  # Unpadded: [n, 16].
  emb, mask = table.lookup([texts[0], ''])
  n = direct.shape[0]
  assert emb.shape == (2, MAX_LENGTH, 16) and emb.dtype == np.float32 and mask.dtype == bool
  np.testing.assert_allclose(emb[0, :n], direct, atol=3e-3, rtol=3e-3)  # Stored as float16.
  assert mask[0, :n].all() and not mask[0, n:].any() and not emb[0, n:].any()
  assert not mask[1].any() and not emb[1].any()  # The empty caption: the null text.


def test_pipeline_batches_and_clear_errors(setup, tmp_path):
  config, _, _ = setup
  b = config.train.global_batch_size
  batch = next(pipeline.InputPipeline(config, 'train'))
  assert batch['text_embeddings'].shape == (b, MAX_LENGTH, 16) and batch['text_embeddings'].dtype == np.float32
  assert batch['text_mask'].shape == (b, MAX_LENGTH) and batch['text_mask'].dtype == bool
  assert batch['text_mask'].sum(axis=1).min() >= 5  # Every clip has a caption of several tokens.

  other = config.copy_and_resolve_references()
  other.model.text.embeddings = 'not_embedded'
  with pytest.raises(console.UserError, match='experiments.embed_text'):
    pipeline.InputPipeline(other, 'train')
  other.model.text.embeddings = 'tiny_t5'
  other.model.text.embed_dim = 32
  with pytest.raises(config_lib.ConfigError, match='embed_dim=16'):
    text_embeddings.load(other)
  other.model.text.embeddings = ''
  with pytest.raises(config_lib.ConfigError, match='model.text.embeddings'):
    config_lib.validate(other)


def test_a_model_trains_on_the_precomputed_embeddings(setup):
  config, _, _ = setup
  losses, grads = train_toy.few_steps(DiffusionTask(config), next(pipeline.InputPipeline(config, 'train')))
  assert np.isfinite(losses).all(), losses
  assert float(np.abs(grads['text_encoder']['project']['kernel'][...]).max()) > 0  # The embeddings reach the loss.


def test_sampling_takes_prompts_in_the_table_and_names_the_command_for_others(setup):
  config, encoder, _ = setup
  caption = text_embeddings.load(config).captions[0]
  assert sampling.prompt_clips([caption], config) == [{'caption': caption}]
  new = 'a red round face, low voice, two syllables, said twice'
  with pytest.raises(tokenizer.PromptError, match=r'experiments\.embed_text .*--prompts'):
    sampling.prompt_clips([new], config)
  out = text_embeddings.embed(config, encoder, 'tiny_t5', prompts=[new], max_length=MAX_LENGTH)
  assert out['num_new'] == 1 and out['num_entries'] == len(text_embeddings.dataset_captions(config)) + 1
  clips = sampling.prompt_clips([new, caption], config)

  c = config.copy_and_resolve_references()
  c.diffusion.num_sampling_steps = 1
  model = sampling.Model(c, perturbed(DiffusionTask(c).build_model(c, nnx.Rngs(0))))
  out = sampling.sample_clips(model, clips, 'joint', seed=0)
  assert [o['caption'] for o in out] == [new, caption]
  assert out[0]['video'].shape == (config_lib.num_frames(c.data), c.data.resolution, c.data.resolution, 3)
  assert np.abs(out[0]['video'].astype(int) - out[1]['video'].astype(int)).max() > 0  # The prompt matters.
