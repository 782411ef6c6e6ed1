"""Cheap difficulty benchmark: how well do the propagate predictors recover difficulty from a fraction of the pool?

    .venv/bin/python infra/bench_propagate.py [--recipe builtin] [--home /tmp/space-prop] [--out infra/results]

1. Runs `space bootstrap-model` + `space curate` on the recipe with full rollout difficulty (cached in --home).
2. For each predictor (`knn`, `knn+likelihood`), fraction f and seed: chooses the measured prompts exactly as
   `difficulty.source: propagate` does (space.curate.propagate.choose_measured), takes their difficulty from the
   full run (rollouts are seeded per prompt, so a measured prompt's rollouts are the full run's: tests/test_flows.py
   checks this), predicts the rest and compares with the full-run difficulty: Spearman over the unmeasured
   prompts and over all prompts. `knn+likelihood` uses the reference model's log-probability of each gold
   answer (space.curate.likelihood, computed once for the pool, timed).
3. Re-runs features -> clustering -> selection with the predicted difficulty and compares the curated
   subset with the full-difficulty one: share of the selected prompts in common, adjusted Rand index of the
   cluster assignment.
4. The ceiling: the split-half reliability of the full difficulty (even vs odd samples, Spearman, and the
   Spearman-Brown value for all k samples): no predictor can agree with a noisy target better than that.
5. Where the pool has task and level labels (`source`, `level`: the builtin reasoning-gym pool): labelled
   references that no embedding-based predictor is given. Per row, each unmeasured prompt predicted by the mean
   difficulty of the measured prompts of its (task, level); once, each prompt given the mean of its whole
   (task, level) group in the full run. They bound what knowing a prompt's task and level is worth.
6. With no rollouts at all: Spearman of 1 - P(gold answer) against the full difficulty.
Writes <out>/bench_propagate.json and .md; numbers are what this machine measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="builtin")
    parser.add_argument("--home", default="/tmp/space-prop")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--fractions", default="0.1,0.2,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="recipe override, as for `space run --set`")
    return parser.parse_args()


def full_curation(recipe_name: str, overrides: list[str]) -> tuple:
    from flows.bootstrap import bootstrap_flow
    from flows.curate import curate_flow
    from space.config import load_recipe

    recipe = load_recipe(recipe_name, overrides)
    if recipe.curate.difficulty.source != "rollouts":
        raise SystemExit(f"recipe {recipe_name} must estimate difficulty from rollouts (got "
                         f"{recipe.curate.difficulty.source!r})")
    model = bootstrap_flow(recipe)
    return recipe, curate_flow(recipe, model)["stages"], model


def curate_with(recipe, vectors, ids, difficulty):
    """features -> clusters -> selected mask, exactly the recipe's stages on a given difficulty vector."""
    from space.curate.clustering import cluster_features
    from space.curate.features import build_features
    from space.curate.reduction import select_representatives

    features, _ = build_features(vectors, difficulty, recipe.curate.features)
    labels, centroids, _ = cluster_features(features, recipe.curate.clusters)
    mask, _ = select_representatives(features, labels, centroids, ids, recipe.curate.selection)
    return labels, mask


def group_means(groups, values, use) -> "np.ndarray":
    """Each row's group mean of `values` over the rows flagged in `use` (NaN-free); the overall mean where its
    group has none."""
    import numpy as np

    out = np.full(values.shape, float(np.mean(values[use])))
    for group in np.unique(groups):
        members = groups == group
        if (members & use).any():
            out[members] = values[members & use].mean()
    return out


def pool_groups(stages, ids) -> "np.ndarray | None":
    """(task, level) of each prompt, aligned to `ids`, when the pool has `source` and `level` columns."""
    import numpy as np
    import polars as pl

    pool = pl.read_parquet(stages["data"]["pool"]["path"])
    if not {"source", "level"} <= set(pool.columns) or pool["level"].is_null().all():
        return None
    label = dict(zip(pool["prompt_id"].to_list(), (pool["source"] + "/" + pool["level"].cast(pl.Utf8)).to_list()))
    return np.array([label[i] for i in ids])


