"""The train stage: warm-up and joint self-training of the segmenter, resumable, into checkpoint artifacts."""

from stages.train.loop import TrainState, run_iterations
from stages.train.stage import load_state, train

__all__ = ["TrainState", "load_state", "run_iterations", "train"]
