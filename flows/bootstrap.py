"""Bootstrap flow: make the recipe's policy model exist locally (build `tiny`, convert SmolLM2, or use as is).

    space bootstrap-model --recipe builtin
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the real types
# when a deployment loads this flow by entrypoint, and postponed (string) annotations cannot be resolved.
from typing import Any

from prefect import flow

import tasks  # noqa: F401
from space.config import Recipe
from tasks.bootstrap import build_tiny_model, convert_smollm2, external_model


@flow(name="bootstrap", log_prints=True)
def bootstrap_flow(recipe: Recipe) -> dict[str, Any]:
    """Return the model manifest: name, local path (or hub name), content hash, how it was built."""
    if recipe.model.name == "tiny":
        model = build_tiny_model(recipe.model.tiny, recipe.data)
    elif recipe.model.name == "smollm2-135m":
        model = convert_smollm2()
    else:
        model = external_model(recipe.model.name)
    print(f"model {model['name']} at {model['path']}")
    return model
