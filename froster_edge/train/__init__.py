"""Training: `froster-edge train` and `froster-edge average`. Needs torch.

config (recipe YAML + --set -> RecipeConfig), optim (AdamW groups, warm-up + cosine), batches (the
resumable distributed batch sampler), ddp (process group, collectives), state (atomic, resumable
training checkpoints), step (one optimisation step), loop (the run), average (uniform weight
averaging), fewshot (K-shot lists for B2N).

See docs/training.md.
"""
