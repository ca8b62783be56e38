"""The networks: ``actor_critic`` (discrete and Gaussian policies with a critic) and ``tiny_lm`` (chapter 8's
language model, its corpus and sampling)."""
