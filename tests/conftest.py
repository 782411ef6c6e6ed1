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


def pytest_collection_modifyitems(items):
    """A test that needs the session's end-to-end run (directly or through another fixture) is an `e2e` and
    `slow` test, whatever its own markers say: `make test-fast` must never start that run."""
    for item in items:
        if "e2e_run" in getattr(item, "fixturenames", ()):
            for name in ("e2e", "slow"):
                if name not in {m.name for m in item.iter_markers()}:
                    item.add_marker(name)


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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A random-init tiny causal LM saved as a Hugging Face folder (tests/conftest_models.py), built once per
    session and only read by the tests (engines, likelihood, console progress, server pools)."""
    from conftest_models import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def embedder(one_torch_thread):
    """The default sentence embedder (all-MiniLM-L6-v2 from its wheel) on CPU, loaded per module because it runs
    under the module's single torch thread (`one_torch_thread`)."""
    from space.curate.embedding import EmbeddingConfig, load_embedder

    return load_embedder(EmbeddingConfig(device="cpu"))
