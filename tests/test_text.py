"""Text prompts: the byte tokenizer, prompt guidance, a text model that learns to obey its prompt, deterministic
sampling from a prompt, and clear errors for prompts the model cannot take."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from avdiff import config_lib
from avdiff import diffusion
from avdiff import sampling
from avdiff.data import tokenizer
from avdiff.diffusion import guidance
from avdiff.models import build_dit
from avdiff.models import text as text_lib
from tests.test_models_dit import perturbed, small_config


def test_tokenizer_round_trip_limits_and_null():
  ids = tokenizer.tokenize(['a blue round face', '', 'é voix'], 20)
  assert ids.shape == (3, 21) and ids.dtype == np.int32
  assert (ids[:, 0] == tokenizer.BOS).all()
  assert tokenizer.detokenize(ids) == ['a blue round face', '', 'é voix']
  assert (ids[1, 1:] == tokenizer.PAD).all()  # The empty prompt is BOS alone: the null text.
  assert ids[2, 1] == 0xC3 + tokenizer.OFFSET  # Non-ASCII text is its UTF-8 bytes.
  with pytest.raises(tokenizer.PromptError, match='longer than model.text.max_bytes=20'):
    tokenizer.tokenize(['x' * 21], 20)
  with pytest.raises(tokenizer.PromptError, match='not a string'):
    tokenizer.tokenize([None], 20)
  null = text_lib.null_like(jnp.asarray(ids))
  assert tokenizer.detokenize(np.asarray(null)) == ['', '', '']


def test_prompt_guidance_formula_and_separate_scales():
  """guided = uncond_label + s_m (cond - uncond_label) + (s_text - 1) (cond - cond without prompt), in one call."""
  calls = []

  def pred_fn(x, t, label, text):
    calls.append(label.shape[0])
    value = label.astype(jnp.float32)[:, None] + 10.0 * (text[:, 1] > 0)[:, None]
    return {'video': value + 0 * x['video'], 'audio': 2 * value + 0 * x['audio']}

  x = {'video': jnp.zeros((2, 3)), 'audio': jnp.zeros((2, 3))}
  t = {'video': jnp.ones(2), 'audio': jnp.ones(2)}
  label = jnp.array([1, 2])
  text = jnp.asarray(tokenizer.tokenize(['a', 'b'], 4))
  null = text_lib.null_like(text)
  cond = pred_fn(x, t, label, text)
  same = guidance.guided_pred_fn(pred_fn, 5, 1.0, 1.0, text=text, null_text=null, scale_text=1.0)(x, t, label)
  np.testing.assert_array_equal(same['video'], cond['video'])
  calls.clear()
  out = guidance.guided_pred_fn(pred_fn, 5, 2.0, 1.5, text=text, null_text=null, scale_text=3.0)(x, t, label)
  assert calls == [6]  # Conditional, null label, null prompt: one batched call.
  for k, s in (('video', 2.0), ('audio', 1.5)):
    c = cond[k]
    u_label = pred_fn(x, t, jnp.full_like(label, 5), text)[k]
    u_text = pred_fn(x, t, label, null)[k]
    np.testing.assert_allclose(out[k], u_label + s * (c - u_label) + 2.0 * (c - u_text), rtol=1e-6)


def _text_config():
  c = small_config(text_encoder='bytes', depth=1)
  c.model.text.max_bytes = 24
  c.diffusion.label_dropout = 1.0
  c.diffusion.text_dropout = 0.0
  c.diffusion.clean_video_prob = c.diffusion.clean_audio_prob = 0.0
  c.diffusion.sync_loss_weight = 0.0
  c.diffusion.motion_loss_weight = 0.0
  return c


def test_tiny_text_model_overfits_a_batch_and_obeys_the_prompt():
  """Two prompts, two clips that differ only in brightness: after training, the clean-signal estimate from pure
  noise follows the prompt, and swapping the prompts swaps the estimates."""
  c = _text_config()
  lay = config_lib.layout(c)
  text = jnp.asarray(tokenizer.tokenize(['a red face', 'a blue face'], 24))
  level = jnp.array([0.6, -0.6])
  x0 = {'video': jnp.broadcast_to(level[:, None, None, None, None], (2,) + lay.video_latent),
        'audio': jnp.broadcast_to(-level[:, None, None, None], (2,) + lay.audio_latent)}
  label = jnp.zeros(2, jnp.int32)
  model = build_dit(c, nnx.Rngs(0))
  tx = optax.adam(3e-3)
  graphdef, params = nnx.split(model, nnx.Param)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, rng):
    def loss_fn(p):
      net = nnx.merge(graphdef, p)
      return diffusion.training_loss(lambda x, t, l, txt: net(x, t, l, txt), x0, label, rng, c.diffusion,
                                     c.model.num_classes, text=text, null_text=text_lib.null_like(text))[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  for i in range(150):
    params, opt, loss = step(params, opt, jax.random.key(i))
  net = nnx.merge(graphdef, params)
  noise = {k: jax.random.normal(jax.random.key(7), v.shape) for k, v in x0.items()}
  t1 = {'video': jnp.ones(2), 'audio': jnp.ones(2)}
  x_hat = lambda txt: net(noise, t1, jnp.full(2, c.model.num_classes), txt)['video'].mean(axis=(1, 2, 3, 4))
  as_given, swapped = np.asarray(x_hat(text)), np.asarray(x_hat(text[::-1]))
  np.testing.assert_allclose(as_given, [0.6, -0.6], atol=0.15)  # x objective: the output is the x0 estimate.
  np.testing.assert_allclose(swapped, [-0.6, 0.6], atol=0.15)


def test_same_seed_and_prompt_give_the_same_sample():
  c = _text_config()
  c.diffusion.num_sampling_steps = 3
  c.diffusion.guidance_text = 2.0
  model = sampling.Model(c, perturbed(build_dit(c, nnx.Rngs(0))))
  clips = sampling.prompt_clips(['a blue round face', 'a red long face'], c)
  a = sampling.sample_clips(model, clips, 'joint', seed=3)
  b = sampling.sample_clips(model, clips, 'joint', seed=3)
  other = sampling.sample_clips(model, sampling.prompt_clips(['a green round face', 'a red long face'], c), 'joint',
                                seed=3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['video'], y['video'])
    np.testing.assert_array_equal(x['audio'], y['audio'])
  assert a[0]['caption'] == 'a blue round face' and a[0]['label'] == c.model.num_classes
  assert np.abs(a[0]['video'].astype(int) - other[0]['video'].astype(int)).max() > 0  # The prompt matters ...
  np.testing.assert_array_equal(a[1]['video'], other[1]['video'])  # ... and only its own clip's.


def test_prompts_the_model_cannot_take_are_clear_errors():
  c = _text_config()
  for bad, match in (([''], 'empty'), (['   '], 'empty'), (['x' * 25], 'max_bytes=24'), ([3], 'empty')):
    with pytest.raises(tokenizer.PromptError, match=match):
      sampling.prompt_clips(bad, c)
  assert sampling.prompt_clips(['visage bleu, voix aiguë'], c)  # Non-ASCII: its UTF-8 bytes.
  with pytest.raises(tokenizer.PromptError, match='takes no prompts'):
    sampling.prompt_clips(['a face'], small_config())


def test_bag_of_words_adds_each_word_to_the_pooled_vector():
  """model.text.bag: pooled = resampler pooling + a projection of the mean token embedding (BOS and padding left
  out), so the null prompt adds nothing and swapping in another word moves the pooled vector; a precomputed encoder
  has no token embeddings to average (a config error)."""
  c = small_config(text_encoder='bytes')
  c.model.text.bag = True
  encoder = build_dit(c, nnx.Rngs(0)).text_encoder
  ids = jnp.asarray(tokenizer.tokenize(['a red face', 'a red face', ''], 12))
  np.testing.assert_array_equal(encoder._bag(ids)[2], 0.0)  # pylint: disable=protected-access
  embed = np.asarray(encoder.embed[...])
  words = np.asarray(ids[0])[(np.asarray(ids[0]) > tokenizer.BOS)]
  np.testing.assert_allclose(encoder._bag(ids)[0], embed[words].mean(0), rtol=1e-5)  # pylint: disable=protected-access
  plain = build_dit(small_config(text_encoder='bytes'), nnx.Rngs(0)).text_encoder
  assert plain.to_bag is None
  bad = small_config(text_encoder='bytes')
  bad.model.text.bag, bad.model.text.encoder = True, 'precomputed'
  bad.model.text.embed_dim, bad.model.text.embed_len, bad.model.text.embeddings = 8, 4, 't5'
  with pytest.raises(config_lib.ConfigError, match='model.text.bag'):
    config_lib.validate(bad)
