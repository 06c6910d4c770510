"""`--log tensorboard|wandb`: the trackers get what metrics.jsonl has, once per step, across kill -9 and --resume.

Read back with each library's own reader: TensorBoard's EventAccumulator, and W&B's offline run
file (its records are W&B's protobufs, in the LevelDB log framing W&B writes them in)."""

import json
import struct
from pathlib import Path

import pytest

from conftest import need_module
from experiments.errors import install_hint
from experiments.trackers import hyperparameters, scalars
from helpers import TINY, cli, forked_run, killed, metrics

STEPS, EVERY, KILL_AT = 30, 10, 25  # the kill is 5 steps past the step-20 checkpoint


def train_args(out: Path, *extra: str) -> list[str]:
    return ["train", "--task", "addition", "--steps", STEPS, *TINY, "--set", f"train.eval_interval={EVERY}",
            "--target-acc", "0", "--device", "cpu", "-q", "--out", out, *extra]


def all_metrics(run: Path) -> list[dict]:
    return metrics(run, drop_timing=False)


def killed_and_resumed(out: Path, *log: str, kill_at: int = KILL_AT) -> None:
    p = forked_run(*train_args(out, *log), fault=f"kill:step={kill_at}")
    assert killed(p), p.stderr[-2000:]
    p = forked_run("train", "--resume", "--out", out, "-q", "--device", "cpu", *log)
    assert p.returncode == 0, p.stderr[-2000:]


# ---- TensorBoard ---------------------------------------------------------------------------------

def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for record in all_metrics(run):
        for key, value in scalars(record).items():
            out.setdefault(key, []).append((record["step"], value))
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag  # every step, once, in order
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in want[tag]], rel=1e-6), tag  # float32


def test_tensorboard_holds_metrics_jsonl(tmp_path, capsys):
    code, _, err = cli(capsys, *train_args(tmp_path / "run", "--log", "tensorboard", "--tag", "spec=demo"))
    assert code == 0, err
    got = tensorboard_scalars(tmp_path / "run" / "tb")
    assert_same(got, expected(tmp_path / "run"))
    assert {"loss", "val_loss", "val_acc", "lr"} <= got.keys()


@pytest.mark.parametrize("kill_at", [KILL_AT, 5], ids=["past-a-checkpoint", "before-any-checkpoint"])
def test_tensorboard_after_kill_and_resume_has_each_step_once(tmp_path, kill_at):
    # killed before its first checkpoint, a run restarts from step 0: everything earlier is purged
    killed_and_resumed(tmp_path / "run", "--log", "tensorboard", kill_at=kill_at)
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 2  # the killed attempt's file and the resumed one's
    got = tensorboard_scalars(tmp_path / "run" / "tb")
    assert_same(got, expected(tmp_path / "run"))
    # the fault really happened: the killed attempt logged steps the resume then replayed
    assert [s for s, _ in got["loss"]] == list(range(1, STEPS + 1))


# ---- Weights & Biases, offline ---------------------------------------------------------------------

