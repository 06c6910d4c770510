"""`workbench export adderboard`: the exported file, imported in a fresh process with torch alone,
answers exactly as the run's own greedy decoding does, and claims the unique-parameter count."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments.adderboard import adder_source, check_adder, section_names, template_sections
from experiments.build import build_task, fit_model
from experiments.cli import main
from experiments.errors import UserError
from experiments.load import Run, load_run
from experiments.runspec import resolve_spec
from gpt.model import GPT, count_parameters
from helpers import ROOT, cli

# the file is loaded with workbench's own packages made unimportable: it must need torch alone
PROBE = """
import importlib.util, json, sys
for name in ("gpt", "tasks", "experiments"):
    sys.modules[name] = None
spec = importlib.util.spec_from_file_location("submission", sys.argv[1])
sub = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sub)
model, meta = sub.build_model()
seen, counted = set(), 0
for p in model.parameters():
    if p.data_ptr() not in seen:
        seen.add(p.data_ptr())
        counted += p.numel()
pairs = json.load(open(sys.argv[2]))
print(json.dumps({"meta": meta, "counted": counted, "answers": [sub.add(model, a, b) for a, b in pairs],
                  "completions": [sub.complete(model, a, b) for a, b in pairs]}))
"""


def pairs(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """AdderBoard's kinds of pairs: some of its edge cases, operands uniform in 0..10^10-1 as its
    verify.py draws them (mostly 10 digits), and as many with a digit count 1..10 drawn first, so
    that short operands are probed too."""
    rng = random.Random(seed)
    out = [(9_999_999_999, 9_999_999_999), (9_999_999_999, 1), (0, 0), (0, 1), (1_111_111_111, 8_888_888_889)]
    for i in range(n - len(out)):
        d = 10 if i % 2 else rng.randint(1, 10)
        out.append((rng.randint(0, 10**d - 1), rng.randint(0, 10**d - 1)))
    return out


def probe(file: Path, problems: list[tuple[int, int]], tmp_path: Path) -> dict:
    (tmp_path / "pairs.json").write_text(json.dumps(problems))
    done = subprocess.run([sys.executable, "-c", PROBE, str(file), str(tmp_path / "pairs.json")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_answers(run: Run, problems: list[tuple[int, int]]) -> tuple[list[str], list[int]]:
    """The run's own batched greedy decoding (KV cache and all), and its answers parsed by the task
    (-1 where one does not parse)."""
    completions = run.complete([run.task.prompt(a, b) for a, b in problems])
    return completions, [-1 if (v := run.task.parse_answer(c)) is None else v for c in completions]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """The add10-tiny preset trained for 20 steps (untrained, in effect), and its export."""
    root = tmp_path_factory.mktemp("adderboard")
    assert main(["train", "--task", "addition", "--preset", "add10-tiny", "--steps", "20", "--set",
                 "train.eval_interval=20", "--set", "train.eval_iters=2", "--out", str(root / "run"), "--quiet",
                 "--device", "cpu"]) == 0
    assert main(["export", "adderboard", str(root / "run"), "--out", str(root / "add10.py"), "--author", "test"]) == 0
    return root / "run", root / "add10.py"


def test_the_file_answers_as_the_run_does_and_claims_the_unique_count(trained, tmp_path):
    run_path, file = trained
    problems = pairs(300)
    got = probe(file, problems, tmp_path)
    run = load_run(run_path, device="cpu")
    assert (got["completions"], got["answers"]) == run_answers(run, problems)
    assert got["meta"]["params"] == got["counted"] == count_parameters(run.model) == 1932  # the preset's 1,932
    assert {"name", "author", "params", "architecture", "tricks"} <= got["meta"].keys()
    assert got["meta"]["author"] == "test"


def hand_run(sets: list[str], scale: float = 40.0) -> Run:
    """A run built without training: the spec's task and model, weights scaled up from their init so
    that every logit has a clear maximum (an untrained model's near-ties would test rounding, not code)."""
    spec = resolve_spec("addition", sets=sets)
    task = build_task(spec)
    torch.manual_seed(3)
    model = GPT(fit_model(task, spec.model)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return Run(Path("hand"), {}, task, model, 0, spec)


VARIANTS = {
    "savers": ["model.pos=learned", "model.norm=rmsnorm", "model.mlp=swiglu", "model.qk_norm=true", "model.bias=true",
               "model.rank=3", "model.tie_kv=true", "model.tie_qo=true", "model.share_norms=true",
               "task.zero_pad=true", "task.reverse_operands=true", "task.max_digits=10"],
    "coupled": ["model.pos=coupled", "model.mlp=relu2", "task.max_digits=10", "model.n_embd=16", "model.mlp_hidden=9"],
    "local": ["model.pos=coupled_local", "model.rank=2", "task.coupled_ids=interleaved", "model.n_layer=2"],
    "plain": ["model.pos=none", "model.tie_weights=false", "task.reverse_answer=false", "model.tie_kv=true",
              "model.mlp_hidden=5"],
    "narrow swiglu": ["model.pos=coupled_rel", "model.mlp=swiglu", "model.mlp_hidden=6", "task.max_digits=10"],
}


@pytest.mark.parametrize("name", VARIANTS)
def test_every_section_answers_as_the_model_does(name, tmp_path):
    run = hand_run(["model.n_embd=12", "model.n_head=2", "model.block_size=40", *VARIANTS[name]])
    text, meta, _ = adder_source(run, name, "test")
    (tmp_path / "sub.py").write_text(text)
    problems = pairs(60, seed=1)
    got = probe(tmp_path / "sub.py", problems, tmp_path)
    completions, answers = run_answers(run, problems)
    assert (got["completions"], got["answers"]) == (completions, answers)
    assert len(set(completions)) > 10  # completions that differ: the comparison means something
    assert got["meta"]["params"] == got["counted"] == count_parameters(run.model) == meta["params"]


def test_the_file_holds_only_the_sections_its_options_need():
    sections = template_sections()
    cfg = hand_run(["model.block_size=40", *VARIANTS["savers"]]).model.config
    names = section_names(cfg)
    assert set(names) <= set(sections)
    assert {"linear.lowrank", "rmsnorm", "qk.on", "norms.shared", "mlp.swiglu", "split.kv", "out.tied",
            "pos.learned", "attend.causal", "ids.none"} <= set(names)
    assert not {"linear.full", "mlp.gelu", "pos.coupled_rel", "out.full"} & set(names)


@pytest.mark.parametrize("sets,message", [
    (["model.pos=rope"], "model.pos=rope is an encoding the exporter cannot write"),
    (["task.delimiters=true"], "task.delimiters=true is a format the exporter cannot write"),
    (["model.block_size=24"], "model.block_size=24 cannot hold a 10-digit problem"),
])
def test_options_it_cannot_write_are_refused(sets, message):
    with pytest.raises(UserError, match=message):
        check_adder(hand_run(["model.block_size=40", *sets]))


def test_a_task_other_than_addition_is_refused():
    spec = resolve_spec("copy")
    task = build_task(spec)
    with pytest.raises(UserError, match="AdderBoard scores addition runs"):
        check_adder(Run(Path("copy"), {}, task, GPT(fit_model(task, spec.model)), 0, spec))


def test_an_existing_file_is_never_replaced(trained, capsys):
    run_path, file = trained
    before = file.read_bytes()
    code, _, err = cli(capsys, "export", "adderboard", run_path, "--out", file)
    assert code == 2 and "never replaces" in err and len(err.strip().splitlines()) == 1
    assert file.read_bytes() == before
    code, _, err = cli(capsys, "export", "adderboard", run_path, "--out", file.with_suffix(".txt"))
    assert code == 2 and ".py" in err and not file.with_suffix(".txt").exists()


def test_the_verify_script_scores_the_file_and_the_run_alike(trained):
    """adderboard_verify.py on the exported file (one add() a pair, as verify.py calls it) and on the
    run directory (batched decoding) print the same edge-case failures and the same totals."""
    run_path, file = trained
    outputs = []
    for target in (file, run_path):
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "adderboard_verify.py"), str(target),
                               "--n", "40"], capture_output=True, text=True, timeout=600)
        assert "counted 1932" in done.stdout and "random pairs (n=40, seed=2025)" in done.stdout
        assert done.returncode == 1 and "FAILS" in done.stdout  # 20 steps do not make an adder
        outputs.append([line for line in done.stdout.splitlines()  # less the name and the time taken
                        if not line.startswith("random pairs") and "claims" not in line])
    assert outputs[0] == outputs[1]
    assert any(line.startswith("all cases: ") and "/50 = " in line for line in outputs[0])  # 40 pairs + 10 edge cases


def test_show_run_prints_both_counts(trained, capsys):
    run_path, _ = trained
    code, out, _ = cli(capsys, "show", run_path)
    assert code == 0
    assert "1,932 unique (AdderBoard's count" in out and "2,088 in the state dict" in out  # wte = lm_head, 13 x 12
    code, _, err = cli(capsys, "show", run_path, "--task", "addition")
    assert code == 2 and "not both" in err
