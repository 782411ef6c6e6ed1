"""SPaCe's curriculum inside other trainers (issue 20), with no Prefect or MLflow import.

    space.integrations.curriculum   the trainer-neutral bandit + prompt picker over a dataset's rows
    space.integrations.trl          `SpaceCurriculum`: a stock TRL `GRPOTrainer` gets SPaCe's allocation
    space.integrations.verl         `SpaceCurriculumSampler`: verl's curriculum sampler interface

All of them read a curation written by `space export` (space/curate/export.py). docs/integrations.md shows how.
Importing this package imports nothing heavy; each module imports its trainer's library lazily.
"""
