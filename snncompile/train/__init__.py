"""Training and float evaluation of zoo models."""
