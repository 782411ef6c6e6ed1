"""Shipped recipes: one YAML file per experiment."""
