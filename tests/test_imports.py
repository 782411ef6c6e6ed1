"""The core library stays free of the orchestrator and the tracker, and cheap to import."""

import subprocess
import sys


def test_space_modules_do_not_import_prefect_or_mlflow():
    modules = ["space", "space.config", "space.data", "space.verifiers", "space.bandit", "space.features",
               "space.clustering", "space.reduction", "space.difficulty", "space.embedding", "space.engines",
               "space.grpo", "space.sampler", "space.prompting", "space.models.tiny", "space.stats",
               "space.bench", "space.bench_report", "space.bench_plots", "space.evaluation"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'prefect', 'mlflow', 'vllm', 'faiss'})\n"
            + "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
