"""The model's and the loop's configs: frozen dataclasses that check themselves, and no torch.

Everything that only describes a run (presets, run records, `workbench presets`) reads these
without importing torch; gpt/model.py and gpt/train.py build from them.  The variant names
live here, and gpt/positions.py and gpt/layers.py hold one class per name.
"""

from __future__ import annotations

from dataclasses import dataclass

POSITIONS = ("learned", "none", "rope", "abacus", "coupled", "coupled_rope", "coupled_rel", "coupled_local")
# encodings whose position ids come with the data, and the task's numbering each one reads
GIVEN = {"abacus": "abacus", "coupled": "coupled", "coupled_rope": "coupled", "coupled_rel": "coupled",
         "coupled_local": "coupled"}
SLOTTED = ("coupled", "coupled_rel", "coupled_local")  # encodings that embed slot ids (< 0)
# encodings that read only differences of ids: no table over ids, so any id is one they know
RELATIVE = ("coupled_rel", "coupled_local")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu", "relu2")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 256
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # bias in Linear and LayerNorm layers; False is a little faster and as good
    pos: str = "learned"  # learned | none | rope | abacus | coupled | coupled_rope | coupled_rel | coupled_local (gpt/positions.py)
    norm: str = "layernorm"  # layernorm | rmsnorm          (gpt/layers.py)
    mlp: str = "gelu"  # gelu | swiglu | relu2
    qk_norm: bool = False
    tie_weights: bool = True  # lm_head shares the token embedding matrix
    max_pos: int = 64  # pos=abacus|coupled|coupled_rope: the largest position id; training offsets reach it
    pos_slots: int = 0  # pos=coupled|coupled_rel|coupled_local: fixed-slot ids -1..-pos_slots the task uses (build fits it)
    rel_clip: int = 2  # pos=coupled_rel|coupled_local: keys within this id difference are seen, each difference its own bias
    # parameter savers (gpt/layers.py); the defaults are the model every earlier checkpoint holds
    rank: int = 0  # > 0: attention and MLP projections as W = A @ B, A (out, rank), B (rank, in); 0: full
    tie_kv: bool = False  # keys and values from one projection: K = V
    tie_qo: bool = False  # the attention's output projection is the query projection transposed: O = Q^T
    share_norms: bool = False  # one norm for the whole model (every block's two and the final one; and q/k's one)
    mlp_hidden: int = 0  # the MLP's hidden width; 0: 4C (SwiGLU: 8C/3 rounded up to a multiple of 8, as many weights)

    def __post_init__(self) -> None:
        for name, allowed in (("pos", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"model.{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "max_pos", "rel_clip"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        self._check_savers()
        if not isinstance(self.pos_slots, int) or self.pos_slots < 0:
            raise ValueError(f"model.pos_slots must be a non-negative integer, got {self.pos_slots!r}")
        if self.pos_slots and self.pos not in SLOTTED:
            raise ValueError(f"model.pos={self.pos} has no slot position ids (model.pos_slots={self.pos_slots}); "
                             f"{' and '.join(SLOTTED)} have")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if self.pos in ("rope", "coupled_rope") and self.head_size % 2:
            raise ValueError(f"model.pos={self.pos} needs an even head size, got {self.head_size}")

    def _check_savers(self) -> None:
        for name in ("tie_kv", "tie_qo", "share_norms"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 0:
            raise ValueError(f"model.rank must be a non-negative integer (0: full rank), got {self.rank!r}")
        if not isinstance(self.mlp_hidden, int) or isinstance(self.mlp_hidden, bool) or self.mlp_hidden < 0:
            raise ValueError(f"model.mlp_hidden must be a non-negative integer (0: the MLP's usual width), "
                             f"got {self.mlp_hidden!r}")
        if self.rank >= self.n_embd:  # A @ B of rank n_embd has more weights than the full matrix
            raise ValueError(f"model.rank={self.rank} saves nothing at model.n_embd={self.n_embd}: "
                             f"give a rank below {self.n_embd}, or 0 for full rank")
        if self.rank and self.rank >= self.mlp_hidden > 0:
            raise ValueError(f"model.rank={self.rank} saves nothing in an MLP of model.mlp_hidden={self.mlp_hidden}: "
                             f"give a rank below {self.mlp_hidden}, or 0 for full rank")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width: mlp_hidden if given, else 4C, or SwiGLU's 8C/3 rounded up to a
        multiple of 8, which keeps its three matrices at the weights of GELU's two."""
        if self.mlp_hidden:
            return self.mlp_hidden
        return -(-8 * self.n_embd // 3 // 8) * 8 if self.mlp == "swiglu" else 4 * self.n_embd


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 12
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    lr_decay_steps: int = 0  # 0: decay over all `steps`
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 1
    compile: str = "auto"  # auto (on for CUDA) | on | off
    nan_policy: str = "stop"  # stop | skip
    # the stopping rules besides `steps`; each stops at an eval, which is logged and saved
    time_budget_s: float = 0.0  # stop after this much training time; 0: no limit
    target_acc: float = 0.0  # stop once the eval's val_acc reaches this; 0: never
    length_chunks: int = 1  # >1: split each micro-batch by length into this many trimmed chunks
    pack: bool = False  # pack each micro-batch's rows end to end, one attention segment a problem (pack_rows)
    pack_width: int = 0  # with pack: the packed rows' columns; 0: the micro-batch's width
    # online hard-example mining: each micro-batch is drawn hard_pool times as large, and the
    # batch_size rows the model gets most wrong (highest mean loss) are the ones it trains on
    hard_pool: int = 1  # 1: off, every row drawn is trained on
    # a curriculum through the task's levels of difficulty: the workbench runs it (experiments/curriculum.py)
    # and checks these (experiments/curriculum_config.py); the loop never reads them
    curriculum: str = "off"  # off | auto: move up a level when accuracy on it reaches the threshold
    curriculum_threshold: float = 0.99  # accuracy on the current level's eval problems that moves it up
    curriculum_replay: float = 0.2  # share of each training batch drawn from the earlier levels

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval",
                    "length_chunks", "hard_pool")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"train.{name} must be a positive integer, got {v!r}")
        for name in ("warmup_steps", "lr_decay_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 < train.lr and 0 <= train.min_lr <= train.lr, got {self.lr}, {self.min_lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("train.weight_decay and train.grad_clip must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("train.beta1 and train.beta2 must be in [0, 1)")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"train.compile must be auto, on or off, got {self.compile!r}")
        if not isinstance(self.pack, bool):
            raise ValueError(f"train.pack must be true or false, got {self.pack!r}")
        if not isinstance(self.pack_width, int) or self.pack_width < 0:
            raise ValueError(f"train.pack_width must be a non-negative integer, got {self.pack_width!r}")
        if self.pack and self.length_chunks > 1:
            raise ValueError("train.pack and train.length_chunks > 1 are two ways to skip padding: "
                             "set train.length_chunks=1 with train.pack=true")
        if self.time_budget_s < 0:
            raise ValueError(f"train.time_budget_s must be >= 0, got {self.time_budget_s!r}")
        if not 0 <= self.target_acc <= 1:
            raise ValueError(f"train.target_acc must be in [0, 1], got {self.target_acc!r}")
        if self.nan_policy not in ("stop", "skip"):
            raise ValueError(f"train.nan_policy must be stop or skip, got {self.nan_policy!r}")

    @property
    def drawn_rows(self) -> int:
        """Rows a training micro-batch draws: batch_size, or the hard-example pool's batch_size * hard_pool."""
        return self.batch_size * self.hard_pool
