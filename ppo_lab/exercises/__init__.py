"""The reference answer of every exercise, one module per chapter (names and signatures:
../shared/EXERCISE_API.md). ``ppo_lab`` re-exports them: ``from ppo_lab import compute_gae``."""
