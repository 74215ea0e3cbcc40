"""The model, switch by switch: shapes, causality, KV cache = recomputation, gradients into every
part, save/load, and with every extra off, plain Llama logits."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from ltm.config import ModelConfig
from ltm.model import LtmConfig, LtmForCausalLM
from ltm.model.cache import KVCache, StaticKVCache
from ltm.model.scene_state import SceneStates

VOCAB = 97
LENSES = ["plain", "scene", "critic", "child"]
MARKERS = ["scene", "/scene", "header", "body", "tension:low", "tension:medium", "tension:high",
           "loop:claim", "loop:doubt", "loop:inversion", "loop:new"] + [f"lens:{lens}" for lens in LENSES]
IDS = {name: 80 + i for i, name in enumerate(MARKERS)}  # the last 17 ids of the vocabulary are markers

SWITCHES = {
    "plain": {},
    "scene_state": {"scene_state": True},
    "channels": {"channels": 4, "channel_aux_weight": 0.1},
    "loop": {"loop_core_layers": 2, "loop_prelude_layers": 1, "loop_max_steps": 3, "think_steps": 3, "loop_aux_weight": 0.1},
    "all": {"scene_state": True, "channels": 4, "channel_aux_weight": 0.1, "loop_core_layers": 2, "loop_prelude_layers": 1,
            "loop_max_steps": 3, "think_steps": 3, "scene_aux_weight": 0.1, "loop_aux_weight": 0.1},
}


def make(switch: str, **overrides) -> LtmForCausalLM:
    torch.manual_seed(0)
    config = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=40, scene_token_ids=IDS) | SWITCHES[switch] | overrides
    return LtmForCausalLM(LtmConfig(**config))


def scene_batch(batch: int = 2) -> torch.Tensor:
    """Token ids laid out like the builder's scenes: markers, header, body, closing marker."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for b in range(batch):
        words = torch.randint(0, 80, (30,), generator=g).tolist()
        lens = ["lens:critic", "lens:child"][b % 2]
        row = [IDS["scene"], IDS[lens], IDS["header"], IDS["tension:high"], IDS["loop:doubt"], *words[:4], IDS["body"],
               *words[4:22], IDS["/scene"], IDS["scene"], *words[22:30]]
        rows.append(row)
    return torch.tensor(rows)


@pytest.mark.parametrize("switch", SWITCHES)
def test_shapes_and_loss_parts(switch):
    model = make(switch).train()
    x = scene_batch()
    out = model(x[:, :-1], x[:, 1:])
    assert out.logits.shape == (2, x.shape[1] - 1, VOCAB)
    expected = {"lm"} | {"channel" for _ in [0] if "channel_aux_weight" in SWITCHES[switch]} \
        | {"scene" for _ in [0] if "scene_aux_weight" in SWITCHES[switch]}
    assert expected <= set(out.losses)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("switch", SWITCHES)
def test_a_future_token_never_changes_an_earlier_logit(switch):
    model = make(switch).eval()
    x = scene_batch(1)
    y = x.clone()
    y[0, 20:] = (y[0, 20:] + 1) % 80
    a, b = model(x).logits, model(y).logits
    assert torch.allclose(a[0, :20], b[0, :20], atol=1e-5)
    assert not torch.allclose(a[0, 20:], b[0, 20:])


@pytest.mark.parametrize("switch", SWITCHES)
def test_kv_cache_generation_equals_full_recomputation(switch):
    model = make(switch).eval()
    prompt = scene_batch(2)[:, :12]
    cached = model.generate_ids(prompt, 20, use_cache=True)
    recomputed = model.generate_ids(prompt, 20, use_cache=False)
    assert torch.equal(cached, recomputed) and cached.shape == (2, 20)
    # Step by step, the cached logits are the full forward's logits.
    cache = KVCache()
    full = model(torch.cat([prompt, cached], 1)).logits
    step = model(prompt, cache=cache).logits
    assert torch.allclose(step, full[:, :12], atol=1e-5)
    for i in range(5):
        step = model(cached[:, i : i + 1], cache=cache).logits
        assert torch.allclose(step[:, 0], full[:, 12 + i], atol=1e-5)


@pytest.mark.parametrize("switch", SWITCHES)
def test_static_cache_rows_at_their_own_positions_match_full_recomputation(switch):
    """What the server's batched decoding relies on: rows prefilled to different lengths, then
    decoded together, each give the logits of its own full forward (an idle row beside them)."""
    model = make(switch).eval()
    seqs = scene_batch(2)
    full = model(seqs).logits
    cache = StaticKVCache(rows=3, context=model.config.max_position_embeddings, device=torch.device("cpu"), dtype=torch.float32)
    lengths = (12, 7)
    for row, n in enumerate(lengths):
        logits = model(seqs[row : row + 1, :n], cache=cache.view(slice(row, row + 1), torch.tensor([0]))).logits
        assert torch.allclose(logits[0], full[row, :n], atol=1e-5)
    start = torch.tensor([*lengths, 0])
    for i in range(5):
        tokens = torch.tensor([[seqs[0, lengths[0] + i]], [seqs[1, lengths[1] + i]], [0]])
        logits = model(tokens, cache=cache.view(slice(0, 3), start)).logits[:, 0]
        assert torch.allclose(logits[0], full[0, lengths[0] + i], atol=1e-5)
        assert torch.allclose(logits[1], full[1, lengths[1] + i], atol=1e-5)
        start[:2] += 1


