"""Data sources: normalised schema, stable ids, duplicates and bad rows counted, builtin splits disjoint."""

import json

import polars as pl
import pytest

from space.data.sources import SCHEMA, BadRowsError, DataConfig, DataError, load_split, make_prompt_id, normalize_rows


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "What is 6 times 7?", "answer": "#### 42"},
    {"question": "What is 6 times 7?", "answer": "#### 42"},  # exact duplicate
    {"question": "", "answer": "#### 1"},  # empty question
    {"question": "How many legs?", "answer": None},  # missing answer value
    {"question": ["not", "text"], "answer": "#### 2"},  # wrong type
]


EVAL_ROWS = [{"question": "What is 5 plus 5?", "answer": "#### 10"}]


def test_local_jsonl_with_gsm8k_answers(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", GSM8K_ROWS)
    _write_jsonl(tmp_path / "test.jsonl", EVAL_ROWS)
    cfg = DataConfig(source="hf", path=str(tmp_path), answer_format="gsm8k", source_name="gsm8k")
    table, report = load_split(cfg, "pool")
    assert dict(table.schema) == SCHEMA
    assert table["answer"].to_list() == ["7", "42"]
    assert table["source"].unique().to_list() == ["gsm8k"]
    assert (report.raw_rows, report.kept_rows, report.duplicates) == (6, 2, 1)
    assert [(b["row"], b["field"], b["problem"]) for b in report.bad_rows] == [
        (3, "question", "empty"), (4, "answer", "missing"), (5, "question", "expected text, got list")]
    assert [b["where"] for b in report.bad_rows] == [f"{tmp_path / 'train.jsonl'} line {n}" for n in (4, 5, 6)]
    eval_table, _ = load_split(cfg, "eval")
    assert eval_table["answer"].to_list() == ["10"]


def test_reject_mode_names_row_and_field(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", GSM8K_ROWS)
    cfg = DataConfig(source="hf", path=str(tmp_path), answer_format="gsm8k", bad_rows="reject")
    with pytest.raises(BadRowsError, match=r"train.jsonl line 4, field 'question': empty"):
        load_split(cfg, "pool")


def test_column_mapping_and_missing_column(tmp_path):
    rows = [{"problem": "1+1?", "solution": 2, "level": 3}, {"problem": "2+2?", "solution": 4, "level": 1}]
    path = tmp_path / "data.parquet"
    pl.DataFrame(rows).write_parquet(path)
    cfg = DataConfig(source="hf", path=str(path), question_column="problem", answer_column="solution",
                     level_column="level", eval_split=None)
    table, _ = load_split(cfg, "pool")
    assert table["answer"].to_list() == ["2", "4"] and table["level"].to_list() == [3, 1]
    bad = DataConfig(source="hf", path=str(path), question_column="prompt", eval_split=None)
    with pytest.raises(DataError, match=r"data.parquet: no usable rows .*data.parquet row 0: prompt missing"):
        load_split(bad, "pool")


def test_single_file_has_no_implicit_eval(tmp_path):
    path = _write_jsonl(tmp_path / "all.jsonl", GSM8K_ROWS[:2])
    cfg = DataConfig(source="hf", path=str(path))
    assert not cfg.has_eval() and load_split(cfg, "eval") is None
    assert load_split(cfg, "pool")[0].height == 2  # curation needs no eval set


def test_prompt_id_is_stable_content_hash():
    assert make_prompt_id("q", "a") == make_prompt_id("q", "a") != make_prompt_id("q", "b")
    assert len(make_prompt_id("q", "a")) == 16


def test_hf_requires_path():
    with pytest.raises(ValueError, match="data.path is required"):
        DataConfig(source="hf")


def test_normalize_rows_keeps_metadata_as_json():
    table, _ = normalize_rows([{"question": "q", "answer": "a", "extra": (1, 2)}], DataConfig(), "x")
    assert json.loads(table["metadata"][0]) == {"extra": [1, 2]}


@pytest.fixture(scope="module")
def builtin_splits():
    cfg = DataConfig(pool_size=300, eval_size=100, sft_size=300, seed=5)
    return {split: load_split(cfg, split) for split in ("pool", "sft", "eval")}


def test_builtin_splits_are_disjoint_and_sized(builtin_splits):
    questions = {split: set(t["question"]) for split, (t, _) in builtin_splits.items()}
    assert not questions["pool"] & questions["eval"]
    assert not questions["pool"] & questions["sft"]
    assert not questions["sft"] & questions["eval"]
    pool_report = builtin_splits["pool"][1]
    assert pool_report.overlap_removed == 1 and pool_report.overlap[0]["match"] == "normalised"
    assert [builtin_splits[s][0].height for s in ("pool", "sft", "eval")] == [299, 300, 100]
    normal = {split: {" ".join(q.split()).lower() for q in qs} for split, qs in questions.items()}
    assert not normal["pool"] & normal["eval"]


def test_builtin_has_ground_truth_labels_and_scores(builtin_splits):
    from space.data.verifiers import get_verifier

    pool, _ = builtin_splits["pool"]
    assert pool["source"].n_unique() >= 4 and pool["level"].null_count() == 0
    assert pool.group_by("source").agg(pl.col("level").n_unique()).get_column("level").min() >= 3
    scores = get_verifier("reasoning_gym", extract="none")(pool["answer"].to_list(), answer=pool["answer"].to_list(),
                                                           metadata=pool["metadata"].to_list())
    assert scores == [1.0] * pool.height


def test_builtin_is_deterministic():
    cfg = DataConfig(pool_size=50, seed=1)
    assert load_split(cfg, "pool")[0].equals(load_split(cfg, "pool")[0])


def test_builtin_original_wording_keeps_ids_answers_and_scores():
    compact, _ = load_split(DataConfig(pool_size=40, seed=2), "pool")
    original, _ = load_split(DataConfig(pool_size=40, seed=2, builtin_question="original"), "pool")
    assert compact["answer"].to_list() == original["answer"].to_list()
    assert all(len(o) > len(c) for o, c in zip(original["question"], compact["question"]))


def _numbered(n, offset=0):
    return [{"question": f"What is {i} plus {i}?", "answer": str(2 * i)} for i in range(offset, offset + n)]


def test_eval_path_may_be_a_single_file(tmp_path):
    pool = _write_jsonl(tmp_path / "pool.jsonl", _numbered(5))
    held = _write_jsonl(tmp_path / "held.jsonl", _numbered(3, offset=100))
    cfg = DataConfig(source="hf", path=str(pool), eval_path=str(held))
    table, _ = load_split(cfg, "eval")
    assert table["answer"].to_list() == ["200", "202", "204"]
    assert load_split(cfg, "pool")[0].height == 5


def test_eval_fraction_holds_out_a_seeded_disjoint_split(tmp_path):
    path = _write_jsonl(tmp_path / "all.jsonl", _numbered(40))
    cfg = DataConfig(source="hf", path=str(path), eval_fraction=0.25, seed=7)
    pool, eval_table = load_split(cfg, "pool")[0], load_split(cfg, "eval")[0]
    assert (pool.height, eval_table.height) == (30, 10)
    assert not set(pool["prompt_id"]) & set(eval_table["prompt_id"])
    assert load_split(cfg, "eval")[0].equals(eval_table)  # same seed, same split
    assert "read 40 rows, kept 10;" in load_split(cfg, "eval")[1].summary("eval")
    assert "30 in the other split of data.eval_fraction" in load_split(cfg, "eval")[1].summary("eval")
    other = load_split(cfg.model_copy(update={"seed": 8}), "eval")[0]
    assert set(other["prompt_id"]) != set(eval_table["prompt_id"])


def test_eval_fraction_conflicts_are_rejected_at_load_time(tmp_path):
    with pytest.raises(ValueError, match="eval_fraction"):
        DataConfig(source="hf", path="x.jsonl", eval_path="y.jsonl", eval_fraction=0.1)
    with pytest.raises(ValueError, match="eval_fraction"):
        DataConfig(eval_fraction=0.1)


def test_pool_eval_overlap_is_removed_exact_and_normalised(tmp_path):
    pool = _write_jsonl(tmp_path / "pool.jsonl", _numbered(4))
    held = _write_jsonl(tmp_path / "held.jsonl", [{"question": "What is 1 plus 1?", "answer": "2"},
                                                 {"question": "  what IS 2   plus 2? ", "answer": "4"}])
    table, report = load_split(DataConfig(source="hf", path=str(pool), eval_path=str(held)), "pool")
    assert table["answer"].to_list() == ["0", "6"]
    assert report.overlap_removed == 2 and report.kept_rows == 2
    assert [o["match"] for o in report.overlap] == ["exact", "normalised"]
    assert "2 also in the eval set" in report.summary("pool")
