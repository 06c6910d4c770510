"""`workbench export task` (dataset files) and `workbench export run` (model folders), and
load_run on an exported folder."""

from __future__ import annotations

import json
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import experiments.export as ex
from experiments.build import build_task
from experiments.cli import main
from experiments.errors import UserError, install_hint
from experiments.export import ROW_CHUNK, export_run, export_task, rendered_columns, task_columns
from experiments.load import load_run
from experiments.modelfolder import WEIGHTS
from experiments.registry import known_tasks, task_class
from experiments.runspec import read_run_spec, resolve_spec
from conftest import need_module
from helpers import TINY, cli
from tasks.addition import AdditionConfig, AdditionTask
from tasks.calculator import CalculatorTask


def addition(**options) -> AdditionTask:
    return AdditionTask(AdditionConfig(**options))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- export task: rows -------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in known_tasks() if task_class(n).metric == "accuracy"])
def test_vectorised_strings_match_rendered_prompt_and_target(name):
    task = build_task(resolve_spec(name))
    r = task.render(next(task.eval_problems(3, "test", 300)))
    assert rendered_columns(r) == ([r.prompt(i) for i in range(len(r))], [r.target(i) for i in range(len(r))])


def test_symbol_tokens_survive_the_string_view():
    """modular's tokens=symbols are CJK characters: they must come out as themselves."""
    task = build_task(resolve_spec("modular", sets=["task.tokens=symbols"]))
    r = task.render(next(task.eval_problems(0, "test", 50)))
    prompts, completions = rendered_columns(r)
    assert prompts == [r.prompt(i) for i in range(len(r))] and all(ord(c) >= 0x4E00 for c in completions)


def test_rows_are_prompt_completion_answer_and_buckets(tmp_path):
    task = CalculatorTask()
    out = tmp_path / "calc.jsonl"
    done = export_task(task, out, split="test", n=300, seed=4)
    assert done.rows == 300 and done.columns == ("prompt", "completion", "answer", "n_ops", "max_digits", "ops")
    rows = read_jsonl(out)
    problems = next(task.eval_problems(4, "test", 300))  # the very problems `workbench eval --seed 4` scores
    r, answers = task.render(problems), task.solve(problems)
    for i, row in enumerate(rows):
        assert list(row) == list(done.columns)
        assert row["prompt"] == r.prompt(i) and row["completion"] == r.target(i)  # END is not in completion
        assert row["answer"] == str(answers[i]) and isinstance(row["answer"], str)
        assert row["n_ops"] == int(problems["n_ops"][i]) and row["ops"] == problems["ops"][i]
        assert task.parse_answer(row["completion"]) == answers[i]


def test_export_is_deterministic_to_the_byte(tmp_path):
    task = addition()
    for suffix in ("jsonl", "parquet"):
        a, b, c = (tmp_path / f"{x}.{suffix}" for x in "abc")
        export_task(task, a, n=2500, seed=1)
        export_task(addition(), b, n=2500, seed=1)  # a fresh task object: nothing cached decides the rows
        export_task(task, c, n=2500, seed=2)
        assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_train_and_test_files_are_disjoint(tmp_path):
    task = addition()
    export_task(task, tmp_path / "train.jsonl", split="train", n=8000)
    export_task(task, tmp_path / "test.parquet", split="test", n=4000)
    pq = need_module("pyarrow.parquet", "export")
    train = {r["prompt"] for r in read_jsonl(tmp_path / "train.jsonl")}
    test = set(pq.read_table(tmp_path / "test.parquet").column("prompt").to_pylist())
    assert len(train) > 5000 and len(test) > 1000 and not train & test  # distinct prompts; small buckets repeat


