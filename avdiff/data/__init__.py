"""Data: procedural AV clips (synthetic), log-mel features (audio), video file io (av_io), TFDS builders
(builders) and the sharded, resumable input pipeline (pipeline)."""