def gold_logprobs(recipe, stages, model, ids) -> tuple:
    """log P(gold answer | prompt) under the reference model for every prompt of `ids`, and the seconds it took
    (the pool's rendering and the forward passes, as `predictor: knn+likelihood` runs them)."""
    import numpy as np
    import polars as pl

    from tasks.curate import gold_answer_logprobs, render_pool_prompts

    pool = pl.read_parquet(stages["data"]["pool"]["path"])
    order = {pid: i for i, pid in enumerate(pool["prompt_id"].to_list())}
    pool = pool[[order[i] for i in ids]]
    start = time.perf_counter()
    prompts = render_pool_prompts(pool, model, recipe.model.system_prompt, recipe.model.enable_thinking)
    logprob = gold_answer_logprobs(pool, prompts, model, recipe.verifier, recipe.curate.difficulty)
    return np.asarray(logprob), time.perf_counter() - start


def one_setting(recipe, vectors, ids, full_d, full_labels, full_mask, fraction: float, seed: int,
                groups=None, logprob=None) -> dict:
    """One (predictor, f, seed) row: `knn`, or `knn+likelihood` when `logprob` is given."""
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import adjusted_rand_score

    from space.curate.propagate import choose_measured, propagate, propagate_calibrated

    cfg = recipe.curate.difficulty
    start = time.perf_counter()
    measured = choose_measured(vectors, fraction, cfg.strata, seed)
    known = np.where(measured, full_d, np.nan)
    fit = None
    if logprob is None:
        predicted = propagate(vectors, measured, known, cfg.neighbours)
    else:
        predicted, fit = propagate_calibrated(vectors, measured, known, cfg.neighbours, np.exp(logprob))
    seconds = time.perf_counter() - start
    judged = ~np.isnan(full_d) & ~np.isnan(predicted)
    rest = judged & ~measured
    labels, mask = curate_with(recipe, vectors, ids, np.nan_to_num(predicted, nan=float(np.nanmean(predicted))))
    return {"predictor": "knn" if logprob is None else "knn+likelihood", "fit": fit,
            "fraction": fraction, "seed": seed, "measured": int(measured.sum()),
            "spearman_unmeasured": float(spearmanr(predicted[rest], full_d[rest]).statistic),
            "spearman_all": float(spearmanr(predicted[judged], full_d[judged]).statistic),
            "mae_unmeasured": float(np.abs(predicted[rest] - full_d[rest]).mean()),
            "selected_overlap": float((mask & full_mask).sum() / full_mask.sum()),
            "cluster_ari": float(adjusted_rand_score(full_labels, labels)), "propagate_seconds": seconds,
            "spearman_unmeasured_task_level": None if groups is None else float(spearmanr(
                group_means(groups, full_d, measured & ~np.isnan(full_d))[rest], full_d[rest]).statistic)}


def split_half(rollouts_path: str) -> dict:
    """Spearman between the solve rates of even and odd samples per prompt, and its Spearman-Brown value."""
    import polars as pl
    from scipy.stats import spearmanr

    judged = pl.read_parquet(rollouts_path).filter(pl.col("solved").is_not_null())
    halves = (judged.with_columns((pl.col("sample") % 2).alias("half"))
              .group_by(["prompt_id", "half"]).agg(pl.col("solved").cast(pl.Float64).mean().alias("rate"))
              .pivot(on="half", index="prompt_id", values="rate").drop_nulls())
    r = float(spearmanr(halves["0"], halves["1"]).statistic)
    return {"prompts": halves.height, "spearman_halves": r, "spearman_brown_full": 2 * r / (1 + r)}