@pytest.mark.parametrize("switch", SWITCHES)
def test_gradient_reaches_every_part(switch):
    model = make(switch).train()
    x = scene_batch()
    torch.manual_seed(3)
    model(x[:, :-1], x[:, 1:], think_steps=3 if "loop" in switch or switch == "all" else None).loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []


def test_residual_stream_in_the_autocast_dtype_only_when_asked():
    model = make("plain").train()
    seen = []
    model.model.layers[1].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    x = scene_batch()
    for asked in (False, True):
        model.model.autocast_residual = asked
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.isfinite(model(x[:, :-1], x[:, 1:]).loss)
    assert seen == [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("switch", SWITCHES)
def test_save_and_load_round_trip(switch, tmp_path):
    model = make(switch).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()  # registered Auto class
    assert type(loaded) is LtmForCausalLM
    x = scene_batch()
    assert torch.equal(loaded(x).logits, model(x).logits)


def test_with_every_extra_off_it_is_a_llama():
    model = make("plain").eval()
    assert model.config.is_plain_llama and not make("scene_state").config.is_plain_llama
    from ltm.model.export import llama_config

    llama = LlamaForCausalLM(llama_config(model.config)).eval()
    assert not llama.load_state_dict(model.state_dict(), strict=False).unexpected_keys
    x = scene_batch()
    assert torch.allclose(llama(x).logits, model(x).logits, atol=1e-4)
    from ltm.model.factory import from_llama

    assert torch.allclose(from_llama(llama).eval()(x).logits, model(x).logits, atol=1e-5)  # and back


def test_scene_states_follow_the_markers():
    model = make("scene_state")
    x = scene_batch(1)
    states = SceneStates(model.config)(x)
    assert states["region"][0, :3].tolist() == [1, 1, 2]  # scene opens, lens marker, header
    assert states["region"][0, 9:11].tolist() == [3, 3]  # body
    assert states["tension"][0, 2].item() == 0 and states["tension"][0, 3:28].eq(3).all()  # high from its marker on
    assert states["loop"][0, 4:28].eq(2).all()  # doubt
    lens = model.config.lens_names.index("critic") + 1
    assert states["lens"][0, 1:28].eq(lens).all()
    assert states["region"][0, 28].item() == 0 and states["tension"][0, 28].item() == 0  # closed: reset
    assert states["region"][0, 29].item() == 1 and states["tension"][0, 29:].eq(0).all()  # a new scene, no tension yet


def test_loop_steps_change_the_output_and_one_step_is_the_plain_stack():
    model = make("loop").eval()
    x = scene_batch(1)
    one, three = model(x, think_steps=1).logits, model(x, think_steps=3).logits
    assert not torch.allclose(one, three)
    plain = make("plain").eval()
    plain.load_state_dict(model.state_dict())
    assert torch.allclose(plain(x).logits, one, atol=1e-5)  # r = 1 runs every layer once, in order


def test_channels_mix_by_a_softmax_gate_and_keep_the_parameter_count():
    plain, routed = make("plain"), make("channels")
    gates = [m.last_gate for m in routed.modules() if hasattr(m, "last_gate")]
    routed(scene_batch())
    gates = [m.last_gate for m in routed.modules() if hasattr(m, "last_gate")]
    assert all(torch.allclose(g.sum(-1), torch.ones(())) for g in gates)
    extra = routed.num_parameters() - plain.num_parameters()
    assert 0 < extra <= 4 * (32 * 4)  # the gates, and no more than rounding of the channel widths


def test_config_refuses_inconsistent_switches():
    with pytest.raises(ValueError, match="scene_token_ids"):
        LtmConfig(vocab_size=97, hidden_size=32, num_attention_heads=4, scene_state=True)
    with pytest.raises(ValueError, match="exceeds n_layers"):
        LtmConfig(vocab_size=97, hidden_size=32, num_attention_heads=4, num_hidden_layers=2, loop_core_layers=2, loop_prelude_layers=1)
    with pytest.raises(ValueError, match="exceeds n_layers"):  # and so does the run config, before any run
        ModelConfig(n_layers=2, loop_core_layers=2, loop_prelude_layers=1)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        make("plain")(torch.zeros(1, 41, dtype=torch.long))


def test_flops_count_the_loop_at_its_mean_depth():
    plain, looped = make("plain"), make("loop")
    assert looped.flops_per_token(40) > plain.flops_per_token(40)
    # Core of 2 in 6 layers, r in 1..4: 9 layer runs forward (mean 2.5 steps); backward through the last
    # 2 steps only, 7.5 runs: 2·9 + 4·7.5 = 6·8, the training FLOPs of a plain stack of 8 layers.
    loop = dict(loop_prelude_layers=2, loop_core_layers=2, loop_max_steps=4, loop_backprop_steps=2)
    assert make("plain", num_hidden_layers=6, **loop).flops_per_token(40) == make("plain", num_hidden_layers=8).flops_per_token(40)
    # Backpropagating through every step, the loop counts as its mean depth both ways: 9 layers.
    full = make("plain", num_hidden_layers=6, **(loop | {"loop_backprop_steps": 4})).flops_per_token(40)
    assert full == make("plain", num_hidden_layers=9).flops_per_token(40)


def test_tables_made_ahead_for_cuda_are_keyed_as_the_tensors_report_their_device(monkeypatch):
    from ltm.model.layers import indexed

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert indexed(torch.device("cuda")) == torch.device("cuda", 1)  # what a tensor on the current GPU reports
    assert indexed(torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert indexed(torch.device("cpu")) == torch.device("cpu")