def test_a_finite_train_pool_is_exported_as_the_run_trains_on_it(tmp_path):
    task = addition(train_size=300)
    export_task(task, tmp_path / "pool.jsonl", split="train", n=300, seed=7)
    pool = task.train_pool(7)
    r = task.render(pool)
    assert [row["prompt"] for row in read_jsonl(tmp_path / "pool.jsonl")] == [r.prompt(i) for i in range(300)]
    with pytest.raises(UserError, match="at most 300"):
        export_task(task, tmp_path / "more.jsonl", split="train", n=301, seed=7)
    assert not (tmp_path / "more.jsonl").exists()


def test_rows_stream_one_chunk_at_a_time(tmp_path):
    """Chunks are drawn lazily, and peak memory does not grow with n (the writer holds one chunk)."""
    task = addition()
    chunks = task_columns(task, "train", 2500, 0, chunk=1000)
    assert [len(c["prompt"]) for c in chunks] == [1000, 1000, 500]

    def peak(n: int, suffix: str) -> int:
        tracemalloc.start()
        try:
            export_task(task, tmp_path / f"m{n}.{suffix}", n=n, chunk=1000)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    for suffix in ("jsonl", "parquet"):
        peak(1000, suffix)  # warm-up: imports and caches are not what is measured
        small, large = peak(2000, suffix), peak(10_000, suffix)  # holding every row would need ~3x
        assert large < 1.5 * small + 256 * 1024, (suffix, small, large)


def test_parquet_carries_what_made_it(tmp_path):
    pq = need_module("pyarrow.parquet", "export")
    export_task(addition(max_digits=4), tmp_path / "a.parquet", split="ood", n=ROW_CHUNK + 5, seed=9, preset="small")
    f = pq.ParquetFile(tmp_path / "a.parquet")
    meta = json.loads(f.schema_arrow.metadata[b"workbench"])
    assert meta["task"] == "addition" and meta["task_config"]["max_digits"] == 4
    assert (meta["split"], meta["n"], meta["seed"], meta["preset"]) == ("ood", ROW_CHUNK + 5, 9, "small")
    assert f.metadata.num_row_groups == 2 and f.metadata.num_rows == ROW_CHUNK + 5  # one row group per chunk
    assert str(f.schema_arrow.field("answer").type) == "string"


def test_hugging_face_datasets_loads_both_formats(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = need_module("datasets", "datasets")
    task = CalculatorTask()
    export_task(task, tmp_path / "c.jsonl", n=500, seed=5)
    export_task(task, tmp_path / "c.parquet", n=500, seed=5)
    expected = read_jsonl(tmp_path / "c.jsonl")
    for kind, file in (("json", "c.jsonl"), ("parquet", "c.parquet")):
        ds = datasets.load_dataset(kind, data_files=str(tmp_path / file), split="train",
                                   cache_dir=str(tmp_path / f"hf-{kind}"))
        assert ds.num_rows == 500 and ds.column_names == list(expected[0])
        assert ds["answer"] == [r["answer"] for r in expected]  # a string column in both formats
        assert [dict(row) for row in ds] == expected


# ---- export task: the command line --------------------------------------------------------------

def test_cli_export_task(tmp_path, capsys):
    out = tmp_path / "add.parquet"
    code, stdout, err = cli(capsys, "export", "task", "addition", "--set", "task.max_digits=2", "--split", "test",
                            "--n", "50", "--seed", "3", "--out", out)
    assert code == 0 and stdout == "" and "50 test rows" in err and "rows/s" in err
    pq = need_module("pyarrow.parquet", "export")
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 50 and max(r["a_digits"] for r in rows) <= 2
    code, _, _ = cli(capsys, "export", "task", "addition", "--set", "task.max_digits=2", "--split", "test",
                     "--n", "50", "--seed", "3", "--out", tmp_path / "add.jsonl")
    assert code == 0 and read_jsonl(tmp_path / "add.jsonl") == rows


@pytest.mark.parametrize("args, message", [
    (["addition", "--out", "x.csv"], "ending in .jsonl or .parquet"),
    (["addition", "--split", "val", "--out", "x.jsonl"], "has no split 'val'"),
    (["addition", "--n", "0", "--out", "x.jsonl"], "--n must be between"),
    (["addition", "--set", "model.n_layer=1", "--out", "x.jsonl"], "only task.* overrides"),
    (["addition", "--set", "task.max_digit=2", "--out", "x.jsonl"], "unknown key task.max_digit"),
    (["addition", "--set", "task.train_size=10", "--n", "11", "--out", "x.jsonl"], "at most 10"),
    (["shakespeare", "--out", "x.jsonl"], "text corpus"),
    (["nosuch", "--out", "x.jsonl"], "unknown task"),
    (["addition", "--out", "nowhere/x.jsonl"], "does not exist"),
])
def test_cli_export_task_refuses_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "export", "task", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())  # nothing written, not even a temp file


