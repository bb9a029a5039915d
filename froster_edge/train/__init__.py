"""Training: `froster-edge train` and `froster-edge average`.

    config.py   recipe YAML + --set overrides -> RecipeConfig, path resolution, checks
    optim.py    AdamW parameter groups and the warm-up + cosine schedule
    sampler.py  the resumable distributed batch sampler (global batch -> per-rank micro-batches)
    ddp.py      process group set-up (torchrun; NCCL on GPU, gloo on CPU) and small collectives
    state.py    training checkpoints: atomic directories, safetensors + JSON, newest-valid resume
    step.py     one optimisation step on tensors (AMP, accumulation, clipping)
    loop.py     the training run: data, epochs, logging, checkpoints, evaluation, final student
    average.py  uniform weight averaging of student directories
    fewshot.py  K-shot-per-class lists from a full list (B2N)
"""
