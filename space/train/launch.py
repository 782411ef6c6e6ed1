"""The flow's side of a data-parallel GRPO epoch: write the plan, call torchrun, read back the gathered result.

    result = train_epoch_launched(cfg.distributed, base_model_dir, checkpoint_in, checkpoint_out, rows, order,
                                  verifier, cfg.grpo, epoch, total_epochs, seed)

It returns the same `EpochResult` as `space.train.grpo.train_epoch` in one process, so `run_epoch` updates the
bandit from it the same way. The only process management is one `subprocess.run` of the launcher
(`python -m torch.distributed.run`); torchrun starts the ranks, watches them and, when one dies, stops the
others and prints a failure summary naming the first failed rank, which becomes `RankFailedError`'s message.
The checkpoint is written by rank 0 atomically (space/train/checkpoint.py), so an epoch killed half-way leaves
the previous epoch's checkpoint as the last complete one and a re-run resumes from it, as in one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from space.train.distributed import DistributedConfig
from space.train.dp_worker import PLAN, RANKS, RESULT

LOG = "launcher.log"
FAILURE = re.compile(r"rank\s*:\s*(\d+) \(local_rank: (\d+)\)\s*exitcode\s*:\s*(-?\d+)")
STOPPED = -15  # SIGTERM: how torchrun stops the ranks that are still running once one failed


class RankFailedError(RuntimeError):
    """A rank of a launched epoch failed; the message names the rank, its exit code and the launcher's log."""


def launch_command(cfg: DistributedConfig, job_dir: Path) -> list[str]:
    """The torchrun command line: standalone rendezvous on one node, c10d at `rdzv_endpoint` across nodes."""
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.processes}"]
    if cfg.nnodes == 1:
        command.append("--standalone")
    else:
        job_id = "space-" + hashlib.sha256(str(job_dir).encode()).hexdigest()[:12]
        command += [f"--nnodes={cfg.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={cfg.rdzv_endpoint}",
                    f"--rdzv-id={job_id}"]
    return command + ["-m", "space.train.dp_worker", str(job_dir)]


def write_plan(job_dir: Path, cfg: DistributedConfig, plan: dict[str, Any]) -> None:
    """Clear an earlier attempt's outputs, then write the plan every rank reads."""
    for stale in (RESULT, RANKS):
        shutil.rmtree(job_dir / stale, ignore_errors=True)
    world = {"world_size": cfg.processes * cfg.nnodes, "backend": cfg.backend}
    (job_dir / PLAN).write_text(json.dumps({**plan, **world}))


def failure_message(log_text: str, returncode: int, epoch: int, log_path: Path) -> str:
    """Name the failed rank from torchrun's summary; else say the launcher failed and show its tail.

    torchrun's "Root Cause" is the failure with the smallest timestamp, in whole seconds when a rank left no
    error file (a signal): a rank it stopped with SIGTERM in the same second as the one that died ties with it,
    and the lower rank wins. So a failure other than that SIGTERM is named first, the root cause among them."""
    summary = log_text[log_text.rfind("Failures:"):] if "Failures:" in log_text else ""
    failures = [tuple(int(g) for g in m.groups()) for m in FAILURE.finditer(summary)]
    if not failures:
        tail = "\n".join(log_text.splitlines()[-20:])
        return f"epoch {epoch}: the torchrun job exited with code {returncode}; log {log_path}:\n{tail}"
    root_cause_first = failures[-1:] + failures[:-1]  # the summary prints the root cause last
    rank, local_rank, code = next((f for f in root_cause_first if f[2] != STOPPED), root_cause_first[0])
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"epoch {epoch}: rank {rank} (local rank {local_rank}) {how}; torchrun stopped the others; log {log_path}"


def run_launcher(cfg: DistributedConfig, job_dir: Path, epoch: int) -> None:
    """Run torchrun to completion, its output in `job_dir/launcher.log`; raise RankFailedError when it fails."""
    env = dict(os.environ)
    if cfg.threads_per_process is not None:
        env["OMP_NUM_THREADS"] = str(cfg.threads_per_process)
    log_path, command = job_dir / LOG, launch_command(cfg, job_dir)
    (job_dir / "command.txt").write_text(shlex.join(command) + "\n")  # what every other node runs (nnodes > 1)
    with log_path.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        raise RankFailedError(failure_message(log_path.read_text(errors="replace"), done.returncode, epoch, log_path))


def read_result(job_dir: Path, checkpoint_out: Path) -> Any:
    """The EpochResult rank 0 wrote (rollouts and the epoch's logs, metrics and bookkeeping)."""
    import polars as pl

    from space.train.grpo import EpochResult

    body = json.loads((job_dir / RESULT / "result.json").read_text())
    return EpochResult(pl.read_parquet(job_dir / RESULT / "rollouts.parquet"), body["log_history"], body["metrics"],
                       Path(checkpoint_out), body["global_step"], body["extra"])


def epoch_job_dir(cfg: DistributedConfig, checkpoint_out: Path) -> tuple[Path, bool]:
    """(folder for this epoch's launch files, whether it is temporary): under `job_dir` when set (named after
    the checkpoint it makes), else a fresh temporary folder."""
    if cfg.job_dir is None:
        return Path(tempfile.mkdtemp(prefix="space-launch-")), True
    name = hashlib.sha256(str(Path(checkpoint_out).resolve()).encode()).hexdigest()[:16]
    folder = Path(cfg.job_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder, False


def train_epoch_launched(cfg: DistributedConfig, base_model_dir: Path, checkpoint_in: Path | None,
                         checkpoint_out: Path, rows: list[dict], order: list[int], verifier: dict[str, Any],
                         settings: Any, epoch: int, total_epochs: int, seed: int) -> Any:
    """Train one planned epoch as a `cfg.processes`-rank torchrun job; the gathered `EpochResult`.

    `verifier` is the recipe's verifier section as a dict (name, extract, theta_solve): each rank builds its own.
    The launch files go to `epoch_job_dir`: under `cfg.job_dir` (kept), else a temporary folder removed after a
    successful epoch (kept after a failure, for its log)."""
    job_dir, temporary = epoch_job_dir(cfg, checkpoint_out)
    plan = {"base_model_dir": str(base_model_dir), "checkpoint_in": str(checkpoint_in) if checkpoint_in else None,
            "checkpoint_out": str(checkpoint_out), "rows": rows, "order": [int(i) for i in order],
            "verifier": verifier, "settings": settings.model_dump(mode="json"), "epoch": epoch,
            "total_epochs": total_epochs, "seed": seed}
    write_plan(job_dir, cfg, plan)
    run_launcher(cfg, job_dir, epoch)
    result = read_result(job_dir, checkpoint_out)
    if temporary:
        shutil.rmtree(job_dir, ignore_errors=True)
    return result
