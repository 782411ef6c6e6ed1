"""Same run before and after a refactoring: two SPACE_HOMEs of `space run` on one recipe, compared stage by stage.

    SPACE_HOME=/tmp/before space run --recipe tests/recipes/e2e.yaml     # with the old tree
    SPACE_HOME=/tmp/after  space run --recipe tests/recipes/e2e.yaml     # with the new tree
    python infra/same_run.py /tmp/before /tmp/after

Prints one line per comparison: selection and difficulty tables, embeddings, the tiny model's weights, each
epoch's prompt order, arms, bandit state and metrics (timings left out), the final weights. Epoch manifests
are read under either name (`manifest.json` before the manifest helper, `space_manifest.json` after).
"""
import json, sys
from pathlib import Path
import numpy as np, polars as pl
from safetensors.numpy import load_file
b, a = Path(sys.argv[1]), Path(sys.argv[2])
def one(home, pattern):
    found = sorted(home.glob(pattern)); assert len(found) == 1, (pattern, found); return found[0]
out = {}
for stage, name in [("select", "curation.parquet"), ("select", "reduced.parquet"), ("difficulty", "difficulty.parquet"), ("difficulty", "rollouts.parquet")]:
    x, y = pl.read_parquet(one(b, f"artifacts/{stage}/*/{name}")), pl.read_parquet(one(a, f"artifacts/{stage}/*/{name}"))
    out[f"{stage}/{name}"] = x.equals(y)
from space.curate.embedding import load_embeddings  # reads the .npz of older runs and today's .npy
ex, ey = (load_embeddings(one(h, "artifacts/embed/*/embeddings.np[yz]"))[1] for h in (b, a))
out["embeddings"] = bool(np.array_equal(ex, ey))
out["tiny weights"] = one(b, "models/tiny-*/model.safetensors").read_bytes() == one(a, "models/tiny-*/model.safetensors").read_bytes()
rb, ra = one(b, "artifacts/train/*/epoch_000").parent, one(a, "artifacts/train/*/epoch_000").parent
for e in range(3):
    mb, ma = (json.loads(next((r / f"epoch_{e:03d}").glob("*manifest.json")).read_text()) for r in (rb, ra))
    out[f"epoch {e} order"] = mb["order"] == ma["order"]
    out[f"epoch {e} arms"] = mb["arms"] == ma["arms"]
    out[f"epoch {e} bandit state"] = json.loads(Path(mb["state"]).read_text()) == json.loads(Path(ma["state"]).read_text())
    keys = [k for k in mb["metrics"] if not k.startswith("seconds") and "time" not in k and "runtime" not in k and "per_second" not in k]
    out[f"epoch {e} metrics ({len(keys)})"] = all(mb["metrics"][k] == ma["metrics"].get(k) for k in keys)
wb = load_file(str(rb / "epoch_002" / "checkpoint" / "model.safetensors")); wa = load_file(str(ra / "epoch_002" / "checkpoint" / "model.safetensors"))
out["final weights"] = all(np.array_equal(wb[k], wa[k]) for k in wb) and wb.keys() == wa.keys()
for k, v in out.items(): print(f"{k}: {v}")
