"""Thin Prefect tasks over `space`: caching, retries, artifacts; they pass file paths and content hashes.

Importing this package sets environment defaults that Prefect, MLflow and Hugging Face read when they are
first imported, so it must happen before them (flows import it first): Prefect's home and result storage
under SPACE_HOME (Prefect 3.6 ignores PREFECT_HOME for results), no telemetry, a patient ephemeral server,
and offline Hugging Face unless the user says otherwise. Explicit environment settings always win.
"""

from tasks.environment import configure_environment

configure_environment()
