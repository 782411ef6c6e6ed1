"""Phase 2 of SPaCe, online training: bandit policies, picker, GRPO epochs, checkpoints, evaluation."""
