"""The final model in MLflow: logged with the transformers flavour, registered under an alias when asked.

    space run --register space-tiny            # registers version N of `space-tiny`, alias `candidate`
    mlflow.transformers.load_model("models:/space-tiny@candidate")
"""

from __future__ import annotations

import os

from prefect import get_run_logger, task

from tasks import tracking
from tasks.stages import STAGE_OPTIONS

ALIAS = "candidate"  # MLflow reserves "latest"; promote a version to e.g. "champion" by hand after review


@task(**STAGE_OPTIONS, name="log-final-model", retries=1, retry_delay_seconds=3)
def log_final_model(run_id: str, checkpoint: str, register: str | None = None, alias: str = ALIAS) -> str:
    """Log the checkpoint folder as an MLflow transformers model of the run; returns the model URI.

    The folder is passed as a path, so MLflow copies the files without loading the model; requirements are
    given explicitly because inferring them imports modules this environment does not have (torchvision)."""
    import mlflow
    import torch
    import transformers

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"]
    # log_model uses MLflow's fluent (thread-local) active run: attach to ours for this one call, and leave
    # the run's status to the flow, which closes it
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        info = mlflow.transformers.log_model(checkpoint, name="model", task="text-generation",
                                             pip_requirements=requirements)
        mlflow.end_run(status="RUNNING")
    logger = get_run_logger()
    logger.info("final model logged to MLflow: %s", info.model_uri)
    if register:
        version = mlflow.register_model(info.model_uri, register)
        tracking.client().set_registered_model_alias(register, alias, version.version)
        logger.info("registered as %s version %s, alias @%s", register, version.version, alias)
    return info.model_uri