def main() -> None:
    args = _args()
    from flows.watchdog import start_watchdog

    start_watchdog()  # killed, this script leaves no Prefect server or engine behind (flows/watchdog.py)
    os.environ["SPACE_HOME"] = str(Path(args.home).resolve())
    import numpy as np
    import polars as pl
    from scipy.stats import spearmanr

    from space.curate.difficulty import difficulty_array
    from space.curate.embedding import load_embeddings

    recipe, stages, model = full_curation(args.recipe, args.set)
    ids, vectors = load_embeddings(stages["embed"]["path"])
    full_d = difficulty_array(pl.read_parquet(stages["difficulty"]["path"]), ids)
    full_labels, full_mask = curate_with(recipe, vectors, ids, np.nan_to_num(full_d, nan=float(np.nanmean(full_d))))
    groups = pool_groups(stages, ids)
    logprob, likelihood_seconds = gold_logprobs(recipe, stages, model, ids)
    rows = [one_setting(recipe, vectors, ids, full_d, full_labels, full_mask, float(f), int(s), groups, lp)
            for lp in (None, logprob) for f in args.fractions.split(",") for s in args.seeds.split(",")]
    judged = ~np.isnan(full_d)
    task_level = None if groups is None else float(spearmanr(group_means(groups, full_d, judged)[judged],
                                                            full_d[judged]).statistic)
    result = {"recipe": args.recipe, "overrides": args.set, "pool": len(ids), "k": recipe.curate.difficulty.k,
              "strata": recipe.curate.difficulty.strata, "neighbours": recipe.curate.difficulty.neighbours,
              "full_difficulty_seconds": stages["difficulty"]["seconds"], "machine": platform.processor(),
              "load_average": os.getloadavg(), "reliability": split_half(stages["difficulty"]["rollouts"]),
              "spearman_all_task_level_means": task_level, "likelihood_seconds": likelihood_seconds,
              "spearman_all_likelihood_alone": float(spearmanr(-logprob[judged], full_d[judged]).statistic),
              "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_propagate.json").write_text(json.dumps(result, indent=2))
    (out / "bench_propagate.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [f"Recipe {result['recipe']} {' '.join(result['overrides'])}: pool {result['pool']} prompts, k = {result['k']}, strata {result['strata']}, neighbours "
             f"{result['neighbours']}; full rollout difficulty took {result['full_difficulty_seconds']:.1f} s, the gold "
             f"answers' likelihood {result['likelihood_seconds']:.1f} s; "
             f"load average at the end {tuple(round(x, 2) for x in result['load_average'])}.", "",
             "| predictor | f | seed | measured | Spearman (unmeasured) | Spearman (all) | MAE (unmeasured) | selected overlap "
             "| cluster ARI | fit: intercept, knn, P(gold), R^2 | labelled reference: Spearman (unmeasured) of (task, level) means of the measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        reference = r.get("spearman_unmeasured_task_level")
        fit = r.get("fit")
        fit_text = "—" if not fit else ", ".join(f"{fit[k]:+.2f}" for k in ("intercept", "knn", "covariate", "r2"))
        lines.append(f"| {r.get('predictor', 'knn')} | {r['fraction']} | {r['seed']} | {r['measured']} | "
                     f"{r['spearman_unmeasured']:.3f} | {r['spearman_all']:.3f} | {r['mae_unmeasured']:.3f} | "
                     f"{r['selected_overlap']:.3f} | {r['cluster_ari']:.3f} | {fit_text} | "
                     f"{'n/a' if reference is None else f'{reference:.3f}'} |")
    rel = result["reliability"]
    lines += ["", f"Reliability of the full difficulty over {rel['prompts']} prompts: even vs odd samples agree at "
              f"Spearman {rel['spearman_halves']:.3f}; Spearman-Brown for all {result['k']} samples "
              f"{rel['spearman_brown_full']:.3f}."]
    if result.get("spearman_all_task_level_means") is not None:
        lines += ["", "Labelled reference: every prompt given the mean full-run difficulty of its whole (task, level) "
                  f"group agrees with the full difficulty at Spearman {result['spearman_all_task_level_means']:.3f}."]
    lines += ["", "No rollouts at all: 1 - P(gold answer) agrees with the full difficulty at Spearman "
              f"{result['spearman_all_likelihood_alone']:.3f} over every judged prompt."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
