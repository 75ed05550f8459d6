"""Stage `pseudo-label`: the EMA teacher labels generated images on their clean view."""

from stages.pseudo_label.labeler import label_images
from stages.pseudo_label.stage import label_shard, prepare_pseudo_label, pseudo_label_settings

__all__ = ["label_images", "label_shard", "prepare_pseudo_label", "pseudo_label_settings"]
