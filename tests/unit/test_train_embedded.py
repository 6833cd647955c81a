"""The two-phase training recipe of the embedded model runs end to end (a tiny smoke version)."""

from __future__ import annotations

from das_assert.embedded.train import TrainConfig, train_embedded
from das_assert.models import load_model


def tiny(steps: int, focus_steps: int) -> TrainConfig:
    """The recipe's two phases at a toy size: seconds, not half an hour."""
    return TrainConfig(
        steps=steps,
        focus_steps=focus_steps,
        batch_size=4,
        warmup_steps=1,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        threads=1,
    )


def test_a_tiny_two_phase_training_saves_a_loadable_llama_directory(tmp_path):
    log = train_embedded(tmp_path, tiny(steps=3, focus_steps=2), log_every=1)
    assert [entry["step"] for entry in log["history"]] == [1, 2, 3, 4, 5]
    loaded = load_model(tmp_path)
    assert loaded.config.model_type == "llama"
    assert loaded.config.num_hidden_layers == 1


def test_training_is_deterministic_for_a_seed(tmp_path):
    cfg = tiny(steps=2, focus_steps=1)
    train_embedded(tmp_path / "a", cfg, log_every=1)
    train_embedded(tmp_path / "b", cfg, log_every=1)
    weights = [(tmp_path / run / "model.safetensors").read_bytes() for run in ("a", "b")]
    assert weights[0] == weights[1]


def test_the_shared_preamble_step_has_the_whole_batchs_loss_and_gradients():
    import random

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from das_assert.embedded.recipe import build_tokenizer, training_example
    from das_assert.embedded.train import _batch, answer_logits

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    rng = random.Random(0)
    encoded, labels, last = _batch(tokenizer, [training_example(rng) for _ in range(16)])
    assert encoded["attention_mask"].sum(dim=1).unique().numel() > 1  # padding is exercised

    def loss_and_grads(logits):
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    whole = model(**encoded).logits[torch.arange(len(labels)), last]
    shared = answer_logits(model, encoded, last)
    loss_whole, grads_whole = loss_and_grads(whole)
    loss_shared, grads_shared = loss_and_grads(shared)
    torch.testing.assert_close(shared, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_shared, loss_whole)
    for got, want in zip(grads_shared, grads_whole, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
