"""Curation tasks: one cached Prefect task per stage of method.md section 2.

Each task reads its inputs by path, calls `space`, writes its outputs under
SPACE_HOME/artifacts/<stage>/<fingerprint>/ and returns a small manifest (paths, content hash, a few
numbers). The inputs that key the cache are the stage's config and the upstream manifests (which carry
content hashes), so changing K re-runs only clustering and selection.
"""

from __future__ import annotations

import json
import time
from itertools import compress
from typing import Any

import numpy as np
import polars as pl
from prefect import task

from space.curate.clustering import ClusterConfig
from space.config import Recipe, VerifierConfig
from space.data.sources import DataConfig
from space.curate.difficulty import DifficultyConfig
from space.curate.embedding import EmbeddingConfig
from space.engines import EngineConfig
from space.curate.features import FeatureConfig
from space.curate.reduction import SelectionConfig
from tasks.common import CACHED, file_sha256, open_stage, write_manifest
from tasks.progress import generate_with_progress, progress_bar, start_engine
from tasks.stages import STAGE_OPTIONS


@task(**STAGE_OPTIONS, name="load-data", cache_policy=CACHED, persist_result=True)
def load_data(data: DataConfig) -> dict[str, Any]:
    """The pool and eval splits as parquet, with their load reports."""
    from space.data.sources import load_split

    out, done, start = open_stage("data", data)
    if done is not None:
        return done
    manifest = {}
    for split in ("pool", "eval"):
        loaded = load_split(data, split)
        manifest[split] = None if loaded is None else _split_manifest(out, split, *loaded)
    manifest["seconds"] = time.perf_counter() - start
    return write_manifest(out, manifest)


