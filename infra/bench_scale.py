"""Curation at scale on one machine: seconds per stage and memory for 10k / 30k / 100k-prompt pools.

    .venv/bin/python infra/bench_scale.py [--sizes 10000,30000,100000] [--sources label,propagate]
                                          [--home /tmp/space-scale] [--out infra/results]

The pool is reasoning-gym items in the builtin compact wording, drawn from task levels with large question
spaces (letter counting over 2-8 words, 3x3 matrix rotations, palindromes of 5-10 letters; three levels
each, the level is the label difficulty), written to <home>/pools/pool-<N>.jsonl and read through the local
file path (`data.source: hf`) like a user's data. Each (N, source) is one `space curate` on the builtin
recipe in its own process, sharing one SPACE_HOME (the tiny model is built once; the second source reuses
the first one's data and embedding stages, reported as cached). While it runs, a sampler reads every 0.5 s:
the RSS of the curate process, the RSS summed over its process tree (Prefect's ephemeral server and vLLM's
engine core included; shared pages counted twice) and the curate process's own high-water mark (VmHWM,
exact). A stage's window is [manifest mtime - its seconds, manifest mtime].

Writes <out>/bench_scale.json and <out>/bench_scale.md: what this machine measured, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("load-data", "fit-context", "check-lengths", "embed", "estimate-difficulty", "build-features", "cluster",
          "select-representatives", "report-curation")  # as the console summary names them
FOLDERS = {"load-data": "data", "fit-context": "fit-context", "embed": "embed", "estimate-difficulty": "difficulty",
           "build-features": "features", "cluster": "cluster", "select-representatives": "select"}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--sources", default="label,propagate")
    parser.add_argument("--fraction", type=float, default=0.1, help="measure_fraction of the propagate source")
    parser.add_argument("--home", default="/tmp/space-scale")
    parser.add_argument("--out", default=str(ROOT / "infra" / "results"))
    return parser.parse_args()


def scale_tasks() -> tuple:
    """Builtin renderers over levels whose question spaces hold 100k distinct pool questions."""
    from space.data.builtin_tasks import TaskSpec, render_letter_counting, render_palindrome, render_rotate_matrix

    return (
        TaskSpec("letter_counting", ({"min_words": 2, "max_words": 3}, {"min_words": 4, "max_words": 5},
                                     {"min_words": 6, "max_words": 8}), render_letter_counting),
        TaskSpec("rotate_matrix", tuple({"min_n": 3, "max_n": 3, "min_rotations": r, "max_rotations": r}
                                        for r in (2, 1, 3)), render_rotate_matrix),
        TaskSpec("palindrome_generation", ({"min_length": 5, "max_length": 6}, {"min_length": 7, "max_length": 8},
                                           {"min_length": 9, "max_length": 10}), render_palindrome),
    )


def write_pool(n: int, home: Path) -> Path:
    """<home>/pools/pool-<n>.jsonl: question, answer, level and reasoning-gym's metadata keys (the verifier's)."""
    from space.data.builtin_tasks import generate_items

    path = home / "pools" / f"pool-{n}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    items = generate_items("pool", n, 0, scale_tasks())
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        for item in items:
            handle.write(json.dumps({"question": item["question"], "answer": item["answer"], "level": item["level"],
                                     **item["metadata"]}) + "\n")
    tmp.rename(path)
    return path


def _rss(proc) -> tuple[int, int]:
    """(RSS of `proc`, RSS summed over `proc` and its descendants); a child that just exited counts 0."""
    import psutil

    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return own, total


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def sample(pid: int, samples: list[tuple[float, int, int, int]], stop: threading.Event) -> None:
    """(time, curate RSS, process-tree RSS, curate VmHWM) every 0.5 s until `stop` or the process ends."""
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append((time.time(), *_rss(proc), _hwm(pid)))
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.5)


def curate(pool: Path, source: str, fraction: float, home: Path, log: Path) -> tuple[float, list, int]:
    """One `space curate` on the pool file; (wall seconds, memory samples, exit code)."""
    overrides = ["data.source=hf", f"data.path={pool}", "data.level_column=level",
                 f"curate.difficulty.source={source}"]
    if source == "propagate":
        overrides.append(f"curate.difficulty.measure_fraction={fraction}")
    command = [sys.executable, "-m", "flows.cli", "curate", "--recipe", "builtin",
               *[arg for o in overrides for arg in ("--set", o)]]
    env = {**os.environ, "SPACE_HOME": str(home), "SPACE_PROGRESS": "plain"}
    for key in ("PREFECT_HOME", "PREFECT_API_URL", "MLFLOW_TRACKING_URI", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"):
        env.pop(key, None)
    samples: list = []
    stop = threading.Event()
    start = time.time()
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = threading.Thread(target=sample, args=(proc.pid, samples, stop), daemon=True)
        sampler.start()
        code = proc.wait()
    stop.set()
    sampler.join()
    return time.time() - start, samples, code


def summary_seconds(log: Path) -> dict[str, tuple[float, bool]]:
    """stage -> (seconds, cached) from the `space curate summary` table the command prints last."""
    found = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in STAGES and parts[3] in ("yes", "no"):
            found[parts[0]] = (float(parts[2]), parts[3] == "yes")
    return found


def stage_rows(home: Path, since: float, samples: list, seconds: dict[str, tuple[float, bool]]) -> list[dict]:
    """Per stage: its seconds and cache state (console summary) and, for stages with a folder written after
    `since`, the memory sampled between (manifest mtime - seconds) and the manifest's mtime."""
    rows = []
    for stage in STAGES:
        spent, cached = seconds.get(stage, (None, None))
        row = {"stage": stage, "seconds": spent, "cached": cached}
        folder = home / "artifacts" / FOLDERS[stage] if stage in FOLDERS else None
        written = [t for m in (folder.glob("*/space_manifest.json") if folder else [])
                   if (t := m.stat().st_mtime) >= since]
        if written and spent is not None and not cached:
            end = max(written)
            window = [x for x in samples if end - spent - 0.5 <= x[0] <= end + 0.5]
            for key, index in (("peak_rss_gb", 1), ("peak_tree_rss_gb", 2)):
                row[key] = round(max(x[index] for x in window) / 2**30, 3) if window else None
        rows.append(row)
    return rows


