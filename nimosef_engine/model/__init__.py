"""The implicit network (Gabor residual backbone + heads) and its checkpoints."""
