"""The data phase: sources and files, the builtin reasoning-gym tasks, prompt rendering, verifiers, lengths."""
