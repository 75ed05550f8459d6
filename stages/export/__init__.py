"""One-file exports of a checkpoint (`clouds export`) and the model card written beside them."""
