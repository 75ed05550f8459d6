"""Label-free pretraining of the tiny image tower (clouds pretrain)."""
