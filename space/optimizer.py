"""AdamW with weight decay on matrices only: the one parameter grouping that SFT (models/tiny) and GRPO share.

    optimizer = adamw(model, lr=3e-3, weight_decay=0.01, betas=(0.9, 0.98))

Weight decay applies to parameters with two or more dimensions (embeddings, linear weights), not to 1-d ones
(norm gains, biases), as in nanoGPT's `configure_optimizers`; frozen parameters are left out.
"""

from __future__ import annotations

from typing import Any


def decay_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Two parameter groups in `model.parameters()` order: >= 2-d params with decay, 1-d params without."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]


def adamw(model: Any, *, lr: float, weight_decay: float, betas: tuple[float, float], eps: float = 1e-8) -> Any:
    """torch.optim.AdamW over `decay_groups(model, weight_decay)` (torch is imported here, not at import)."""
    import torch

    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)
