"""The trainers, each one file to read top to bottom: ``ppo`` (PPO-Clip, PPO-KL, vanilla PG), ``trpo``,
``rlhf`` (PPO with a KL penalty on a tiny language model); ``rollout`` collects their data and
``config`` holds what they share."""
