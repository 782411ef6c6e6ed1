"""Tests for space/curate/export.py: the export round trip through `datasets.load_from_disk` and plain polars,
the dataset card, the folder rules of `--force`, and errors that name the missing column or repeated id."""

from __future__ import annotations

import json

import polars as pl
import pytest

from space.curate.export import COLUMNS, ExportError, export_table, read_curation, write_export

CARD = {"recipe": "unit", "recipe_fingerprint": "abc123", "code_version": "deadbeef", "embedder": "all-MiniLM-L6-v2",
        "reference_model": "tiny (sha 42)", "num_clusters": 2, "per_cluster": 1, "selection": "farthest",
        "difficulty_source": "propagate", "seed": 0, "metrics": {"curate/pool_size": 3, "difficulty/mean": 0.25}}


def curation_table() -> pl.DataFrame:
    """The columns tasks/curate.py `curation_table` writes for a propagated difficulty (plus `measured`)."""
    return pl.DataFrame({
        "prompt_id": ["b", "a", "c"], "question": ["2+2?", "1+1?", "3+3?"], "answer": ["4", "2", "6"],
        "metadata": ['{"x": 1}', "{}", "{}"], "source": ["arith"] * 3, "level": [1, 1, 2],
        "cluster": [1, 0, 1], "distance": [0.5, 0.1, 0.2], "selected": [True, True, False],
        "successes": [3, None, 1], "k": [4, None, 4], "unjudged": [0, None, 0], "truncated": [0, None, 0],
        "solve_rate": [0.75, None, 0.25], "difficulty": [0.25, 0.4, 0.75], "measured": [True, False, True],
    })


def test_export_round_trips_through_load_from_disk_and_polars(tmp_path):
    from datasets import load_from_disk

    table = export_table(curation_table(), "propagate")
    paths = write_export(table, tmp_path / "out", ("hf", "parquet", "jsonl"), CARD)
    assert table.columns == list(COLUMNS) and table["prompt_id"].to_list() == ["a", "b", "c"]
    assert table["difficulty_source"].to_list() == ["predicted", "measured", "measured"]
    from_hf = load_from_disk(paths["hf"]).to_polars()
    from_parquet, from_jsonl = pl.read_parquet(paths["parquet"]), pl.read_ndjson(paths["jsonl"])
    for loaded in (from_hf, from_parquet, from_jsonl):
        assert loaded.columns == list(COLUMNS)
        assert loaded.to_dicts() == table.to_dicts()
    assert load_from_disk(paths["hf"]).filter(lambda r: r["selected"])["prompt_id"] == ["a", "b"]
    assert read_curation(tmp_path / "out").equals(read_curation(table))


def test_the_dataset_card_names_recipe_models_k_l_rule_code_hash_and_metrics(tmp_path):
    paths = write_export(export_table(curation_table(), "propagate"), tmp_path / "out", ("parquet",), CARD)
    card = (tmp_path / "out" / "README.md").read_text()
    for text in ("recipe `unit`", "`all-MiniLM-L6-v2`", "`tiny (sha 42)`", "| num_clusters | `2` |",
                 "| per_cluster | `1` |", "| selection | `farthest` |", "| code_version | `deadbeef` |",
                 "| difficulty/mean | 0.25 |", "| 1 | 2 | 1 | 0.500 |", "`distance`"):
        assert text in card, text
    facts = json.loads((tmp_path / "out" / "export.json").read_text())
    assert facts["rows"] == 3 and facts["selected"] == 2 and facts["formats"] == ["parquet"]
    assert set(paths) == {"parquet", "README.md", "export.json"}


def test_a_non_empty_folder_is_refused_without_force_and_replaced_with_it(tmp_path):
    table = export_table(curation_table(), "rollouts")
    write_export(table, tmp_path / "out", ("hf", "jsonl"), CARD)
    with pytest.raises(ExportError, match="is not empty .*pass --force"):
        write_export(table, tmp_path / "out", ("parquet",), CARD)
    write_export(table, tmp_path / "out", ("parquet",), CARD, force=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "curation.parquet", "export.json"]
    assert table["difficulty_source"].unique().to_list() == ["measured"]


def test_force_never_deletes_files_an_export_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match=r"holds files that are not an export's \(mine.txt\)"):
        write_export(export_table(curation_table(), "label"), tmp_path, ("parquet",), CARD, force=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_an_unknown_format_is_named(tmp_path):
    with pytest.raises(ExportError, match="unknown export format 'csv'"):
        write_export(export_table(curation_table(), "label"), tmp_path / "o", ("parquet", "csv"), CARD)


def test_a_curation_without_cluster_column_is_named_on_export_and_on_read(tmp_path):
    with pytest.raises(ExportError, match="has no column 'cluster'"):
        export_table(curation_table().drop("cluster"), "rollouts")
    (tmp_path / "bad").mkdir()
    curation_table().drop("cluster").write_parquet(tmp_path / "bad" / "curation.parquet")
    with pytest.raises(ExportError, match=r"bad has no column 'cluster'"):
        read_curation(tmp_path / "bad")


def test_a_repeated_prompt_id_is_named_on_read():
    with pytest.raises(ExportError, match="prompt_id 'a' appears more than once"):
        read_curation(pl.concat([curation_table(), curation_table().filter(pl.col("prompt_id") == "a")]))


def test_a_folder_that_is_not_an_export_is_refused(tmp_path):
    with pytest.raises(ExportError, match="not a `space export` folder"):
        read_curation(tmp_path)


def test_space_export_refuses_a_non_empty_out_before_any_stage_runs(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "is not empty (notes.txt); pass --force" in " ".join(result.output.split())
    assert not (tmp_path / "README.md").exists()
