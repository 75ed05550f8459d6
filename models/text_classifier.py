"""CLIP text embeddings of the 19 classes, as FC-CLIP and the CLOUDS reference build them.

Each class has a few synonyms; each synonym is written into the 14 ViLD prompt templates, encoded by the
CLIP text tower, L2-normalised, averaged over templates and normalised again. A query is scored against
every synonym and a class takes the max over its synonyms (OpenSeg/ODISE "max ensemble").
"""

from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROMPT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

# FC-CLIP's prompt-engineered Cityscapes names (the file the CLOUDS reference reads), train-id order.
CLASS_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("road", "railroad"),
    ("sidewalk", "pavement"),
    ("building", "buildings", "edifice", "edifices", "house", "ceiling"),
    ("wall", "walls", "brick wall", "stone wall", "tile wall", "wood wall"),
    ("fence", "fences"),
    ("pole", "poles"),
    ("traffic light", "traffic signal"),
    ("traffic sign", "stop sign"),
    ("vegetation", "tree", "trees", "palm tree", "bushes"),
    ("terrain", "river", "sand", "sea", "snow", "water", "mountain", "grass", "dirt", "rock"),
    ("sky", "clouds"),
    ("person",),
    ("rider",),
    ("car", "cars"),
    ("truck", "trucks"),
    ("bus", "buses"),
    ("train", "locomotive"),
    ("motorcycle", "motorcycles"),
    ("bicycle", "bicycles"),
)


@torch.no_grad()
def encode_class_prompts(
    clip_model: nn.Module,
    tokenizer: open_clip.tokenizer.SimpleTokenizer,
    synonyms: Sequence[Sequence[str]] = CLASS_SYNONYMS,
    templates: Sequence[str] = PROMPT_TEMPLATES,
) -> tuple[Tensor, Tensor]:
    """Return (embeddings [S,D] unit norm, one row per synonym; class_index [S] long, its class)."""
    names = [name for group in synonyms for name in group]
    class_index = torch.tensor([c for c, group in enumerate(synonyms) for _ in group], dtype=torch.long)
    prompts = [t.format(name) for name in names for t in templates]
    device = next(clip_model.parameters()).device
    was_training = clip_model.training
    clip_model.eval()
    chunks = []
    for start in range(0, len(prompts), 128):
        tokens = tokenizer(prompts[start:start + 128]).to(device)
        chunks.append(clip_model.encode_text(tokens).float())
    clip_model.train(was_training)
    emb = F.normalize(torch.cat(chunks), dim=-1).view(len(names), len(templates), -1).mean(1)
    return F.normalize(emb, dim=-1).cpu(), class_index


class TextClassifier(nn.Module):
    """Fixed class text embeddings (saved with the decoder, so a checkpoint never needs the text tower)."""

    def __init__(self, embeddings: Tensor, class_index: Tensor, num_classes: int) -> None:
        super().__init__()
        if embeddings.shape[0] != class_index.shape[0]:
            raise ValueError(f"{embeddings.shape[0]} text embeddings but {class_index.shape[0]} class indices")
        if int(class_index.max()) != num_classes - 1 or int(class_index.min()) != 0:
            raise ValueError(f"class_index must cover classes 0..{num_classes - 1}")
        self.num_classes = num_classes
        self.register_buffer("embeddings", embeddings.float().clone())
        self.register_buffer("class_index", class_index.long().clone())

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def class_logits(self, x: Tensor, logit_scale: Tensor) -> Tensor:
        """Cosine similarity of x [...,D] to every synonym, scaled, max over each class's synonyms: [...,K]."""
        scale = torch.clamp(logit_scale.exp(), max=100)
        sims = scale * F.normalize(x, dim=-1) @ self.embeddings.t()
        out = sims.new_full((*sims.shape[:-1], self.num_classes), float("-inf"))
        index = self.class_index.expand_as(sims)
        return out.scatter_reduce(-1, index, sims, reduce="amax", include_self=True)
