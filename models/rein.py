"""Rein (Wei et al., "Stronger, Fewer, & Superior", CVPR 2024): learnable tokens that refine a frozen ViT.

After every block, each patch feature attends (softmax over the tokens, scaled by width^-1/2) to that block's
learnable tokens; the attended token values (through a shared linear map), added to the feature, go through
another linear layer and come back as a small scaled update: f <- f + s * MLP(f + attn(f, T) @ W(T)). The
first token takes part in the softmax but contributes no value, as in the released code. Prefix tokens
(class, registers) pass unchanged. `rank > 0` stores each block's tokens as a rank-r product, as the released
`LoRAReins` (r 16) that the paper's DINOv2 numbers come from.

Not here: the paper's link from the tokens to Mask2Former's object queries (`link_token_to_query`: two linear
layers making the decoder's query embeddings from the tokens); the decoder keeps its own learned queries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Reins(nn.Module):
    """Per-block learnable tokens and the two linear maps every block shares."""

    NO_WEIGHT_DECAY = ("tokens", "tokens_a", "tokens_b", "scale")
    """Parameters the training's AdamW exempts from weight decay (the Rein recipe's decay_mult 0)."""

    def __init__(self, num_layers: int, embed_dim: int, patch_size: int, num_tokens: int = 100, rank: int = 16,
                 scale_init: float = 1e-3) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        # Uniform bound of the released code (VPT-style: from the patch area and the width).
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dim))
        if rank > 0:
            self.tokens_a = nn.Parameter(torch.empty(num_layers, num_tokens, rank).uniform_(-bound, bound))
            self.tokens_b = nn.Parameter(torch.empty(num_layers, rank, embed_dim).uniform_(-bound, bound))
        else:
            self.tokens = nn.Parameter(torch.empty(num_layers, num_tokens, embed_dim).uniform_(-bound, bound))
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))
        self.token_to_feature = nn.Linear(embed_dim, embed_dim)
        self.delta = nn.Linear(embed_dim, embed_dim)

    def layer_tokens(self, layer: int) -> Tensor:
        if hasattr(self, "tokens"):
            return self.tokens[layer]
        return self.tokens_a[layer] @ self.tokens_b[layer]

    def forward(self, x: Tensor, layer: int, num_prefix_tokens: int) -> Tensor:
        """Refine block `layer`'s output x [B, prefix + N, C]; prefix tokens are returned unchanged."""
        prefix, feats = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
        tokens = self.layer_tokens(layer)
        attn = F.softmax(torch.einsum("bnc,mc->bnm", feats, tokens) * self.embed_dim ** -0.5, dim=-1)
        update = torch.einsum("bnm,mc->bnc", attn[..., 1:], self.token_to_feature(tokens[1:]))
        feats = feats + self.delta(update + feats) * self.scale
        return torch.cat([prefix, feats], dim=1)


class ReinHook:
    """Forward hook that applies `reins` to one block's output. A plain object (not a closure) so that deep-copying
    the backbone for the EMA teacher re-points it at the copy's own `Reins`."""

    def __init__(self, reins: Reins, layer: int, num_prefix_tokens: int) -> None:
        self.reins = reins
        self.layer = layer
        self.num_prefix_tokens = num_prefix_tokens

    def __call__(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return self.reins(output, self.layer, self.num_prefix_tokens)
