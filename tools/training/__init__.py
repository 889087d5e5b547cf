"""Training: building the loader, model, loss and optimizer from a config (build), the
schedule, parameter groups and EMA (optim), the loop (trainer) and checkpoints."""
