"""Curation benchmark: seconds per stage, cached re-run, engine and embedding throughput.

    .venv/bin/python infra/bench_curate.py [--recipe builtin] [--home /tmp/space-bench] [--out infra/results]
    .venv/bin/python infra/bench_curate.py --keep --model-dir DIR   # only steps 3 and 4

Runs in a fresh SPACE_HOME (removed first unless --keep), so the first curation is cold:
1. `space bootstrap-model` + `space curate` on the recipe: wall time and each stage's seconds;
2. the same curation again in the same process: all cache hits (wall time);
3. vLLM vs transformers engine throughput (tokens/s) on the built-in model, same prompts, n=8;
4. our `embed_texts` vs sentence-transformers `encode` called directly on the same texts.
Writes <out>/bench_curate.json and prints a markdown table; numbers are what this machine measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="builtin")
    parser.add_argument("--home", default="/tmp/space-bench")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--keep", action="store_true", help="reuse the home instead of starting cold")
    parser.add_argument("--engine-prompts", type=int, default=64)
    parser.add_argument("--model-dir", help="skip the flow timings; benchmark engines on this model directory")
    return parser.parse_args()


def bench_flows(recipe_name: str) -> dict:
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from space.config import load_recipe

    recipe = load_recipe(recipe_name)
    start = time.perf_counter()
    model = bootstrap_flow(recipe)
    bootstrap_s = time.perf_counter() - start
    start = time.perf_counter()
    first = curate_flow(recipe, model)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    curate_flow(recipe, model)
    cached_s = time.perf_counter() - start
    stages = {name: round(m["seconds"], 2) for name, m in first["stages"].items()}
    return {"model": model, "bootstrap_s": round(bootstrap_s, 1), "curate_first_s": round(first_s, 1),
            "curate_cached_s": round(cached_s, 1), "stage_seconds": stages,
            "pool": first["stages"]["select"]["pool"], "selected": first["stages"]["select"]["selected"]}


def bench_engines(model_dir: str, n_prompts: int) -> dict:
    from transformers import AutoTokenizer

    from space.data.sources import DataConfig, load_split
    from space.engines import EngineConfig, make_engine
    from space.data.prompting import render_prompts

    table, _ = load_split(DataConfig(pool_size=n_prompts), "pool")
    prompts = render_prompts(AutoTokenizer.from_pretrained(model_dir), table["question"].to_list())
    ids = table["prompt_id"].to_list()
    out = {}
    for kind in ("transformers", "vllm"):
        start = time.perf_counter()
        with make_engine(EngineConfig(kind=kind), model_dir) as engine:
            ready = time.perf_counter()
            groups = engine.generate(prompts, n=8, temperature=1.0, max_tokens=16, seed=0, prompt_ids=ids)
            gen_s = time.perf_counter() - ready
        tokens = sum(c.num_tokens for g in groups for c in g)
        out[kind] = {"start_s": round(ready - start, 1), "generate_s": round(gen_s, 2), "tokens": tokens,
                     "tokens_per_s": round(tokens / gen_s, 1)}
    return out


def bench_embedding(n_texts: int = 2000) -> dict:
    from space.data.sources import DataConfig, load_split
    from space.curate.embedding import EmbeddingConfig, embed_texts, load_embedder

    texts = load_split(DataConfig(pool_size=n_texts), "pool")[0]["question"].to_list()
    cfg = EmbeddingConfig()
    model = load_embedder(cfg)
    model.encode(texts[:256], batch_size=cfg.batch_size)  # warm-up, excluded from both timings
    timings = {}
    for name, call in (("sentence_transformers", lambda: model.encode(texts, batch_size=cfg.batch_size,
                                                                      normalize_embeddings=True)),
                       ("space", lambda: embed_texts(model, texts, cfg.batch_size, show_progress=False))):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            call()
            runs.append(time.perf_counter() - start)
        timings[name] = round(min(runs), 3)
    timings["texts"] = len(texts)
    timings["overhead_pct"] = round(100 * (timings["space"] / timings["sentence_transformers"] - 1), 1)
    return timings


def main() -> None:
    args = _args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    home = Path(args.home)
    if home.exists() and not args.keep:
        shutil.rmtree(home)
    os.environ["SPACE_HOME"] = str(home)
    import tasks  # noqa: F401  (environment defaults for this SPACE_HOME)

    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "recipe": args.recipe}
    if args.model_dir is None:
        result["flows"] = bench_flows(args.recipe)
    model_dir = args.model_dir or result["flows"]["model"]["path"]
    result["engines"] = bench_engines(model_dir, args.engine_prompts)
    result["embedding"] = bench_embedding()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_curate.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
