"""Network probes for the pre-flight: is the MLflow tracking store, and the Prefect API when one is set, reachable?

One request each, with a short timeout and no retries: an unreachable server is reported in seconds, naming
its URI and what to check, instead of MLflow's client retrying for minutes (urllib3's "Retrying ..." lines)
after the first model has been built.

    probe_mlflow(os.environ["MLFLOW_TRACKING_URI"])   # http(s): GET /health; sqlite: the folder is writable;
                                                       # other databases: a TCP connection to host:port
    probe_prefect(os.environ.get("PREFECT_API_URL"))   # GET <api>/health, or the temporary local server
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from space.preflight import Check

TIMEOUT_SECONDS = 5.0
MLFLOW_HINT = ("start it (infra/servers.sh start) or check the address, or unset MLFLOW_TRACKING_URI to track in "
               "SQLite under SPACE_HOME")
PREFECT_HINT = ("start it (infra/servers.sh start) or check the address, or unset PREFECT_API_URL to use a "
                "temporary local server")


def _http_get(name: str, shown: str, url: str, hint: str, timeout: float) -> Check:
    """One GET; any HTTP answer means the server is there (its status is shown when it is not 200)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310  (http(s) only, checked above)
            status = response.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return Check(name, False, f"{shown} cannot be reached ({reason}; timeout {timeout:.0f} s): {hint}")
    return Check(name, True, f"{shown} answers" + ("" if status == 200 else f" (HTTP {status} from {url})"))


def _sqlite_folder(name: str, uri: str) -> Check:
    """An SQLite store: the database file's folder (or its nearest existing parent) must be writable."""
    path = Path(uri[len("sqlite:///"):]).expanduser()
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    if not os.access(folder, os.W_OK):
        return Check(name, False, f"{uri}: {folder} is not writable; set MLFLOW_TRACKING_URI or SPACE_HOME elsewhere")
    return Check(name, True, f"{uri} (folder writable)")


def _tcp(name: str, uri: str, host: str, port: int, hint: str, timeout: float) -> Check:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        return Check(name, False, f"{uri} cannot be reached ({err}; timeout {timeout:.0f} s): {hint}")
    return Check(name, True, f"{uri} accepts connections")


def probe_mlflow(uri: str, timeout: float = TIMEOUT_SECONDS) -> Check:
    """The tracking store named by `uri`, by the cheapest request that proves it is there."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return _http_get("MLflow", uri, f"{uri.rstrip('/')}/health", MLFLOW_HINT, timeout)
    if parts.scheme == "sqlite":
        return _sqlite_folder("MLflow", uri)
    if parts.hostname:  # postgresql://, mysql://, ...: the database server's port
        default = {"postgresql": 5432, "mysql": 3306}.get(parts.scheme.split("+")[0], 0)
        return _tcp("MLflow", uri, parts.hostname, parts.port or default, MLFLOW_HINT, timeout)
    return Check("MLflow", True, f"{uri} (not probed: no server to ask)")


def probe_prefect(api_url: str | None, timeout: float = TIMEOUT_SECONDS) -> Check:
    """The Prefect API at `api_url` (PREFECT_API_URL), or the temporary local server Prefect starts when unset."""
    if not api_url:
        return Check("Prefect", True, "temporary local server, started by the first flow (PREFECT_API_URL unset)")
    return _http_get("Prefect", api_url, f"{api_url.rstrip('/')}/health", PREFECT_HINT, timeout)
