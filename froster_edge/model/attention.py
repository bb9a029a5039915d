"""Neighbour-frame attention (Open-VCLIP / FROSTER): CLIP's own attention made temporal.

In every visual block the queries of frame t attend to the keys and values of frames [t+1, t-1, t],
with CLIP's own projections (no new parameter, so plain CLIP checkpoints load strictly). A missing
neighbour at the clip's ends is zeros, not masked, as in the reference; no temporal position
embedding. Only open_clip's default `ResidualAttentionBlock` is supported; qk-norm or
scaled-cosine blocks are refused by `make_temporal`.

See docs/method.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerScale, ResidualAttentionBlock
from torch import nn

from ..errors import ConfigError


def neighbor_tokens(x: torch.Tensor) -> torch.Tensor:
    """Per frame, the tokens of its next, previous and own frame, zeros past the clip's ends.

    Frames on axis 1, tokens on axis -2: (B, T, H, L, d) -> (B, T, H, 3L, d)
    """
    padded = F.pad(x, (0, 0) * (x.dim() - 2) + (1, 1))  # (B, T+2, ...), a zero frame at each end
    nxt, prev = padded[:, 2:], padded[:, :-2]
    return torch.cat([nxt, prev, x], dim=-2)


class NeighborFrameBlock(ResidualAttentionBlock):
    """A CLIP residual block whose self-attention also looks at the neighbouring frames.

    Same parameters and names as `ResidualAttentionBlock`; `forward` takes (B*T, L, C) tokens,
    frame-major within each clip, and the number of frames T.
    """

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:  # type: ignore[override]
        x = x + self.ls_1(self.neighbor_attention(self.ln_1(x), num_frames))
        x = x + self.ls_2(self.mlp(self.ln_2(x)))
        return x

    def neighbor_attention(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        attn = self.attn
        BT, L, C = x.shape
        T = num_frames
        B = BT // T
        H = attn.num_heads
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)  # 3 x (BT, L, C)
        d = C // H
        q = q.reshape(BT, L, H, d).transpose(1, 2)  # (BT, H, L, d)

        def joined(t: torch.Tensor) -> torch.Tensor:  # heads split per frame, then frames joined: transposes move L tokens, not 3L
            return neighbor_tokens(t.reshape(B, T, L, H, d).transpose(2, 3)).reshape(BT, H, 3 * L, d)

        k, v = joined(k), joined(v)  # (BT, H, 3L, d)
        dropout = attn.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (BT, H, L, d)
        y = y.transpose(1, 2).reshape(BT, L, C)
        return attn.out_proj(y)


def make_temporal(block: nn.Module) -> NeighborFrameBlock:
    """A `NeighborFrameBlock` holding a copy of `block`'s weights (same names, strict load)."""
    if type(block) is not ResidualAttentionBlock:
        raise ConfigError(
            f"neighbour-frame attention needs open_clip's default ResidualAttentionBlock, got {type(block).__name__}"
        )
    if not block.attn.batch_first or hasattr(block, "ln_1_kv"):
        raise ConfigError("neighbour-frame attention needs batch-first self-attention blocks")
    width = block.ln_1.normalized_shape[0]
    new = NeighborFrameBlock(
        width,
        block.attn.num_heads,
        mlp_ratio=block.mlp.c_fc.out_features / width,
        ls_init_value=1.0 if isinstance(block.ls_1, LayerScale) else None,  # gamma comes with the state
        act_layer=type(block.mlp.gelu),
        norm_layer=type(block.ln_1),
        batch_first=True,
    )
    new.attn.dropout = block.attn.dropout
    new.ln_1.eps, new.ln_2.eps = block.ln_1.eps, block.ln_2.eps
    new.load_state_dict(block.state_dict(), strict=True)
    return new.to(next(block.parameters()).device)