def test_parquet_without_pyarrow_names_the_extra(tmp_path, capsys, monkeypatch):
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails, as if not installed
    code, _, err = cli(capsys, "export", "task", "addition", "--n", "5", "--out", tmp_path / "a.parquet")
    assert code == 2
    assert err.strip() == f"error: export task --out FILE.parquet needs pyarrow: {install_hint('export')}"
    assert not any(tmp_path.iterdir())
    code, _, err = cli(capsys, "export", "task", "addition", "--n", "5", "--out", tmp_path / "a.jsonl")
    assert code == 0, err  # jsonl needs no pyarrow


# ---- export run --------------------------------------------------------------------------------

def _train(out, *args: str) -> None:
    assert main(["train", "--task", "addition", *TINY, "--steps", "20", "--out", str(out), "--quiet",
                   "--device", "cpu", *args]) == 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny addition run (tied weights) and its export."""
    root = tmp_path_factory.mktemp("export")
    _train(root / "run")
    export_run(root / "run", root / "model", eval_n=100, device="cpu")
    return root / "run", root / "model"


def _logits(run, n: int = 64) -> torch.Tensor:
    x, _ = run.task.batch(0, "test", 0, 0, n, run.model.config.block_size)
    with torch.no_grad():
        return run.model(torch.from_numpy(x))[0]


def test_the_folder_is_weights_config_vocab_and_card(exported):
    run_dir, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "vocab.json"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in folder.iterdir())  # readable as any published file
    spec, record = read_run_spec(folder)  # config.json is the run's own record
    assert spec == read_run_spec(run_dir)[0]
    assert record["export"]["step"] == 20 and record["export"]["source"] == str(run_dir.resolve())
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert list(vocab) == list(record["task"]["vocab"]) and list(vocab.values()) == list(range(len(vocab)))


def test_the_model_card_has_hub_front_matter_and_the_eval_table(exported):
    _, folder = exported
    card = (folder / "README.md").read_text(encoding="utf-8")
    front, _, body = card.removeprefix("---\n").partition("\n---\n")
    assert "library_name: workbench" in front and "- addition" in front
    for needle in ("| task | `addition` |", "| preset | `addition` |", "| training steps | 20 |", "n_layer 1",
                   "| a_digits | b_digits | n | correct | accuracy | 95% CI |", "| all | all | 100 |"):
        assert needle in body, needle


def test_the_card_parses_as_a_hub_model_card(exported):
    _, folder = exported
    card = (folder / "README.md").read_text(encoding="utf-8")
    hub = need_module("huggingface_hub", "datasets")
    data = hub.ModelCard(card).data  # parsed the way upload_folder's Hub reads it (no network)
    assert data.library_name == "workbench" and "addition" in data.tags


def test_load_run_on_the_folder_gives_the_same_logits(exported):
    run_dir, folder = exported
    a, b = load_run(run_dir, device="cpu"), load_run(folder, device="cpu")
    assert b.step == a.step == 20 and b.model.lm_head.weight is b.model.wte.weight  # still tied
    assert torch.equal(_logits(a), _logits(b))
    prompts = [a.task.render(next(a.task.eval_problems(0, "test", 20))).prompt(i) for i in range(20)]
    assert a.complete(prompts) == b.complete(prompts)


def test_workbench_eval_scores_the_folder_as_the_run(exported, capsys):
    run_dir, folder = exported
    tables = []
    for path in (run_dir, folder):
        code, out, err = cli(capsys, "eval", path, "--n", "200", "--format", "json", "--device", "cpu")
        assert code == 0, err
        tables.append([{k: v for k, v in row.items() if k != "run"} for row in json.loads(out)])
    assert tables[0] == tables[1]


def test_untied_weights_and_best_checkpoint(tmp_path):
    _train(tmp_path / "run", "--set", "model.tie_weights=false", "--set", "train.eval_interval=10")
    export_run(tmp_path / "run", tmp_path / "best", checkpoint="best.pt", eval_n=0, device="cpu")
    a, b = load_run(tmp_path / "run", device="cpu", checkpoint="best.pt"), load_run(tmp_path / "best", device="cpu")
    assert b.step == a.step and torch.equal(_logits(a), _logits(b))
    assert "## Evaluation" not in (tmp_path / "best" / "README.md").read_text()  # eval_n=0: no table
    with pytest.raises(UserError, match="exported model"):
        load_run(tmp_path / "best", checkpoint="best.pt")


def test_a_text_run_exports_with_a_loss_table(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be, that is the question\n" * 200)
    assert main(["train", "--task", "text", "--set", f"task.path={corpus}", *TINY, "--steps", "5",
                   "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    export_run(tmp_path / "run", tmp_path / "model", eval_n=64, device="cpu")
    card = (tmp_path / "model" / "README.md").read_text()
    assert "| run | split | n | tokens | loss | ppl |" in card
    a, b = load_run(tmp_path / "run", device="cpu"), load_run(tmp_path / "model", device="cpu")
    assert torch.equal(_logits(a, 8), _logits(b, 8))


def test_out_must_be_new_or_empty(exported, tmp_path, capsys):
    run_dir, _ = exported
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for out, message in ((tmp_path / "full", "is not empty"), (tmp_path / "file", "is a file"),
                         (tmp_path / "no" / "dir", "does not exist")):
        code, _, err = cli(capsys, "export", "run", run_dir, "--out", out, "--eval-n", "0", "--device", "cpu")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    code, out, err = cli(capsys, "export", "run", run_dir, "--out", tmp_path / "empty", "--eval-n", "0",
                         "--device", "cpu")
    assert code == 0 and (tmp_path / "empty" / WEIGHTS).is_file() and "upload_folder" in out


def test_a_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ex, "model_card", boom)  # fails after the weights are written
    with pytest.raises(RuntimeError, match="disk on fire"):
        export_run(exported[0], tmp_path / "model", eval_n=0, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_missing_safetensors_names_the_extra(exported, tmp_path, capsys, monkeypatch):
    run_dir, folder = exported
    for name in ("safetensors", "safetensors.torch"):
        monkeypatch.setitem(sys.modules, name, None)
    code, _, err = cli(capsys, "export", "run", run_dir, "--out", tmp_path / "m", "--eval-n", "0", "--device", "cpu")
    assert code == 2 and err.strip() == f"error: export run needs safetensors: {install_hint('export')}"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match=r"needs safetensors: pip install 'workbench\[export\]'"):
        load_run(folder, device="cpu")


def test_a_damaged_or_mismatched_folder_is_refused(exported, tmp_path):
    run_dir, _ = exported
    export_run(run_dir, tmp_path / "m", eval_n=0, device="cpu")
    weights = tmp_path / "m" / WEIGHTS
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_run(tmp_path / "m", device="cpu")
    weights.write_bytes(whole)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["model"]["n_embd"] = 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="model.n_embd 32 vs 64"):
        load_run(tmp_path / "m", device="cpu")
    assert np.isfinite(_logits(load_run(run_dir, device="cpu"), 4).numpy()).all()  # the source is untouched
