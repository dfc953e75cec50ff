"""Base configuration: every field avdiff reads, with its meaning and unit.

Other configs (`tiny.py`, `ablations/*.py`, pod configs) start from `get_config()` here and change a few fields.
The config is locked: assigning a key that does not exist raises, so a misspelled override fails loudly.

    python -m experiments.train --config=configs/base.py --workdir=runs/base

Derived quantities (mel hop, tokens per clip, audio tokens per latent video frame) are computed by
`avdiff.config_lib`, never stored here, so they cannot disagree with the fields they come from.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # Global seed: params, noise, data order. Never random by default.

  # ------------------------------------------------------------------ data
  c.data = d = ml_collections.ConfigDict()
  d.dataset = 'talking'  # 'talking' | 'impacts' (built-in, procedural) | name of a folder-built dataset.
  d.data_dir = ''  # TFDS data dir; '' -> $AVDIFF_DATA_DIR or ./data/tfds.
  d.resolution = 64  # Frame height = width, pixels.
  d.fps = 16  # Video frame rate, Hz.
  d.clip_seconds = 2.0  # Clip length, seconds. fps * clip_seconds must be an integer.
  d.sample_rate = 16000  # Audio sample rate, Hz.
  d.mel_frames_per_video_frame = 4  # Integer: audio and video share one clock. Mel hop = sr / (fps * this).
  d.n_fft = 1024  # STFT window and FFT size, samples.
  d.n_mels = 64  # Mel bands.
  d.fmin = 0.0  # Lowest mel band edge, Hz.
  d.fmax = 8000.0  # Highest mel band edge, Hz (<= sample_rate / 2).
  d.mel_db_floor = -80.0  # Log-mel floor in dB; normalized mel = (dB - floor/2) / (-floor/2), roughly [-1, 1].
  d.num_speakers = 8  # `talking`: number of speakers (= label classes).
  # `talking`: 'speaker' (label = speaker sets face colour, shape and voice) | 'independent' (face colour, face
  # shape, voice pitch, speaking rate and syllable count drawn independently; label = the (colour, shape, pitch)
  # combination, 16 classes; clips carry captions; a `test_novel` split holds the colour-pitch pairs held out of
  # train/validation/test: avdiff.data.synthetic.HELD_OUT_PAIRS). Needs clip_seconds >= 1.88. `impacts`:
  # 'independent' draws material, number of balls and rhythm separately (label = material; captions; held-out
  # material-count pairs in `test_novel`); 'speaker' (the name is shared) is the original impacts generator.
  d.attributes = 'speaker'
  d.num_materials = 4  # `impacts`: number of materials (= label classes).
  d.num_train = 512  # Clips in the train split of a built-in dataset.
  d.num_validation = 64  # Clips in the validation split.
  d.num_test = 64  # Clips in the test (held-out) split.
  d.num_test_novel = 64  # Clips in the `test_novel` split (attributes='independent').
  d.shuffle = True  # Shuffle training examples (seeded by `seed`); eval splits are never shuffled.
  d.num_epochs = -1  # Passes over the train split; -1 = repeat forever.
  d.worker_count = 0  # grain worker processes; 0 = read in the main process.
  d.prefetch = 2  # Batches prepared ahead of the train step.
  d.with_waveform = False  # Also put `audio` [B, S] waveforms in training batches.

  # ------------------------------------------------------------------ model
  c.model = m = ml_collections.ConfigDict()
  m.encoder = 'patch'  # 'patch' (pixels / mel) | 'separate_ae' (one AE per modality) | 'joint_ae' (one shared AE).
  # Stage-1 autoencoder of the *_ae encoders. '' (the default): the one trained for this config's data and model.ae
  # fields, found in (or first trained into) <autoencoder_root>/<encoder>-<fingerprint> by experiments.train
  # (avdiff.autoencoders). A directory: use the autoencoder trained there (refused when its stage1.json marker was
  # written for other data / model.ae fields).
  m.autoencoder_workdir = ''
  m.autoencoder_root = ''  # Where found / trained autoencoders live; '' -> $AVDIFF_STAGE1_DIR or ./runs/stage1.
  # What the DiT sees of an autoencoder's latents: 'none' (its posterior means as they are) | 'channel' (each channel
  # standardized by its mean and std over the training clips, as LTX-Video's latents_mean / latents_std and SD's
  # scaling factor do; measured by experiments.train when the latents are cached and recorded in latent_stats).
  m.latent_norm = 'none'
  m.latent_stats = ml_collections.ConfigDict({'video_mean': (), 'video_std': (), 'audio_mean': (), 'audio_std': ()})
  m.video_patch = (4, 8, 8)  # (frames, height, width) per video token, in latent units.
  m.audio_patch = (16, 8)  # (mel frames, mel bins) per audio token, in latent units.
  m.width = 384  # Transformer hidden size.
  m.depth = 12  # Transformer blocks (per tower for `dual_tower`).
  m.num_heads = 6  # Attention heads; width must be divisible by it.
  m.mlp_ratio = 4.0  # MLP hidden size / width.
  m.fusion = 'joint'  # 'joint' (one sequence, shared attention) | 'dual_tower' (two towers + cross-attention).
  m.modality_specific_weights = False  # `joint`: separate QKV/MLP/norm weights per modality (MM-DiT style).
  m.cross_attention_every = 2  # `dual_tower`: bidirectional cross-attention after every N blocks.
  m.positions = 'rope_shared'  # 'rope_shared' (one clock) | 'rope_separate' (1D per modality) | 'learned'.
  # Absolute positions added to the tokens with the rotary ones: 'sincos' (fixed table over time, row, column) | 'none'.
  m.abs_positions = 'sincos'
  m.sequence_order = 'blocks'  # 'blocks' (all video then all audio) | 'interleaved' (per latent frame).
  m.rope_theta = 10000.0  # RoPE base frequency.
  # Cross-modal time locality (0 = off): attention logits between a video and an audio token get
  # -slope_h * |time difference in s|, slopes av_time_bias * 2^(-8 h / heads) (ALiBi's), so steep heads read the
  # other modality at the same moment and shallow ones stay global (avdiff.models.attention.TimeBias).
  m.av_time_bias = 0.0
  m.num_classes = 8  # Label classes; index num_classes is the "no label" token used for CFG.
  # Text prompts (avdiff.models.text). The encoder's K output tokens enter the DiT by `fusion`, and its pooled vector
  # is added to every modality's conditioning.
  m.text = tx = ml_collections.ConfigDict()
  # '' (no text) | 'bytes' (byte-level transformer trained with the DiT) | 'pieces' (the same transformer over
  # SentencePiece BPE tokens fitted to the training captions) | 'precomputed' (a frozen pretrained encoder's
  # embeddings, stored in the dataset by `python -m experiments.embed_text`).
  tx.encoder = ''
  # 'tokens' (K text tokens appended to the joint sequence, or to each tower) | 'cross_attention' (after every
  # self-attention block the audio-video tokens attend to the K text tokens; `joint` fusion).
  tx.fusion = 'tokens'
  # Longest prompt in tokens: UTF-8 bytes ('bytes'), SentencePiece pieces ('pieces'); a longer one is an error,
  # never cut.
  tx.max_bytes = 96
  tx.vocab_size = 384  # 'pieces': SentencePiece ids (the 256 byte pieces included; a small corpus may use fewer).
  tx.width = 128  # Text encoder width.
  tx.depth = 2  # 'bytes' / 'pieces': transformer layers over the tokens (0: none, the resampler alone).
  tx.ngram = 7  # 'bytes' / 'pieces': tokens each position sees before attention (bytes: a word-sized window; 1 = none).
  tx.num_heads = 4
  tx.num_tokens = 8  # K: text tokens handed to the DiT (learned queries over the encoder outputs).
  # 'bytes' / 'pieces': also add the mean of the prompt's token embeddings (a bag of words) to the pooled vector, so
  # each word moves the conditioning along a direction of its own from the first step, as a label embedding does.
  tx.bag = False
  tx.embed_dim = 0  # 'precomputed': width D of the stored embeddings (set by experiments.embed_text's dataset).
  tx.embed_len = 0  # 'precomputed': stored tokens per caption L.
  # 'precomputed': which stored table (avdiff.data.text_embeddings): the --tag given to experiments.embed_text (a file
  # under the dataset's directory), or the absolute path of a table.
  tx.embeddings = ''
  m.dtype = 'bfloat16'  # Compute dtype.
  m.param_dtype = 'float32'  # Parameter dtype.
  m.attention = 'auto'  # 'auto' | 'xla' | 'cudnn' | 'chunked' (lax.map over heads; fastest on CPU).
  # Rematerialization of each block: 'none' (keep every intermediate) | 'full' (keep only block inputs) | 'dots'
  # (keep all matmul outputs) | 'projections' (keep the QKV / attention / output / MLP projections and the chunked
  # attention's residuals; recompute norms, modulation, rotary and GELU: no matmul is recomputed, ~3x fewer bytes
  # of activations than 'none', and faster on CPU, where those bytes cost more than the recomputation). With
  # attention='xla' / 'cudnn' the attention's own residuals are not named, so its forward is recomputed.
  m.remat = 'projections'
  m.scan_layers = True  # jax.lax.scan over blocks: compile time independent of depth.

  # Stage-1 autoencoders (`separate_ae`, `joint_ae`).
  m.ae = ae = ml_collections.ConfigDict()
  ae.video_spatial_down = 4  # Spatial downsampling factor of the video latent.
  ae.video_temporal_down = 2  # Temporal downsampling factor of the video latent.
  ae.video_channels = 8  # Video latent channels.
  ae.audio_time_down = 2  # Must equal video_temporal_down so both latents stay on one clock.
  ae.audio_freq_down = 4  # Mel-bin downsampling factor of the audio latent.
  ae.audio_channels = 8  # Audio latent channels.
  # Video stem: 'conv' (stride-2 conv + ResBlock stages from the full resolution down) | 'patch' (each
  # video_spatial_down^2 pixel block projected to a latent position, one ResBlock there; no layer at the full or
  # half resolution). Cost and what each keeps of the clips: benchmarks/autoencoder.md.
  ae.video_stem = 'conv'
  ae.width = 64  # Base conv width.
  ae.kl_weight = 1e-4  # KL regularizer weight.
  ae.steps = 2000  # Stage-1 training steps.
  ae.learning_rate = 1e-3
  ae.batch_size = 16
  # Stage 1 trains with these, not with the train section (avdiff.train.tasks.autoencoder.stage_config), so DiT runs
  # that differ only in their own training share one autoencoder.
  ae.warmup_steps = 100
  ae.ema_decay = 0.999
  ae.seed = 0  # Params and data order of stage 1 (the DiT's seeds share one autoencoder).

  # Neural vocoder (avdiff.models.vocoder): normalized log-mel -> waveform, Vocos-style (ConvNeXt blocks at the mel
  # frame rate, a head predicting STFT log-magnitude and phase, inverse STFT), trained once per data + vocoder
  # fields (a stage-1 model: avdiff.vocoders) by `python -m experiments.train_vocoder --config=...`, with a
  # multi-resolution STFT loss and a mel L1 loss (no adversarial loss: it would multiply the cost of a step).
  m.vocoder = vc = ml_collections.ConfigDict()
  # Sampled mel -> waveform with this vocoder (True; it must have been trained: experiments.train_vocoder) or with
  # Griffin-Lim (False: needs no training). Not part of the vocoder's fingerprint.
  vc.use = False
  # '' (the default): the vocoder trained for this config's data and model.vocoder fields, found in (or trained
  # into) <model.autoencoder_root>/vocoder-<fingerprint>. A directory: the vocoder trained there (refused when its
  # stage1.json marker names other fields). Not part of the fingerprint.
  vc.workdir = ''
  vc.width = 128  # Channels of the ConvNeXt blocks.
  vc.depth = 4  # ConvNeXt blocks.
  vc.kernel = 7  # Depthwise convolution width, mel frames (also the input convolution's).
  vc.mlp_ratio = 3.0  # Hidden size of a block's MLP / width.
  # Multi-resolution STFT loss: (n_fft, hop) pairs, samples. The longest window resolves the harmonics of a voice
  # (16 Hz bins at 16 kHz with 1024).
  vc.resolutions = ((256, 64), (512, 128), (1024, 256))
  vc.mel_weight = 1.0  # Weight of the mel L1 (normalized log-mel units) beside the STFT loss.
  # Weight of the phase-advance loss (avdiff.models.vocoder.phase_advance_loss: frame-to-frame phase advance, i.e.
  # instantaneous frequency, against the target's, weighted by magnitude; 0 = off) and its STFT (n_fft, hop). It
  # makes pyin's voicing of the output agree more often with the original's (benchmarks/vocoder.md).
  vc.phase_weight = 1.0
  vc.phase_resolution = (512, 128)
  vc.steps = 3000  # Training steps (about 10 minutes on 2 shared CPU cores at the tiny config).
  vc.learning_rate = 2e-3  # Peak learning rate (AdamW, warmup then cosine to 10%).
  vc.warmup_steps = 50
  vc.batch_size = 16  # Segments per step.
  vc.segment_frames = 32  # Mel frames per training segment, cut at a random place of each clip (0 = whole clips).
  vc.ema_decay = 0.999  # The EMA params are the ones used (with ema_warmup, as stage 1).
  vc.seed = 0  # Params and data order of the vocoder.

  # ------------------------------------------------------------------ diffusion
  c.diffusion = df = ml_collections.ConfigDict()
  df.objective = 'flow'  # 'x' (clean signal; velocity loss) | 'eps' | 'v' | 'flow' (rectified flow velocity).
  df.schedule = 'flow'  # 'cosine' | 'linear' | 'flow'.
  df.flow_shift = 1.0  # Timestep shift for the flow schedule (>1 = noisier; SD3-style resolution shift).
  df.time_sampling = 'uniform'  # Training time density: 'uniform' | 'logit_normal' (logit t ~ N(mean, std)).
  df.logit_normal_mean = 0.0  # > 0 trains more at high noise (t = 1 is pure noise here).
  df.logit_normal_std = 1.0
  df.num_train_timesteps = 1000  # Discrete steps for eps/v schedules.
  df.loss_weight_video = 1.0
  df.loss_weight_audio = 1.0
  df.independent_t_prob = 0.5  # P(video and audio timesteps drawn independently); else shared.
  df.clean_video_prob = 0.1  # P(video left clean, t=0): teaches video -> audio.
  df.clean_audio_prob = 0.1  # P(audio left clean, t=0): teaches audio -> video.
  df.label_dropout = 0.1  # P(label replaced by the null label): classifier-free guidance.
  df.text_dropout = 0.1  # P(prompt replaced by the null (empty) prompt): text classifier-free guidance.
  # P(each word of a training caption left out; avdiff.data.pipeline): every word is also seen without the others,
  # so an attribute word has to tell its attribute on its own, not only beside the words it always occurs with.
  df.word_dropout = 0.0
  # Auxiliary audio-visual sync loss (0 = off): the trunk's output tokens of each video token step (mean over the
  # step's tokens) and of the audio in the same span are projected by two linear heads (the DiT's `sync_video`,
  # `sync_audio`, created only when this is > 0) and an InfoNCE loss pairs them among all steps of all clips in the
  # batch, both directions, weighted per clip by 1 - t_video * t_audio (a pair with both modalities pure noise
  # cannot be matched). It rewards tokens that carry what the other modality does at the same moment.
  # Motion-weighted video loss (0 = off): each element's squared error is weighted by (1 + s * d) / (1 + s), d its
  # distance from the clip's mean over time relative to the clip's mean distance (avdiff.diffusion.loss
  # .motion_weights; weights average 1 per clip). It moves the video loss towards the moving parts, e.g. a mouth.
  df.motion_loss_weight = 0.0
  df.sync_loss_weight = 0.0
  df.sync_loss_temperature = 0.1  # Softmax temperature of the InfoNCE logits (cosine similarities).
  df.sampler = 'euler'  # 'ddpm' | 'ddim' | 'dpmpp_2m' | 'euler' | 'heun'.
  df.num_sampling_steps = 50
  df.ddim_eta = 0.0
  df.guidance_video = 1.0  # CFG scale for video tokens (1 = conditional model).
  df.guidance_audio = 1.0  # CFG scale for audio tokens.
  # CFG scale of the prompt (text models), on top of the label scales: pred + (s - 1) (pred - pred(null prompt)).
  df.guidance_text = 1.0
  # Joint sampling order: 'together' (both modalities down one time grid) | 'audio_first' | 'video_first' (the
  # leading modality sampled first with the other held at pure noise, t = 1, then the other given it clean, as in
  # audio_to_video / video_to_audio; 2x the model evaluations). Each modality then takes its attributes from the
  # condition before the other exists (avdiff.diffusion.conditioning).
  df.joint_order = 'together'

  # ------------------------------------------------------------------ training
  c.train = t = ml_collections.ConfigDict()
  t.steps = 100_000
  t.global_batch_size = 32  # Clips per step over all processes.
  t.grad_accum_steps = 1  # Micro-batches per step (global_batch_size is split into them).
  t.optimizer = 'adamw'
  t.learning_rate = 1e-4  # Peak learning rate.
  t.lr_schedule = 'warmup_cosine'  # 'warmup_cosine' | 'warmup_constant'.
  t.warmup_steps = 1000
  t.end_lr_fraction = 0.1  # Final lr = learning_rate * this (cosine).
  t.weight_decay = 0.0
  t.b1 = 0.9
  t.b2 = 0.999
  t.grad_clip_norm = 1.0  # Global-norm clipping; 0 = off.
  t.ema_decay = 0.9999  # EMA of params used for sampling and evaluation (the decay's upper bound with ema_warmup).
  t.ema_warmup = True  # Decay min(ema_decay, (1 + n) / (10 + n)) after step n: the EMA serves runs of any length.
  t.log_every = 50  # Steps between metrics.jsonl lines.
  t.checkpoint_every = 1000  # Steps between checkpoints.
  t.keep_checkpoints = 3  # Keep the last K checkpoints.
  t.keep_best_by = ''  # '' or a metric (e.g. 'val_loss'): also keep the best checkpoint by it.
  t.async_checkpointing = True
  # One trainer per run directory: W/lease.json names the trainer that holds W; it is renewed every
  # lease_timeout_s / 4 seconds. A second trainer on W stops with an error naming the holder, unless the holder
  # has not renewed for lease_timeout_s seconds (or its process is gone on this host): then it takes over.
  t.lease_timeout_s = 120.0
  t.sample_every = 5000  # Steps between sample mp4s (0 = off).
  t.num_samples = 4  # Clips per sampling round.
  t.eval_every = 0  # Steps between in-loop evaluations on a small held-out subset (0 = off).
  t.eval_clips = 16
  t.eval_samples = False  # At eval steps also sample (EMA) joint, audio_to_video and video_to_audio for those clips
  # and log sync metrics (eval/<condition>/<metric>, on talking data eval/a2v_r, eval/v2a_r, ...) next to val_loss.
  t.profile_start = -1  # First step of a jax.profiler trace (-1 = off).
  t.profile_steps = 5
  t.peak_flops_per_device = 0.0  # FLOP/s for MFU; 0 = measure a matmul at start-up (CPU) / known table.

  # ------------------------------------------------------------------ parallelism
  c.mesh = ms = ml_collections.ConfigDict()
  # Mesh axis sizes; -1 takes the devices left over. Product must equal the device count. `context` splits each
  # clip's token sequence (context parallelism, avdiff.models.attention.SequenceParallel): activations are split
  # along the sequence, and attention swaps that split for one over heads (all-to-all, Ulysses); it needs the
  # tokens per clip and model.num_heads / mesh.shape.tensor divisible by it. The mesh is laid out
  # data, fsdp, context, tensor (outermost first), whatever the order here (avdiff.parallel.mesh).
  ms.shape = ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'context': 1, 'tensor': 1})
  ms.data_axes = ('data', 'fsdp')  # Mesh axes the batch is split over.
  # Logical axis -> mesh axes. Parameters and activations carry logical names; this table places them.
  ms.axis_rules = (
      ('batch', ('data', 'fsdp')),
      ('embed', 'fsdp'),
      ('mlp', 'tensor'),
      ('heads', 'tensor'),
      ('kv', None),
      ('length', 'context'),  # Token sequence of activations (context parallelism).
      ('vocab', None),
  )

  # ------------------------------------------------------------------ evaluation
  c.eval = ev = ml_collections.ConfigDict()
  ev.split = 'test'  # Split of experiments.evaluate --workdir (the verdict); in-loop scores read 'validation'.
  ev.params = 'ema'  # Which params of a run sample and evaluate: 'ema' | 'raw'.
  ev.num_clips = 64  # Clips scored per condition.
  ev.seed = 0  # Shuffles, bootstrap and sampling noise of the evaluation.
  ev.sync_window_frames = 5  # Video frames per sync-expert window (SyncNet: 5).
  ev.max_offset_frames = 15  # Offsets searched: -K..K video frames (SyncNet at 25 fps: 15).
  ev.shift_frames = 3  # Offset used for the "shifted audio" lower bound.
  ev.av_align_variant = 'v2'  # 'v1' (original) | 'v2' (0.1 flow floor, one-to-one matching).
  ev.bootstrap_samples = 1000  # Bootstrap resamples for confidence intervals.
  ev.crop_box = ()  # (y0, x0, y1, x1) mouth box for real clips, in native pixels (eval.protocol='native') or in
  # pixels of the resized frame ('config'); () = found by face tracking (eval.faces) or the whole frame. Built-in
  # `talking` clips carry their own mouth_box.
  # Folder mode (experiments.evaluate --clips): 'native' scores every file on its own clock (frame rate, sample
  # rate, resolution, whole file); 'config' reads files at data.fps / data.sample_rate / data.resolution, first
  # data.clip_seconds, like the training data.
  ev.protocol = 'native'
  ev.window_seconds = 10.0  # Native protocol: per-window values over consecutive windows of this length.
  ev.faces = 'auto'  # Face/mouth tracking: 'auto' (when lip-sync scorers run without crop_box) | 'on' | 'off'.
  ev.fvd = True  # Workdir mode: FVD (I3D, avdiff.eval.fvd) of generated videos against the held-out clips.
  ev.fvd_reference = ''  # Folder of reference videos: folder mode adds FVD (I3D) against them.
  ev.sync_expert_workdir = ''  # Trained sync expert ('' = weight-free metrics only, or train one first).
  ev.sync_expert = se = ml_collections.ConfigDict()
  se.embed_dim = 128
  se.width = 32
  se.steps = 1500
  se.batch_size = 32
  se.learning_rate = 1e-3
  se.crop_size = 16  # Mouth crops are resized to crop_size x crop_size pixels before the video stream.
  se.temperature = 0.1  # InfoNCE temperature on squared embedding distances.

  return c
