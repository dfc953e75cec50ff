"""SentencePiece prompts (model.text.encoder='pieces'): a BPE model fitted to the training captions makes each
caption word one token and still tokenizes any other text; it is trained deterministically and stored once beside
the dataset; the input pipeline, a train step and sampling read prompts through it."""

import itertools
import pickle

import numpy as np
import pytest
from flax import nnx

import train_toy
from avdiff import config_lib
from avdiff import sampling
from avdiff.data import builders
from avdiff.data import captions
from avdiff.data import pipeline
from avdiff.data import text_inputs
from avdiff.data import tokenizer
from avdiff.train.tasks import DiffusionTask
from tests.test_models_dit import perturbed

pytest.importorskip('sentencepiece')

DATA = {'data.attributes': 'independent', 'data.clip_seconds': 2.0, 'data.num_test_novel': 8}
# Every attribute combination in every template: a caption corpus like a training split's, without building one.
CORPUS = [captions.caption(np.array(a), seed) for a in itertools.product(range(4), range(2), range(2), range(2),
                                                                        range(4)) for seed in range(5)]
VOCAB = 384  # configs/base.py: ~100 merges beyond the bytes and characters, enough for every caption word.


def test_pieces_are_deterministic_one_token_per_attribute_word_and_take_any_text():
  proto = tokenizer.train_pieces(CORPUS, VOCAB)
  assert tokenizer.train_pieces(CORPUS[::-1] + CORPUS[:7], VOCAB) == proto  # Order and repeats do not matter.
  pieces = pickle.loads(pickle.dumps(tokenizer.Pieces(proto)))  # What the pipeline sends to its workers.
  assert pieces.vocab <= VOCAB + tokenizer.OFFSET
  for values in captions.TALKING_ATTRIBUTES.values():
    for value in values:
      word = captions.NUMBER_WORDS[value] if isinstance(value, int) else value
      ids = pieces.tokenize([f'a {word} face'], 8)[0]
      assert pieces.processor.id_to_piece(int(ids[2]) - tokenizer.OFFSET) == '▁' + word, word
  slow, low = pieces.tokenize(['slow', 'low'], 4)[:, 1]
  assert slow != low  # 'slow' (rate) is not 'low' (pitch) plus a letter.
  texts = ['a blue round face, high voice, four syllables', 'un visage bleu, voix aiguë', '']
  ids = pieces.tokenize(texts, 40)
  assert ids.shape == (3, 41) and (ids[:, 0] == tokenizer.BOS).all() and (ids[2, 1:] == tokenizer.PAD).all()
  assert pieces.detokenize(ids) == texts  # Unseen words and non-ASCII text: sub-words and bytes, never lost.
  assert (ids[0] > 0).sum() < len(texts[0]) // 3  # A caption is a few word tokens, not its bytes.
  with pytest.raises(tokenizer.PromptError, match='more than model.text.max_bytes=3'):
    pieces.tokenize(['a blue round face'], 3)
  with pytest.raises(tokenizer.PromptError, match='not a string'):
    pieces.tokenize([None], 8)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  c = train_toy.config(str(tmp_path_factory.mktemp('tfds')), **DATA)
  c.model.num_classes = 16
  t = c.model.text
  t.encoder, t.vocab_size, t.max_bytes, t.ngram = 'pieces', VOCAB, 24, 3
  t.width, t.num_heads, t.num_tokens = 32, 2, 4
  c.diffusion.label_dropout = 1.0
  config_lib.validate(c)
  return c


def test_pipeline_trains_and_samples_through_the_stored_pieces(config):
  batch = next(pipeline.InputPipeline(config, 'train', shuffle=False))
  path = text_inputs.pieces_path(config)
  with open(path, 'rb') as f:
    stored = f.read()
  inputs = text_inputs.TextInputs(config)
  assert batch['text'].shape == (8, 25) and batch['text'].dtype == np.int32
  source = builders.load_source(config, 'train')
  first = [source[i]['caption'] for i in range(8)]
  first = [c.decode() if isinstance(c, bytes) else str(c) for c in first]
  assert inputs.pieces.detokenize(batch['text']) == first
  assert text_inputs.load_pieces(config).model_proto == stored  # Stored once, then read.

  # Three steps: with adaLN-Zero the conditioning gets gradients once the gates have moved off zero.
  losses, grads = train_toy.few_steps(DiffusionTask(config), batch)
  assert np.isfinite(losses).all(), losses
  embed_grad = np.abs(np.asarray(grads['text_encoder']['embed'][...])).sum(axis=1)
  assert embed_grad[batch['text'][0, 1]] > 0  # The caption's word tokens reach the loss ...
  unused = inputs.pieces.processor.piece_to_id('<0xFF>') + tokenizer.OFFSET
  assert embed_grad[unused] == 0  # ... a byte no caption has does not.

  c = config.copy_and_resolve_references()
  c.diffusion.num_sampling_steps = 2
  model = sampling.Model(c, perturbed(DiffusionTask(c).build_model(c, nnx.Rngs(1))))
  out = sampling.sample_clips(model, sampling.prompt_clips(['a blue round face, high voice, four syllables'], c),
                              'joint', seed=0)
  assert out[0]['caption'] == 'a blue round face, high voice, four syllables'
  with pytest.raises(tokenizer.PromptError, match='max_bytes=24'):
    sampling.prompt_clips([' '.join(['word'] * 30)], c)


def test_word_dropout_leaves_out_training_words_deterministically_per_epoch(config):
  """diffusion.word_dropout: training captions lose words independently (each word with probability p, another draw
  every epoch, the same on a rerun); held-out splits and p = 0 keep them whole."""
  c = config.copy_and_resolve_references()
  c.diffusion.word_dropout = 0.3
  c.data.num_epochs = 2
  inputs = text_inputs.TextInputs(c)
  source = builders.load_source(c, 'train')
  full = [source[i]['caption'] for i in range(len(source))]
  full = [x.decode() if isinstance(x, bytes) else str(x) for x in full]

  def captions_of(cfg, split='train', batches=None):
    pipe = pipeline.InputPipeline(cfg, split, shuffle=False)
    got = [t for b in itertools.islice(pipe, batches) for t in inputs.pieces.detokenize(b['text'])]
    pipe.close()
    return got

  n = len(full) // 8 * 8
  got = captions_of(c, batches=2 * n // 8)
  first, second = got[:n], got[n:]
  words = [(w, x.split()) for w, x in zip(first, full)]
  assert all(set(w.split()) <= set(x) for w, x in words)  # Only ever words of the clip's own caption ...
  kept = sum(len(w.split()) for w, _ in words) / sum(len(x) for _, x in words)
  assert 0.6 < kept < 0.8, kept  # ... about 1 - p of them ...
  assert first != second  # ... other words in the next epoch ...
  assert captions_of(c, batches=2 * n // 8) == got  # ... and the same on a rerun.
  assert captions_of(c, 'validation', batches=1) == full_validation(c)
  c.diffusion.word_dropout = 0.0
  assert captions_of(c, batches=n // 8) == full[:n]


def full_validation(c):
  source = builders.load_source(c, 'validation')
  return [x.decode() if isinstance(x, bytes) else str(x) for x in (source[i]['caption'] for i in range(8))]
