"""Phase 1 of SPaCe, offline curation: embedding, difficulty, features, k-means clusters, representatives."""
