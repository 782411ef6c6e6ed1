"""Models that space builds itself (the tiny character-level LM of `space.models.tiny`)."""
