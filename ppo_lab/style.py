"""One colour per idea, the same in every chapter's figures and widgets."""

COLORS = {
    "unclipped": "#1f77b4",  # r * A, the plain surrogate
    "clipped": "#ff7f0e",  # clip(r, 1 - eps, 1 + eps) * A
    "objective": "#2ca02c",  # min of the two: what PPO optimises
    "zero_grad": "#d62728",  # shading where the clip removes the gradient
    "vanilla_pg": "#7f7f7f",
    "trpo": "#9467bd",
    "ppo_clip": "#2ca02c",
    "ppo_kl": "#17becf",
    "truth": "#000000",  # true values / true advantages
    "estimate": "#1f77b4",
    "reward_model": "#e377c2",
    "human": "#8c564b",  # the hidden rule the reward model tries to learn
    "kl": "#bcbd22",
}
ZERO_GRAD_ALPHA = 0.15
