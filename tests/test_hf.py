"""Hugging Face: a tiny random Llama (2 layers, 4 heads, 2 KV heads) built from a config, no downloads."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")
from transformers import AttentionInterface, AutoModelForCausalLM, LlamaConfig
from transformers.masking_utils import AttentionMaskInterface

from combiner_dsl import api, hf
from combiner_dsl.oracle import oracle_attention

ROOT = Path(__file__).resolve().parent.parent
STREAMING = [*sorted((ROOT / "examples" / "streaming").glob("*.cmb")), ROOT / "examples" / "combiner_logsparse.cmb"]
FIXED16 = ROOT / "examples" / "streaming" / "fixed_block16.cmb"


@cache
def registered(path: Path) -> hf.Registration:
    spec = api.load(path)
    return hf.register(spec, f"combiner_{path.stem}", verdict=spec.check(L=range(1, 40), streaming=True))


def model(impl: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, attn_implementation=impl).to(dtype)  # a config of its own: models do not share it


def generate(m: Any, ids: torch.Tensor, use_cache: bool) -> Any:
    return m.generate(ids, max_new_tokens=32, do_sample=False, use_cache=use_cache, output_logits=True, return_dict_in_generate=True, pad_token_id=0)


def check_generate(path: Path) -> None:
    reg = registered(path)
    assert reg.streaming
    m = model(reg.name).eval()
    ids = torch.randint(1, 256, (2, 19), generator=torch.Generator().manual_seed(1))
    cached, plain = generate(m, ids, True), generate(m, ids, False)
    assert torch.equal(cached.sequences, plain.sequences)
    with torch.no_grad():
        full = m(cached.sequences).logits[:, ids.shape[1] - 1 : -1]
    torch.testing.assert_close(torch.stack(cached.logits, 1), full, rtol=0, atol=1e-5)
    assert hf.CACHE_ATTR in vars(m.model.layers[0].self_attn)  # the steps went through the Combiner cache


@pytest.mark.slow
def test_generate_with_the_combiner_cache_matches_full_forwards() -> None:
    check_generate(FIXED16)


@pytest.mark.slow
@pytest.mark.parametrize("path", STREAMING, ids=lambda p: p.stem)
def test_generate_every_streaming_example(path: Path) -> None:
    check_generate(path)


def reference(pattern: Any) -> Callable[..., tuple[torch.Tensor, None]]:
    """The dense oracle on repeated K/V: independent of the compiled module and its GQA path."""

    def attention(module: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any, scaling: float | None = None, dropout: float = 0.0, **kw: Any) -> tuple[torch.Tensor, None]:
        G = q.shape[1] // k.shape[1]
        return oracle_attention(pattern, q, k.repeat_interleave(G, 1), v.repeat_interleave(G, 1), scale=scaling).transpose(1, 2), None

    return attention


def test_training_step_matches_the_oracle_and_right_padding_is_exact() -> None:
    reg = registered(FIXED16)
    AttentionInterface.register("combiner_oracle_ref", reference(reg.spec.pattern))
    AttentionMaskInterface.register("combiner_oracle_ref", hf.padding_mask)
    ids = torch.randint(1, 256, (2, 40), generator=torch.Generator().manual_seed(2))
    losses, grads = [], []
    for impl in (reg.name, "combiner_oracle_ref"):
        m = model(impl, torch.float64).train()
        loss = m(ids, labels=ids).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad for n, p in m.named_parameters()})
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-10)
    for n, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][n], rtol=1e-8, atol=1e-10, msg=n)
    # right padding: the second sequence is 23 tokens long, padded to 40
    m = model(reg.name, torch.float64).train()
    mask = torch.ones_like(ids)
    mask[1, 23:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    padded = m(ids, attention_mask=mask, labels=labels)
    alone = [m(ids[:1]).logits[0], m(ids[1:, :23]).logits[0]]
    torch.testing.assert_close(padded.logits[0], alone[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(padded.logits[1, :23], alone[1], rtol=0, atol=1e-10)
    per_token = [torch.nn.functional.cross_entropy(lg[:-1], ids[b, 1 : lg.shape[0]], reduction="sum") for b, lg in enumerate(alone)]
    torch.testing.assert_close(padded.loss.double(), sum(per_token) / (39 + 22), rtol=1e-6, atol=1e-6)  # transformers takes the loss in float32


@pytest.mark.slow
def test_inputs_it_cannot_serve_raise_with_the_remedy() -> None:
    reg = registered(FIXED16)
    m = model(reg.name).eval()
    ids = torch.randint(1, 256, (2, 12), generator=torch.Generator().manual_seed(3))
    left = torch.ones_like(ids)
    left[1, :3] = 0
    with pytest.raises(ValueError, match=r"left padding.*padding_side = 'right'"):
        m(ids, attention_mask=left)
    isqrt = registered(ROOT / "examples" / "combiner_fixed.cmb")
    assert not isqrt.streaming
    m = model(isqrt.name).eval()
    with pytest.raises(ValueError, match=r"not prefix-stable.*use_cache=False"):
        generate(m, ids, True)
    assert generate(m, ids, False).sequences.shape == (2, 44)  # without a cache it is exact, and allowed
    bidir = registered(ROOT / "examples" / "combiner_fixed_bidir.cmb")
    right = torch.ones_like(ids)
    right[1, 9:] = 0
    with pytest.raises(ValueError, match=r"bidirectional.*no padding"):
        model(bidir.name)(ids, attention_mask=right)


@pytest.mark.slow
def test_readme_hugging_face_example_runs_as_written(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use in a Hugging Face model") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    (tmp_path / "example.py").write_text(code)
    run = subprocess.run([sys.executable, str(tmp_path / "example.py")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["proved", "proved", "torch.Size([1,", "72])"]