@task(**STAGE_OPTIONS, name="check-lengths")
def check_lengths(data: dict[str, Any], model: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """Fail before any engine starts when a completion limit cannot hold the longest gold answer."""
    from transformers import AutoTokenizer

    from space.data.lengths import check_completion_lengths

    pool_limits = {"curate.difficulty.max_tokens": recipe.curate.difficulty.max_tokens,
                   "train.grpo.max_completion_length": recipe.train.grpo.max_completion_length}
    if recipe.curate.difficulty.source == "label":  # no reference rollouts (propagate rolls out its fraction)
        del pool_limits["curate.difficulty.max_tokens"]
    splits = {"pool": (pl.read_parquet(data["pool"]["path"]), pool_limits),
              "eval": (pl.read_parquet(data["eval"]["path"]) if data.get("eval") else None,
                       {"eval.max_tokens": recipe.eval.max_tokens})}
    tokenizer = AutoTokenizer.from_pretrained(model["path"])
    return check_completion_lengths(tokenizer, splits, recipe.verifier.extract)


def _split_manifest(out, split: str, table: pl.DataFrame, report) -> dict[str, Any]:
    path = out / f"{split}.parquet"
    table.write_parquet(path)
    return {"path": str(path), "sha": file_sha256(path), "rows": table.height, "summary": report.summary(split),
            "report": {**report.as_metrics(f"data/{split}"), "bad_rows": report.bad_rows[:50],
                       "overlap": report.overlap[:50]}}


def load_summary(data: dict[str, Any]) -> str:
    """The console's load report: one line per split (rows read, kept, skipped and why)."""
    return "\n".join(data[split]["summary"] if data[split] else f"{split}: none (this recipe has no eval set)"
                     for split in ("pool", "eval"))


@task(**STAGE_OPTIONS, name="fit-context", cache_policy=CACHED, persist_result=True)
def fit_context(data: dict[str, Any], model: dict[str, Any], system_prompt: str | None, max_new_tokens: int,
                bad_rows: str, enable_thinking: bool | None = None) -> dict[str, Any]:
    """Before any engine starts: drop (or, with bad_rows=reject, refuse) every prompt whose rendered
    length plus `max_new_tokens` exceeds the model's context, naming each one."""
    from transformers import AutoTokenizer

    from space.data.sources import DataError
    from space.data.prompting import model_context, prompt_lengths, render_prompts, too_long

    out, done, start = open_stage("fit-context", data["pool"]["sha"], (data["eval"] or {}).get("sha"), model["sha"],
                                  system_prompt, max_new_tokens, bad_rows, enable_thinking,
                                  inputs=(data["pool"], data["eval"]))
    if done is not None:
        return done
    tokenizer, context = AutoTokenizer.from_pretrained(model["path"]), model_context(model["path"])
    manifest: dict[str, Any] = {"context": context, "max_new_tokens": max_new_tokens}
    for split in ("pool", "eval"):
        if data[split] is None:
            manifest[split] = None
            continue
        table = pl.read_parquet(data[split]["path"])
        lengths = prompt_lengths(tokenizer, render_prompts(tokenizer, table["question"].to_list(), system_prompt,
                                                                enable_thinking))
        long_rows = too_long(lengths, context, max_new_tokens)
        culprits = [{"prompt_id": table["prompt_id"][i], "tokens": lengths[i], "question": table["question"][i][:60]}
                    for i in long_rows]
        if culprits and bad_rows == "reject":
            raise DataError(f"{split}: {len(culprits)} prompts do not fit the model's context of {context} tokens "
                            f"with {max_new_tokens} new tokens, e.g. prompt_id {culprits[0]['prompt_id']} "
                            f"({culprits[0]['tokens']} tokens: {culprits[0]['question']!r}) (data.bad_rows=reject)")
        kept = table.filter(~pl.Series(np.isin(np.arange(table.height), long_rows)))
        path = out / f"{split}.parquet"
        kept.write_parquet(path)
        report = {**data[split]["report"], f"data/{split}/too_long": len(culprits), "too_long": culprits[:50],
                  f"data/{split}/kept_rows": kept.height}
        summary = (f"{data[split]['summary']}; then {len(culprits)} too long for the model's context "
                   f"({context} tokens incl. {max_new_tokens} new): {kept.height} left")
        manifest[split] = {"path": str(path), "sha": file_sha256(path), "rows": kept.height, "report": report,
                           "summary": summary}
    return write_manifest(out, {**manifest, "seconds": time.perf_counter() - start})


@task(**STAGE_OPTIONS, name="embed", cache_policy=CACHED, persist_result=True)
def embed(pool: dict[str, Any], cfg: EmbeddingConfig) -> dict[str, Any]:
    """Sentence embeddings of the question texts (not the chat-rendered prompts; method.md 2.1)."""
    from space.curate.embedding import embed_prompts, load_embedder, save_embeddings

    out, done, start = open_stage("embed", pool["sha"], cfg, inputs=(pool,))
    if done is not None:
        return done
    table = pl.read_parquet(pool["path"])
    with progress_bar("embed", table.height, "prompts") as update:
        vectors = embed_prompts(load_embedder(cfg), table["question"].to_list(), cfg, progress=update)
    path = save_embeddings(out / "embeddings.npy", table["prompt_id"].to_list(), vectors)
    seconds = time.perf_counter() - start
    return write_manifest(out, {"path": str(path), "sha": file_sha256(path), "dim": int(vectors.shape[1]),
                                "seconds": seconds})


@task(**STAGE_OPTIONS, name="estimate-difficulty", cache_policy=CACHED, persist_result=True)
def estimate_difficulty(
    pool: dict[str, Any],
    model: dict[str, Any],
    system_prompt: str | None,
    verifier: VerifierConfig,
    cfg: DifficultyConfig,
    engine: EngineConfig,
    seed: int,
    enable_thinking: bool | None = None,
    embedded: dict[str, Any] | None = None,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """k reference rollouts per prompt, scored by the verifier -> solve rate and difficulty.

    With `source: propagate` only a seeded fraction of the pool is rolled out and the rest is predicted from
    the embeddings (`embedded`, the embed stage's manifest) of their nearest measured neighbours; `measured` is
    that fraction's difficulty manifest when its rollouts were drawn elsewhere (on Ray shards, flows/ray_curate.py).
    """
    from space.curate import difficulty

    keyed_embeddings = embedded["sha"] if cfg.source == "propagate" and embedded is not None else None
    keys = [*([keyed_embeddings] if keyed_embeddings else []), *([measured["sha"]] if measured else [])]
    out, done, start = open_stage("difficulty", pool["sha"], model["sha"], system_prompt, verifier, cfg, engine, seed,
                                  enable_thinking, *keys, inputs=(pool, measured))
    if done is not None:
        return done
    table = pl.read_parquet(pool["path"])
    fit = None
    if cfg.source == "label":
        per_prompt, rollouts = difficulty.difficulty_table_from_labels(table, cfg), None
    elif cfg.source == "propagate":
        per_prompt, rollouts, fit = _propagated(table, embedded, model, (system_prompt, enable_thinking), verifier,
                                                cfg, engine, seed, measured)
    else:
        prompts = render_pool_prompts(table, model, system_prompt, enable_thinking)
        per_prompt, rollouts = _difficulty_from_rollouts(table, prompts, model, verifier, cfg, engine, seed)
    per_prompt.write_parquet(out / "difficulty.parquet")
    if rollouts is not None:
        rollouts.write_parquet(out / "rollouts.parquet")
    summary = difficulty.summarize_difficulty(per_prompt)
    return write_manifest(out, {"path": str(out / "difficulty.parquet"), "sha": file_sha256(out / "difficulty.parquet"),
                                "rollouts": str(out / "rollouts.parquet") if rollouts is not None else None,
                                "summary": summary, "seconds": time.perf_counter() - start,
                                **({"calibration": fit} if fit is not None else {})})


def measured_mask(table: pl.DataFrame, embedded: dict[str, Any] | None, cfg: DifficultyConfig, seed: int
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The pool's ids and embeddings in pool order, and the mask of the prompts `source: propagate` rolls out."""
    from space.curate.propagate import choose_measured

    pool_ids, vectors = _pool_embeddings(table, embedded)
    return pool_ids, vectors, choose_measured(vectors, cfg.measure_fraction, cfg.strata, seed)


def _pool_embeddings(table: pl.DataFrame, embedded: dict[str, Any] | None) -> tuple[list[str], np.ndarray]:
    from space.curate.embedding import load_embeddings

    if embedded is None:
        raise ValueError("difficulty.source='propagate' needs the embed stage's output (embedded=...)")
    ids, vectors = load_embeddings(embedded["path"])
    position = {pid: i for i, pid in enumerate(ids)}
    pool_ids = table["prompt_id"].to_list()
    missing = [pid for pid in pool_ids if pid not in position]
    if missing:
        raise KeyError(f"{embedded['path']}: no embedding for prompt_id(s) {missing[:5]}")
    return pool_ids, vectors[[position[pid] for pid in pool_ids]]


def _propagated(table, embedded, model, prompting, verifier, cfg, engine, seed, measured=None):
    """Rollouts on the measured fraction (drawn here, or read from `measured`, the manifest of the rows
    tasks/shards.py `measured_pool` chose), the rest predicted (space.curate.propagate): by kNN, or calibrated on
    the measured prompts with the gold answer's likelihood (`predictor: knn+likelihood`)."""
    from space.curate.propagate import propagated_table

    likelihood = cfg.predictor == "knn+likelihood"
    prompts = render_pool_prompts(table, model, *prompting) if measured is None or likelihood else None
    if measured is None:
        pool_ids, vectors, mask = measured_mask(table, embedded, cfg, seed)
        per_measured, rollouts = _difficulty_from_rollouts(table.filter(pl.Series(mask)),
                                                           list(compress(prompts, mask)), model, verifier, cfg,
                                                           engine, seed)
    else:  # the mask from the rows measured_pool chose, not a second draw
        pool_ids, vectors = _pool_embeddings(table, embedded)
        per_measured, rollouts = pl.read_parquet(measured["path"]), pl.read_parquet(measured["rollouts"])
        mask = np.isin(np.array(pool_ids, dtype=object), per_measured["prompt_id"].to_list())
    logprob = gold_answer_logprobs(table, prompts, model, verifier, cfg) if likelihood else None
    per_prompt, fit = propagated_table(pool_ids, vectors, mask, per_measured, cfg.neighbours, logprob)
    return per_prompt, rollouts, fit


def gold_answer_logprobs(table: pl.DataFrame, prompts: list[str], model: dict[str, Any], verifier: VerifierConfig,
                         cfg: DifficultyConfig) -> np.ndarray:
    """The reference model's log-probability of each row's gold answer given its rendered prompt, under a
    progress bar (space.curate.likelihood)."""
    from space.curate.likelihood import answer_logprobs

    with progress_bar("answer likelihood", None, "sequences") as update:
        return answer_logprobs(model["path"], prompts, table["answer"].to_list(), verifier.extract,
                               cfg.temperature, progress=update)


def _difficulty_from_rollouts(table, prompts, model, verifier, cfg, engine, seed):
    with start_engine(engine, model["path"]) as rollout_engine:
        generate = generate_with_progress(rollout_engine.generate, "difficulty rollouts")
        return difficulty_of(table, prompts, generate, verifier, cfg, seed)


def render_pool_prompts(table: pl.DataFrame, model: dict[str, Any], system_prompt: str | None,
                        enable_thinking: bool | None) -> list[str]:
    """The pool's questions as the reference model's prompts (its own chat template)."""
    from transformers import AutoTokenizer

    from space.data.prompting import render_prompts

    tokenizer = AutoTokenizer.from_pretrained(model["path"])
    return render_prompts(tokenizer, table["question"].to_list(), system_prompt, enable_thinking)


def difficulty_of(table: pl.DataFrame, prompts: list[str], generate: Any, verifier: VerifierConfig,
                  cfg: DifficultyConfig, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-prompt difficulty and the rollout table, from `generate` (an engine's, or a replay of rollouts
    drawn elsewhere, e.g. on Ray actors) scored by the recipe's verifier."""
    from space.curate.difficulty import estimate_difficulty
    from space.data.verifiers import get_verifier

    return estimate_difficulty(table["prompt_id"].to_list(), prompts, table["answer"].to_list(),
                               table["metadata"].to_list(), generate,
                               get_verifier(verifier.name, extract=verifier.extract), cfg, seed,
                               theta_solve=verifier.theta_solve)


@task(**STAGE_OPTIONS, name="build-features", cache_policy=CACHED, persist_result=True)
def build_features(embedded: dict[str, Any], difficulty: dict[str, Any], cfg: FeatureConfig) -> dict[str, Any]:
    """f_i = [whitened PCA(e_i) ; w_d * standardised d_i] (method.md 2.3)."""
    from space.curate.difficulty import difficulty_array
    from space.curate.embedding import load_embeddings
    from space.curate.features import fit_transform

    out, done, start = open_stage("features", embedded["sha"], difficulty["sha"], cfg, inputs=(embedded, difficulty))
    if done is not None:
        return done
    ids, vectors = load_embeddings(embedded["path"])
    d = difficulty_array(pl.read_parquet(difficulty["path"]), ids)
    transform, features, info = fit_transform(vectors, d, cfg)
    # the fitted transform is kept so prompts added later land in the same space (`space curate --add`)
    np.savez(out / "features.npz", ids=np.asarray(ids), features=features, **transform.arrays())
    return write_manifest(out, {"path": str(out / "features.npz"), "sha": file_sha256(out / "features.npz"),
                                "info": _plain(info), "seconds": time.perf_counter() - start})


@task(**STAGE_OPTIONS, name="cluster", cache_policy=CACHED, persist_result=True)
def cluster(features: dict[str, Any], cfg: ClusterConfig) -> dict[str, Any]:
    """faiss k-means on the features; empty clusters dropped (arms = non-empty clusters)."""
    from space.curate.clustering import cluster_features

    out, done, start = open_stage("cluster", features["sha"], cfg, inputs=(features,))
    if done is not None:
        return done
    stored = np.load(features["path"])
    labels, centroids, info = cluster_features(stored["features"], cfg)
    np.savez(out / "clusters.npz", ids=stored["ids"], labels=labels, centroids=centroids)
    return write_manifest(out, {"path": str(out / "clusters.npz"), "sha": file_sha256(out / "clusters.npz"),
                                "num_clusters": int(centroids.shape[0]), "info": _plain(info),
                                "seconds": time.perf_counter() - start})


@task(**STAGE_OPTIONS, name="select-representatives", cache_policy=CACHED, persist_result=True)
def select(
    pool: dict[str, Any], difficulty: dict[str, Any], features: dict[str, Any], clusters: dict[str, Any],
    cfg: SelectionConfig,
) -> dict[str, Any]:
    """Keep l representatives per cluster; write the curation table and the reduced pool."""
    from space.curate.reduction import select_representatives

    out, done, start = open_stage("select", pool["sha"], difficulty["sha"], features["sha"], clusters["sha"], cfg,
                                  inputs=(pool, difficulty, features, clusters))
    if done is not None:
        return done
    feats, grouped = np.load(features["path"]), np.load(clusters["path"])
    ids = [str(i) for i in grouped["ids"]]
    mask, distances = select_representatives(feats["features"], grouped["labels"], grouped["centroids"], ids, cfg)
    table = curation_table(pool, difficulty, ids, grouped["labels"], distances, mask)
    table.write_parquet(out / "curation.parquet")
    reduced = table.filter(pl.col("selected"))
    reduced.write_parquet(out / "reduced.parquet")
    return write_manifest(out, {"path": str(out / "curation.parquet"), "reduced": str(out / "reduced.parquet"),
                                "sha": file_sha256(out / "curation.parquet"), "selected": reduced.height,
                                "pool": table.height, "clusters": cluster_rows(table),
                                "seconds": time.perf_counter() - start})


def curation_table(pool, difficulty, ids, labels, distances, mask) -> pl.DataFrame:
    """Prompt id, text, answer, cluster, d_i, successes, k, distance to centroid, selected flag."""
    assigned = pl.DataFrame({"prompt_id": ids, "cluster": labels.astype(np.int64),
                             "distance": distances.astype(np.float64), "selected": mask.astype(bool)})
    return (pl.read_parquet(pool["path"]).join(assigned, on="prompt_id", how="inner", validate="1:1")
            .join(pl.read_parquet(difficulty["path"]), on="prompt_id", how="left", validate="1:1")
            .sort("cluster", "prompt_id"))


def cluster_rows(table: pl.DataFrame) -> list[dict[str, Any]]:
    """One row per cluster: size, kept, mean difficulty, share of truncated difficulty rollouts (None without
    rollouts), main source, an example prompt."""
    rows = []
    for (label,), part in table.group_by("cluster", maintain_order=True):
        top_source = part["source"].mode().sort()[0]
        samples = part["k"].sum()
        truncated = _round(part["truncated"].sum() / samples) if samples else None
        rows.append({"cluster": int(label), "size": part.height, "selected": int(part["selected"].sum()),
                     "mean_difficulty": _round(part["difficulty"].mean()), "truncated_share": truncated,
                     "main_source": str(top_source), "example": part["question"][0][:80]})
    return rows


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and arrays -> JSON values (Prefect artifacts and manifests use plain json)."""
    return json.loads(json.dumps(info, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
