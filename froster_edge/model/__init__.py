"""The model: the FROSTER student (open_clip CLIP with neighbour-frame attention), the frozen
teacher, residual distillation, checkpoints and the official-release import. Needs torch.

See docs/method.md.
"""
