import torch

from ltm.model import LtmConfig, LtmForCausalLM


def _model(**overrides) -> LtmForCausalLM:
    torch.manual_seed(0)
    config = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    return LtmForCausalLM(LtmConfig(**(config | overrides)))


def test_shapes_and_loss():
    model = _model()
    x, y = torch.randint(0, 97, (2, 3, 16))
    logits, loss = model(x, y)
    assert logits.shape == (3, 16, 97)
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.3  # near uniform at init


def test_causal_future_tokens_do_not_change_earlier_logits():
    model = _model()
    x = torch.randint(0, 97, (1, 16))
    y = x.clone()
    y[0, 10:] = (y[0, 10:] + 1) % 97
    a, _ = model(x)
    b, _ = model(y)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:])


def test_save_load_round_trip(tmp_path):
    model = _model()
    x = torch.randint(0, 97, (2, 12))
    model.save_pretrained(tmp_path / "m")
    loaded = LtmForCausalLM.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


def test_untied_embeddings_and_gradients_reach_every_parameter():
    model = _model(tie_word_embeddings=False)
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    x = torch.randint(0, 97, (2, 16))
    model(x, x)[1].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_rejects_sequences_longer_than_the_context():
    import pytest

    with pytest.raises(ValueError, match="max_position_embeddings"):
        _model()(torch.zeros(1, 17, dtype=torch.long))


def test_flops_per_token_counts_the_matmuls():
    model = _model()
    c = model.config
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * (c.hidden_size // 2) + 3 * c.hidden_size * c.intermediate_size
    assert model.flops_per_token(16) == 6 * (2 * per_layer + 5 * 32 + 97 * 32) + 12 * 2 * 32 * 16
