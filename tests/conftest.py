"""Test-wide settings: offline, quiet, and every artefact under a per-session temporary SPACE_HOME."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")
# Flows write models, artefacts, Prefect's database and the MLflow store under a fresh SPACE_HOME, never
# the user's: servers or stores the user configured are ignored, the test run derives its own.
os.environ["SPACE_HOME"] = tempfile.mkdtemp(prefix="space-tests-")
for key in ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_RESULTS_LOCAL_STORAGE_PATH", "MLFLOW_TRACKING_URI"):
    os.environ.pop(key, None)


import pytest  # noqa: E402  (after the environment above: imports below must see it)

E2E_RECIPE = os.path.join(os.path.dirname(__file__), "recipes", "e2e.yaml")


@pytest.fixture(scope="session")
def e2e_recipe():
    """The small end-to-end recipe (tests/recipes/e2e.yaml), resolved."""
    from space.config import load_recipe

    return load_recipe(E2E_RECIPE).resolved()


@pytest.fixture(scope="session")
def e2e_run(e2e_recipe):
    """One real `space run` on the e2e recipe (final model registered as space-e2e), shared by every test
    module of the session that needs a finished run (about 18 min on 2 busy cores)."""
    from flows.run import run_flow

    return run_flow(e2e_recipe, register_as="space-e2e")


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests, restored afterwards: results depend on the thread count
    (float sums in another order), so a session-wide change would make in-process runs differ from the
    `space run` subprocesses other tests compare them with."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
