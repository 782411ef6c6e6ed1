"""Prefect flows: composition only. Each flow reads like the method's steps and delegates to tasks/."""

import tasks  # noqa: F401  (sets Prefect/MLflow/HF environment defaults before prefect is imported)
