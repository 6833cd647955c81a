"""An exact change of basis of a Llama's residual stream: same function, other representation.

For an orthogonal Q, the model whose residual stream is ``h Q`` instead of ``h`` computes exactly
the same logits once every RMSNorm gain is folded into the linear layer that reads it: RMSNorm is
invariant under an orthogonal map only without its elementwise gain. This is the cleanest
"model update" that keeps the task and the mechanism but moves every feature direction: a frozen
alignment no longer transfers, while training Boundless DAS again finds the variable as before.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["rotate_residual_basis"]


@torch.no_grad()
def rotate_residual_basis(model: Any, seed: int = 0) -> Any:
    """Rewrite a ``LlamaForCausalLM`` in place so its residual stream is rotated by a random Q."""
    d = model.config.hidden_size
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    q = q.to(model.dtype)
    inner = model.model
    embedding = inner.embed_tokens.weight
    if model.config.tie_word_embeddings:  # untie: the head gets the final norm's gain folded in
        model.lm_head.weight = torch.nn.Parameter(embedding.detach().clone())
        model.config.tie_word_embeddings = False
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj):
            linear.weight.copy_((linear.weight * layer.input_layernorm.weight) @ q)
        layer.input_layernorm.weight.fill_(1.0)
        for linear in (mlp.gate_proj, mlp.up_proj):
            linear.weight.copy_((linear.weight * layer.post_attention_layernorm.weight) @ q)
        layer.post_attention_layernorm.weight.fill_(1.0)
        attn.o_proj.weight.copy_(q.T @ attn.o_proj.weight)
        mlp.down_proj.weight.copy_(q.T @ mlp.down_proj.weight)
    model.lm_head.weight.copy_((model.lm_head.weight * inner.norm.weight) @ q)
    inner.norm.weight.fill_(1.0)
    embedding.copy_(embedding @ q)
    return model
