"""Ablation studies: sweeps of small config deltas x seeds (`sweep`), and runs side by side (`compare`)."""
