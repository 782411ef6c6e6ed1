"""space: self-paced curriculum learning (SPaCe) for RL fine-tuning of LLMs.

The core library. Pure logic and plain I/O: data sources, verifiers, embedding, rollout engines,
features, clustering, reduction, bandit policies, sampler, GRPO glue and evaluation. It never imports
prefect or mlflow, and heavy libraries (torch, transformers, vllm, faiss, sentence-transformers) are
imported inside the functions that need them, so `import space` stays cheap and silent.
"""

__version__ = "0.1.0"