def wandb_records(run_file: Path):
    """W&B's protobuf Records from an offline run file (LevelDB log framing: 32 KiB blocks of
    chunks with a 7-byte header, after W&B's own 7-byte file header)."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts + chunk)
            parts = b""
            yield record
        elif kind in (2, 3):  # FIRST, MIDDLE
            parts += chunk


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B writes either, depending on its version


def wandb_history(run_dir: Path) -> tuple[list[str], dict, dict[int, dict]]:
    """Run ids, config and history (step -> scalars; the first value of a step wins, as in W&B)
    over every offline attempt of the run, oldest first."""
    ids, config, history = [], {}, {}
    for attempt in sorted((run_dir / "wandb").glob("offline-run-*")):
        for record in wandb_records(next(attempt.glob("run-*.wandb"))):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.append(record.run.run_id)
                config.update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "history":
                row = {_key(i): json.loads(i.value_json) for i in record.history.item}
                step = row.pop("_step")
                history.setdefault(step, {k: v for k, v in row.items() if not k.startswith("_")})
    return ids, config, history


@pytest.fixture
def offline(monkeypatch):
    need_module("wandb", "wandb")  # missing: skipped with the install line (failed under CI)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


# W&B's tests start its service process and train in processes of their own, with the wandb extra
# (pip install -e '.[dev,wandb]'; CI installs it)
def test_wandb_offline_run_holds_metrics_jsonl_and_the_config(tmp_path, offline):
    p = forked_run(*train_args(tmp_path / "run", "--log", "wandb", "--tag", "variant=base"))
    assert p.returncode == 0, p.stderr[-2000:]
    ids, config, history = wandb_history(tmp_path / "run")
    assert len(ids) == 1
    want = {r["step"]: scalars(r) for r in all_metrics(tmp_path / "run")}
    assert sorted(history) == sorted(want)
    for step in want:
        assert history[step] == pytest.approx(want[step]), step
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: config[k] for k in ("model.n_layer", "train.lr", "task", "tag.variant")} == \
        {k: hyperparameters(record, ["variant=base"])[k] for k in ("model.n_layer", "train.lr", "task", "tag.variant")}


def test_wandb_resume_continues_the_same_run_with_each_step_once(tmp_path, offline):
    killed_and_resumed(tmp_path / "run", "--log", "wandb")
    ids, _, history = wandb_history(tmp_path / "run")
    assert len(set(ids)) == 1  # one W&B run, whatever the killed attempt managed to write
    recs = all_metrics(tmp_path / "run")
    assert sorted(history) == [r["step"] for r in recs]
    for r in recs:  # re-sent from metrics.jsonl, or replayed bit-identically: the run's values
        want = {k: v for k, v in scalars(r).items() if k not in ("tokens_per_s", "ms_per_step", "train_time")}
        assert {k: history[r["step"]][k] for k in want} == pytest.approx(want)


# ---- without the extras ------------------------------------------------------------------------------

@pytest.mark.parametrize("sink,module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_a_missing_tracker_says_which_extra_to_install(tmp_path, capsys, monkeypatch, sink, module):
    import importlib

    real = importlib.import_module

    def without(name, *a, **k):
        if name == module:
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", without)
    code, _, err = cli(capsys, *train_args(tmp_path / "run", "--log", sink))
    assert code == 2 and err.strip() == f"error: --log {sink} needs {sink}: {install_hint(sink)}"
    assert not (tmp_path / "run").exists()  # refused before anything was made
    code, _, err = cli(capsys, *train_args(tmp_path / "run", "--log", "mlflow"))
    assert code == 2 and "--log 'mlflow': choose from tensorboard, wandb" in err


def test_no_tracker_unless_asked(tmp_path, capsys):
    code, _, err = cli(capsys, *train_args(tmp_path / "run"))
    assert code == 0, err
    assert not (tmp_path / "run" / "tb").exists() and not (tmp_path / "run" / "wandb").exists()


def test_workbench_run_passes_log_with_spec_variant_and_seed_tags(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "tagged"\nbudget_minutes = 1\nseeds = [1, 2]\n[base]\ntask = "addition"\nsteps = 2\n'
                    '[[variant]]\nname = "a"\n[[variant]]\nname = "b"\nset = { "train.lr" = 1e-3 }\n')
    code, out, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "--dry-run", "--log", "tensorboard")
    assert code == 0, err
    planned = [line for line in out.splitlines() if "workbench train" in line]
    assert len(planned) == 4
    for variant, seed in (("a", 1), ("a", 2), ("b", 1), ("b", 2)):
        want = f"--log tensorboard --tag spec=tagged --tag variant={variant} --tag seed={seed}"
        assert sum(line.endswith(want) for line in planned) == 1, (want, planned)
    code, out, _ = cli(capsys, "run", spec, "--out", tmp_path / "out", "--dry-run")
    assert code == 0 and "--log" not in out and "--tag" not in out


def test_a_bad_tag_is_refused(tmp_path, capsys):
    code, _, err = cli(capsys, *train_args(tmp_path / "run", "--tag", "novalue"))
    assert code == 2 and "--tag expects KEY=VALUE, got 'novalue'" in err and not (tmp_path / "run").exists()
