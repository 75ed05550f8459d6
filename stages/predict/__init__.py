"""Applying a trained segmenter to images outside the pipeline: `clouds predict` and `clouds/predict`."""
