"""The bad-input catalogue (docs/data.md, "Errors and the bad-input catalogue"): one test per case.

Each case feeds one broken input and asserts the error (or the skip report) names the file, line, row,
field, key or prompt. CLI cases also assert a non-zero exit and no traceback unless `--debug`.
"""

import json
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest_cli import run_cli as _cli
from space.config import RecipeError, load_recipe
from space.data.sources import BadRowsError, DataConfig, DataError, load_split

GOOD = {"question": "What is 2 plus 2?", "answer": "4"}


def _lines(path: Path, *lines: bytes | str) -> Path:
    path.write_bytes(b"\n".join(x.encode() if isinstance(x, str) else x for x in lines) + b"\n")
    return path


def _pool(path: Path, rows: list, **cfg) -> tuple[pl.DataFrame, object]:
    _lines(path, *(json.dumps(r) for r in rows))
    return load_split(DataConfig(source="hf", path=str(path), eval_split=None, **cfg), "pool")


def _numbered(n: int) -> list[dict]:
    return [{"question": f"What is {i} times 3?", "answer": str(3 * i), "level": i % 3} for i in range(n)]


# ------------------------------------------------------------------------------------------------ data


def test_data_invalid_json_line_is_named_by_file_and_line(tmp_path):
    path = _lines(tmp_path / "pool.jsonl", json.dumps(GOOD), '{"question": "x", "answer": ', json.dumps(GOOD))
    table, report = load_split(DataConfig(source="hf", path=str(path), eval_split=None), "pool")
    assert table.height == 1 and report.duplicates == 1
    assert report.bad_rows[0]["where"] == f"{path} line 2"
    assert report.bad_rows[0]["problem"].startswith("invalid JSON")
    assert f"(e.g. {path} line 2: invalid JSON: Expecting" in report.summary("pool")  # the console line
    with pytest.raises(BadRowsError, match=r"pool.jsonl line 2, invalid JSON"):
        load_split(DataConfig(source="hf", path=str(path), eval_split=None, bad_rows="reject"), "pool")


def test_data_invalid_utf8_line_is_named_by_file_and_line(tmp_path):
    path = _lines(tmp_path / "pool.jsonl", json.dumps(GOOD), b'{"question": "caf\xe9?", "answer": "1"}')
    _, report = load_split(DataConfig(source="hf", path=str(path), eval_split=None), "pool")
    assert report.bad_rows[0]["where"] == f"{path} line 2"
    assert report.bad_rows[0]["problem"].startswith("invalid UTF-8")


def test_data_line_that_is_not_an_object(tmp_path):
    _, report = _pool(tmp_path / "pool.jsonl", [GOOD, [1, 2]])
    assert report.bad_rows[0]["problem"] == "expected a JSON object, got list"


def test_data_absent_answer_field_is_missing(tmp_path):
    _, report = _pool(tmp_path / "pool.jsonl", [GOOD, {"question": "q?"}])
    assert (report.bad_rows[0]["field"], report.bad_rows[0]["problem"]) == ("answer", "missing")


def test_data_null_answer_is_missing_not_nonetype(tmp_path):
    _, report = _pool(tmp_path / "pool.jsonl", [GOOD, {"question": "q?", "answer": None}])
    assert report.bad_rows[0]["problem"] == "missing"


def test_data_bool_answer_is_rejected(tmp_path):
    _, report = _pool(tmp_path / "pool.jsonl", [GOOD, {"question": "q?", "answer": True}])
    assert report.bad_rows[0]["problem"] == "expected text or number, got bool"


def test_data_string_level_is_rejected_naming_the_field(tmp_path):
    rows = [{**GOOD, "lvl": 1}, {"question": "q?", "answer": "1", "lvl": "hard"}]
    _, report = _pool(tmp_path / "pool.jsonl", rows, level_column="lvl")
    assert report.bad_rows[0]["field"] == "lvl" and "got str 'hard'" in report.bad_rows[0]["problem"]


def test_data_nan_level_is_rejected(tmp_path):
    path = tmp_path / "pool.parquet"
    pl.DataFrame({"question": ["a?", "b?"], "answer": ["1", "2"], "level": [1.0, float("nan")]}).write_parquet(path)
    _, report = load_split(DataConfig(source="hf", path=str(path), eval_split=None, level_column="level"), "pool")
    assert report.bad_rows == [
        {"row": 1, "where": f"{path} row 1", "field": "level", "problem": "expected int, got nan"}]