def main() -> None:
    args = _args()
    home, out = Path(args.home), Path(args.out)
    home.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        pool = write_pool(n, home)
        pool_seconds = time.perf_counter() - start
        for source in args.sources.split(","):
            since = time.time()
            log = home / f"curate-{n}-{source}.log"
            wall, samples, code = curate(pool, source, args.fraction, home, log)
            if code != 0:
                raise SystemExit(f"space curate failed for N={n}, source={source} (exit {code}); see {log}")
            results.append({"n": n, "source": source, "fraction": args.fraction if source == "propagate" else None,
                            "pool_file_seconds": round(pool_seconds, 1), "wall_seconds": round(wall, 1),
                            "peak_rss_gb": round(max(s[1] for s in samples) / 2**30, 3),
                            "peak_tree_rss_gb": round(max(s[2] for s in samples) / 2**30, 3),
                            "hwm_gb": round(max(s[3] for s in samples) / 2**30, 3),
                            "stages": stage_rows(home, since, samples, summary_seconds(log))})
            print(json.dumps(results[-1]), flush=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_at_end": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_scale.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    (out / "bench_scale.md").write_text(markdown(results, meta))


def markdown(results: list[dict], meta: dict) -> str:
    lines = [f"# Curation at scale ({meta['when']}, {meta['cpus']} CPUs, load average at the end "
             f"{meta['load_avg_at_end'][0]:.1f})", "",
             "Seconds per stage from `space curate`'s summary (`c`: a cache hit, e.g. the second source reusing the "
             "first one's data and embedding). Memory: peak RSS of the curate process and of its process tree "
             "(Prefect's server and vLLM's engine core included), sampled every 0.5 s; VmHWM is the curate "
             "process's exact peak.", "",
             "| N | difficulty | " + " | ".join(STAGES) + " | wall s | peak RSS GB | tree GB | VmHWM GB |",
             "|---|---|" + "---|" * (len(STAGES) + 4)]
    for run in results:
        by_stage = {row["stage"]: row for row in run["stages"]}
        cells = ["" if by_stage[s]["seconds"] is None else
                 f"{by_stage[s]['seconds']:.1f}" + (" c" if by_stage[s]["cached"] else "") for s in STAGES]
        source = run["source"] + (f" f={run['fraction']}" if run["fraction"] else "")
        lines.append(f"| {run['n']:,} | {source} | " + " | ".join(cells) +
                     f" | {run['wall_seconds']} | {run['peak_rss_gb']} | {run['peak_tree_rss_gb']} | {run['hwm_gb']} |")
    lines += ["", "Peak RSS of the curate process while each uncached stage ran (GB, sampled):", "",
              "| N | difficulty | " + " | ".join(FOLDERS) + " |", "|---|---|" + "---|" * len(FOLDERS)]
    for run in results:
        by_stage = {row["stage"]: row for row in run["stages"]}
        cells = [str(by_stage[s].get("peak_rss_gb") or "") for s in FOLDERS]
        lines.append(f"| {run['n']:,} | {run['source']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
