"""CLOUDS: collaborating foundation models for domain-generalized semantic segmentation."""

__version__ = "0.1.0"