def test_data_all_rows_bad_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match=r"pool.jsonl: no usable rows \(2 read, 2 bad, e.g. .*line 1: answer missing"):
        _pool(tmp_path / "pool.jsonl", [{"question": "a?"}, {"question": "b?"}])


def test_data_one_row_pool_loads_and_cannot_hold_out_an_eval_split(tmp_path):
    table, _ = _pool(tmp_path / "pool.jsonl", [GOOD])
    assert table.height == 1
    with pytest.raises(DataError, match="eval_fraction needs at least 2 usable rows"):
        load_split(DataConfig(source="hf", path=str(tmp_path / "pool.jsonl"), eval_fraction=0.5), "pool")


def test_data_unsupported_file_type_names_the_file(tmp_path):
    (tmp_path / "pool.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"pool.txt: unsupported file type '.txt'"):
        load_split(DataConfig(source="hf", path=str(tmp_path / "pool.txt"), eval_split=None), "pool")


def test_data_directory_without_split_files_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no train\*.jsonl"):
        load_split(DataConfig(source="hf", path=str(tmp_path)), "pool")


def test_data_broken_json_array_names_file_and_line(tmp_path):
    (tmp_path / "pool.json").write_text('[\n {"question": "a?", "answer": "1"},\n {"question": }\n]')
    with pytest.raises(ValueError, match=r"pool.json line 3: invalid JSON"):
        load_split(DataConfig(source="hf", path=str(tmp_path / "pool.json"), eval_split=None), "pool")


def test_data_unreadable_parquet_names_the_file(tmp_path):
    (tmp_path / "pool.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match=r"pool.parquet: cannot be read as parquet"):
        load_split(DataConfig(source="hf", path=str(tmp_path / "pool.parquet"), eval_split=None), "pool")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_data_level_outside_int64_is_a_bad_row_naming_file_and_line(tmp_path, suffix):
    path = tmp_path / f"pool{suffix}"
    if suffix == ".jsonl":
        _lines(path, json.dumps({**GOOD, "level": 1}), json.dumps({"question": "b?", "answer": "2", "level": 10**30}))
    else:  # polars reads this column as i128
        path.write_text(f"question,answer,level\na?,1,1\nb?,2,{10**30}\n")
    table, report = load_split(DataConfig(source="hf", path=str(path), eval_split=None, level_column="level"), "pool")
    assert table["level"].to_list() == [1]
    assert report.bad_rows[0]["where"] == f"{path} line {2 if suffix == '.jsonl' else 3}"
    assert report.bad_rows[0]["problem"] == f"{10**30} is outside the int64 range of levels"


def test_data_csv_rows_with_a_missing_or_extra_field_are_bad_rows_and_the_hold_out_says_so(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text("question,answer\nWhat is 1+1?,2\nWhat is 2+2?\nWhat is 3+3?,6,extra\n")
    table, report = load_split(DataConfig(source="hf", path=str(path), eval_split=None), "pool")
    assert table["question"].to_list() == ["What is 1+1?"]
    assert [(b["where"], b["problem"]) for b in report.bad_rows] == [
        (f"{path} line 3", "1 field where the header has 2"), (f"{path} line 4", "3 fields where the header has 2")]
    with pytest.raises(DataError, match=r"eval_fraction needs at least 2 usable rows to hold some out, got 1: .*"
                       r"read 3 rows, kept 1; skipped 2 bad.*line 3: 1 field where the header has 2"):
        load_split(DataConfig(source="hf", path=str(path), eval_fraction=0.3), "pool")


def test_data_same_question_with_different_answers_is_a_bad_row_group_naming_the_lines(tmp_path):
    rows = [{"question": "What is 2+2?", "answer": "4"}, *_numbered(2), {"question": "what is  2+2?", "answer": "5"}]
    table, report = _pool(tmp_path / "pool.jsonl", rows)
    assert table.height == 2 and "What is 2+2?" not in table["question"].to_list()
    assert [b["where"] for b in report.bad_rows] == [f"{tmp_path / 'pool.jsonl'} line {n}" for n in (1, 4)]
    assert "'4' at " in report.bad_rows[0]["problem"] and "line 4)" in report.bad_rows[0]["problem"]
    with pytest.raises(BadRowsError, match=r"pool.jsonl line 1, field 'answer': conflicts with another row: the same "
                       r"question 'What is 2\+2\?' has 2 different answers \('4' at .*line 1, '5' at .*line 4\)"):
        _pool(tmp_path / "pool.jsonl", rows, bad_rows="reject")


def test_data_eval_set_holding_every_pool_row_is_named_not_a_pca_error(tmp_path):
    path = _lines(tmp_path / "pool.jsonl", *(json.dumps(r) for r in _numbered(4)))
    with pytest.raises(DataError, match=r"all 4 pool rows also appear in the eval set \(.*pool.jsonl\)"):
        load_split(DataConfig(source="hf", path=str(path), eval_path=str(path)), "pool")


def test_data_more_clusters_than_prompts_names_the_key():
    from space.curate.clustering import ClusterConfig, cluster_features

    with pytest.raises(ValueError, match=r"num_clusters=8 exceeds the pool size N=3"):
        cluster_features(np.zeros((3, 4), dtype=np.float32), ClusterConfig(num_clusters=8))


# ------------------------------------------------------------------------------------------------ recipes


@pytest.mark.parametrize(("override", "named"), [
    ("train.epoks=3", "train.epoks"),  # unknown key
    ("train.epochs=three", "train.epochs"),  # wrong type
    ("verifier.name=mathh", "unknown verifier 'mathh'"),  # unknown verifier, at load time
    ("train.bandit.policy=ts_hrad", "train.bandit.policy"),  # unknown policy
    ("engine.kind=vllmm", "engine.kind"),  # unknown engine
    ("curate.selection.selection=farthst", "curate.selection.selection"),  # unknown selection rule
    ("data.eval_fraction=1.5", "data.eval_fraction"),  # out of range
    ("seed=-1", "seed: Input should be greater than or equal to 0"),  # refused at load, not in the first epoch
    ("data.seed=-1", "data.seed"),
    ("train.slots_per_epoch=7", "slots_per_epoch = 7 is not a multiple of grpo.prompts_per_step = 8"),
    ("train.grpo.gradient_accumulation_steps=3", "is not divisible by gradient_accumulation_steps = 3"),
])
def test_recipe_bad_value_fails_at_load_naming_key_and_file(override, named):
    with pytest.raises(RecipeError) as err:
        load_recipe("builtin", [override])
    assert named in str(err.value) and "space/recipes/builtin.yaml" in str(err.value)


@pytest.mark.parametrize(("text", "line"), [
    ("base: builtin\nseed: !!python/object/apply:os.system [\"touch {dir}/pwned\"]\n", 2),  # a tag safe_load refuses
    ("base: builtin\ntrain:\n  epochs: [3\n", 4),  # a syntax error (the flow sequence never closes)
])
def test_recipe_yaml_with_a_foreign_tag_or_a_syntax_error_is_a_recipe_error_naming_file_and_line(tmp_path, text, line):
    from typer.testing import CliRunner

    from flows.cli import app

    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text.replace("{dir}", str(tmp_path)))
    with pytest.raises(RecipeError, match=rf"bad.yaml line {line}, column \d+: not a valid recipe YAML"):
        load_recipe(str(recipe))
    result = CliRunner().invoke(app, ["recipe", "--recipe", str(recipe)])
    assert result.exit_code == 2 and f"bad.yaml line {line}" in result.output
    assert "unexpected error" not in result.output and not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------------ models


def test_model_without_chat_template_names_the_model(tmp_path):
    from conftest_models import make_tiny_model_dir
    from transformers import AutoTokenizer

    from space.data.prompting import render_prompts

    directory = make_tiny_model_dir(tmp_path / "m")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in directory.glob("chat_template.*"):
        extra.unlink()
    with pytest.raises(ValueError, match="has no chat_template"):
        render_prompts(AutoTokenizer.from_pretrained(directory), ["q"])


def test_model_context_too_small_for_a_prompt_skips_or_rejects_it(tmp_path):
    from conftest_models import make_tiny_model_dir

    from tasks.common import file_sha256, write_manifest
    from tasks.curate import fit_context

    model = {"path": str(make_tiny_model_dir(tmp_path / "m")), "sha": "m0"}  # context 512
    rows = [*_numbered(3), {"question": "x" * 200_000, "answer": "1"}]
    table, report = _pool(tmp_path / "pool.jsonl", rows)
    (tmp_path / "data").mkdir()
    table.write_parquet(tmp_path / "data" / "pool.parquet")
    pool = {"path": str(tmp_path / "data" / "pool.parquet"), "sha": file_sha256(tmp_path / "data" / "pool.parquet"),
            "rows": table.height, "report": {}, "summary": report.summary("pool")}
    data = write_manifest(tmp_path / "data", {"pool": pool, "eval": None, "seconds": 0.0})
    fitted = fit_context.fn(data, model, None, 16, "skip")
    assert fitted["pool"]["rows"] == 3 and fitted["pool"]["report"]["data/pool/too_long"] == 1
    assert fitted["pool"]["report"]["too_long"][0]["tokens"] > 200_000
    assert "1 too long for the model's context (512 tokens" in fitted["pool"]["summary"]
    with pytest.raises(DataError, match=r"do not fit the model's context of 512 tokens .*prompt_id [0-9a-f]{16}"):
        fit_context.fn(data, model, None, 16, "reject")


def test_model_missing_local_directory_is_named(tmp_path):
    from tasks.bootstrap import external_model

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        external_model.fn(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------------------------------------ engines


def test_engine_server_down_gives_up_naming_the_prompt():
    from space.engines import EngineConfig, EngineRequestError, make_engine

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = EngineConfig(kind="openai", openai_base_url=f"http://127.0.0.1:{port}/v1", openai_model="m",
                       openai_retries=1, openai_backoff=0.01)
    with make_engine(cfg, "unused") as engine, pytest.raises(EngineRequestError, match="p-down.*2 attempts"):
        engine.generate(["hi"], n=1, temperature=0.0, max_tokens=2, seed=0, prompt_ids=["p-down"])


# ------------------------------------------------------------------------------------------------ verifiers


def test_verifier_exception_is_raised_with_the_prompt_id_not_scored_0():
    from space.curate.difficulty import DifficultyConfig, VerifierError, estimate_difficulty

    def broken(completions, *, answer, metadata=None, **_):
        raise ZeroDivisionError("scorer bug")

    def generate(prompts, n, temperature, max_tokens, seed, prompt_ids):
        return [["x"] * n for _ in prompts]

    with pytest.raises(VerifierError, match="p1"):
        estimate_difficulty(["p1"], ["q"], ["1"], [None], generate, broken, DifficultyConfig(k=2, max_tokens=4), 0)


def test_verifier_math_parse_error_is_none_never_0(monkeypatch):
    import math_verify.parser

    from space.data.verifiers import get_verifier

    real = math_verify.parser.extract_target_from_pred

    def broken(pred, *args, **kwargs):  # stands in for a real parser failure, on the completion only
        if pred == "\\boxed{4}":
            raise RuntimeError("latex2sympy failed")
        return real(pred, *args, **kwargs)

    monkeypatch.setattr(math_verify.parser, "extract_target_from_pred", broken)
    assert get_verifier("math")(["\\boxed{4}"], answer=["4"]) == [None]


# ------------------------------------------------------------------------------------------------ tracking


def test_mlflow_unreachable_at_start_names_the_uri(monkeypatch):
    import tasks  # noqa: F401
    from tasks.tracking import TrackingError, open_run

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(TrackingError, match=f"MLflow at http://127.0.0.1:{port} cannot be reached"):
        open_run.fn("r", {}, {}, "")


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_bad_recipe_exits_2_with_one_paragraph(tmp_path):
    out = _cli(tmp_path, "curate", "--set", "verifier.name=mathh")
    assert out.returncode == 2 and "unknown verifier 'mathh'" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.slow
def test_cli_missing_pool_file_exits_2_naming_it_and_debug_shows_the_traceback(tmp_path):
    from conftest_models import make_tiny_model_dir

    model = make_tiny_model_dir(tmp_path / "m")
    args = ("curate", "--set", "data.source=hf", "--set", f"data.path={tmp_path / 'nope.jsonl'}",
            "--set", f"model.name={model}")
    out = _cli(tmp_path / "home", *args)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "nope.jsonl" in out.stderr and "Traceback" not in out.stdout + out.stderr
    debug = _cli(tmp_path / "home", *args, debug=True)
    assert debug.returncode != 0 and "Traceback" in debug.stdout + debug.stderr
