"""avdiff: joint audio-video latent diffusion in JAX/Flax."""
