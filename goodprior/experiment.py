"""An experiment: synth -> train -> eval for baseline plus every arm x dose x seed, into one run database.

Each stage is a *cell* recorded in the database when it finishes. A run killed at any point and started again
skips finished cells; unfinished ones resume from their own saved state (dataset fingerprints, training
checkpoints, per-batch evaluation rows).

The file is validated whole when it loads: its `train:` and `eval:` blocks against TrainConfig and EvalConfig,
its budget, and the known-answer controls its arms declare, so a typo fails in one line before any cell runs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from goodprior.errors import UserError
from goodprior.yamlio import load_model

if TYPE_CHECKING:
    from goodprior.scenarios.library import Library
    from goodprior.synth.build import TokenCounter

EXPERIMENT_DIR = Path(__file__).parent / "experiments"
DEFAULT_EXPERIMENT = EXPERIMENT_DIR / "default.yaml"
Role = Literal["positive", "negative", "neutral"]
UNITS = ("tokens", "loss_tokens", "examples")
UNIT_SUFFIX = {"tokens": "tok", "loss_tokens": "losstok", "examples": "ex"}

# Settings the runner sets itself for every cell; an experiment file may not set them in its blocks.
RUNNER_TRAIN_KEYS = {"model", "data", "seed", "out", *UNITS, "epochs"}
RUNNER_EVAL_KEYS = {"model", "adapter", "mode", "name"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataPart(Strict):
    arm: str = Field(description="A recipe id (goodprior synth ARM).")
    weight: float = Field(1.0, gt=0)


class ArmSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+\-]*$")
    data: list[DataPart] = Field(min_length=1)
    # A known-answer control. Default: the role its recipes declare (all parts the same), else none.
    control: Role | None = None
    # Seeds of this arm, when not the experiment's (e.g. more seeds for the controls, to estimate seed spread).
    seeds: list[int] | None = Field(None, min_length=1)


class Budget(Strict):
    """What every arm is trained on, in exactly one unit. A list of amounts is a dose-response: every arm is
    trained at every dose. `tokens` equalises total tokens (what the paper compares); `loss_tokens` equalises
    the learning signal (a chat row's tokens are mostly prompt); `examples` equalises rows."""

    tokens: list[int] | None = None
    loss_tokens: list[int] | None = None
    examples: list[int] | None = None
    epochs: float = Field(1.0, gt=0)

    @field_validator("tokens", "loss_tokens", "examples", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v

    @field_validator("tokens", "loss_tokens", "examples")
    @classmethod
    def _doses(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("the dose list is empty")
            if any(d < 1 for d in v):
                raise ValueError("every dose must be at least 1")
            if len(set(v)) != len(v):
                raise ValueError("doses repeat")
        return sorted(v) if v else v

    @model_validator(mode="after")
    def _one_unit(self) -> Budget:
        given = [u for u in UNITS if getattr(self, u) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one budget unit ({', '.join(UNITS)}); got {', '.join(given) or 'none'}")
        return self

    @property
    def unit(self) -> str:
        return next(u for u in UNITS if getattr(self, u) is not None)

    @property
    def doses(self) -> list[int]:
        return getattr(self, self.unit)


class SynthSettings(Strict):
    generator: Literal["offline"] = Field("offline", description="Experiments synthesize offline; build LLM datasets "
                                          "with `goodprior synth` first.")
    seed: int = 0
    spec: str | None = Field(None, description="A spec file (YAML or Markdown); default: the built-in constitution.")


def _check_block(block: dict[str, Any], config: type[BaseModel], forbidden: set[str], fill: dict[str, Any], name: str) -> None:
    """Validate an experiment's `train:`/`eval:` block against its config model now, not when its first cell runs."""
    for key in block:
        if key in forbidden:
            raise ValueError(f"'{key}' is set by the experiment runner for every cell, not in '{name}:'")
    try:
        config.model_validate({**fill, **block})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{field}: {err['msg']}" if field else err["msg"]) from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Experiment(Strict):
    id: str
    version: int = 1
    model: str = "smollm2"
    budget: Budget
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    arms: list[ArmSpec] = Field(min_length=1)
    synth: SynthSettings = Field(default_factory=SynthSettings)
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields for every arm.")
    eval: dict[str, Any] = Field(default_factory=dict, description="EvalConfig fields (log-prob mode).")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _tokens_shorthand(cls, data: Any) -> Any:
        """`tokens: N` (or a list) is shorthand for `budget: {tokens: N}`."""
        if isinstance(data, dict) and "tokens" in data:
            if "budget" in data:
                raise ValueError("give either 'tokens' or 'budget', not both")
            data = {k: v for k, v in data.items() if k != "tokens"} | {"budget": {"tokens": data["tokens"]}}
        return data

    @field_validator("arms")
    @classmethod
    def _unique(cls, arms: list[ArmSpec]) -> list[ArmSpec]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names) or "baseline" in names:
            raise ValueError("arm names must be unique and not 'baseline'")
        return arms

    @field_validator("train")
    @classmethod
    def _train_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        from goodprior.train.config import TrainConfig

        _check_block(block, TrainConfig, RUNNER_TRAIN_KEYS, {"data": ["-"]}, "train")
        return block

    @field_validator("eval")
    @classmethod
    def _eval_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        from goodprior.config import EvalConfig

        _check_block(block, EvalConfig, RUNNER_EVAL_KEYS, {}, "eval")
        return block

    @model_validator(mode="after")
    def _controls(self) -> Experiment:
        from goodprior.synth.recipes import load_recipe

        honeypot_arms = []
        for arm in self.arms:
            recipes = []
            for part in arm.data:
                try:
                    recipes.append(load_recipe(part.arm))
                except UserError as exc:
                    raise ValueError(f"arm {arm.name}: {exc}") from None
            roles = {r.control for r in recipes}
            if arm.control is None and len(roles) == 1:
                arm.control = roles.pop()
            if arm.control == "positive" and any(r.builder != "honeypot" for r in recipes):
                raise ValueError(f"arm {arm.name}: a positive control plants the answer on train-split honeypot "
                                 "prompts; its data must be honeypot arms")
            if any(r.builder == "honeypot" for r in recipes):
                honeypot_arms.append(arm.name)
        if honeypot_arms and not self.scenario_library().select("train", None):
            raise ValueError(f"arm {honeypot_arms[0]}: honeypot arms (and the positive control) are built from "
                             "train-split families, and the scenario library has none")
        return self

    def scenario_library(self) -> Library:
        """The scenarios every cell uses: the eval block's `scenarios` or the built-in library."""
        from goodprior.scenarios.library import Library

        ref = self.eval.get("scenarios")
        return Library.load(Path(ref) if ref else None)

    @classmethod
    def load(cls, path: Path | str | None = None, profile: str | None = None) -> Experiment:
        exp: Experiment = load_model(resolve_experiment(path), cls)  # type: ignore[assignment]
        if profile:
            if profile not in exp.profiles:
                raise UserError(f"unknown profile {profile!r}; this experiment has: {', '.join(exp.profiles) or 'none'}")
            merged = deep_merge(exp.model_dump(exclude={"profiles"}), exp.profiles[profile])
            merged["id"] = f"{exp.id}-{profile}"
            try:
                exp = cls.model_validate(merged)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise UserError(f"profile {profile!r}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
        return exp

    # ------------------------------------------------------------ derived
    def data_arms(self) -> list[str]:
        return sorted({part.arm for arm in self.arms for part in arm.data})

    def arm_seeds(self, arm: ArmSpec) -> list[int]:
        return arm.seeds or self.seeds

    def role(self, role: Role) -> ArmSpec | None:
        return next((a for a in self.arms if a.control == role), None)

    def share_needed(self, data_arm: str) -> int:
        """The largest amount (in the budget's unit) any arm x dose takes from one data arm."""
        from goodprior.train.data import split_budget

        need = 0
        for arm in self.arms:
            for dose in self.budget.doses:
                shares = split_budget(dose, [p.weight for p in arm.data])
                need = max([need] + [s for p, s in zip(arm.data, shares) if p.arm == data_arm])
        return need

    def dose_label(self, dose: int) -> str:
        return f"{dose}{UNIT_SUFFIX[self.budget.unit]}"

    def train_config(self, arm: ArmSpec, dose: int, seed: int, out: Path, data: list[str]):
        from goodprior.train.config import TrainConfig

        return TrainConfig.model_validate({**self.train, "model": self.model, "data": data, self.budget.unit: dose,
                                           "epochs": self.budget.epochs, "seed": seed, "out": str(out)})


def resolve_experiment(ref: Path | str | None) -> Path:
    """A path, or the name of a shipped experiment (`goodprior run default`)."""
    if ref is None:
        return DEFAULT_EXPERIMENT
    path = Path(ref)
    if path.exists():
        return path
    shipped = EXPERIMENT_DIR / f"{ref}.yaml"
    if shipped.exists():
        return shipped
    names = ", ".join(sorted(p.stem for p in EXPERIMENT_DIR.glob("*.yaml")))
    raise UserError(f"{ref}: no such experiment file, nor a shipped experiment (shipped: {names})")


# ---------------------------------------------------------------- cells


def model_id(exp: Experiment, arm: str, dose: int, seed: int) -> str:
    """The eval id of one trained model: arm, dose and seed."""
    return f"{arm}/{exp.dose_label(dose)}/s{seed}"


def cell_ids(exp: Experiment) -> list[tuple[str, dict[str, Any]]]:
    """Synthesis, then one group per dose, smallest first: its training cells, then one evaluation cell for all of
    its models (the baseline with the first group), which share one pass over the instances. A dose-response run
    reports its cheap doses before it pays for the large."""
    cells: list[tuple[str, dict[str, Any]]] = [(f"synth/{a}", {"stage": "synth", "arm": a}) for a in exp.data_arms()]
    for k, dose in enumerate(exp.budget.doses):
        group = [(arm.name, dose, seed) for arm in exp.arms for seed in exp.arm_seeds(arm)]
        for arm, _, seed in group:
            cells.append((f"train/{model_id(exp, arm, dose, seed)}", {"stage": "train", "arm": arm, "dose": dose,
                                                                      "seed": seed}))
        models = ([("baseline", None, None)] if k == 0 else []) + group
        cells.append((f"eval/{exp.dose_label(dose)}", {"stage": "eval", "models": models}))
    return cells


def adapter_dir(run: Path, exp: Experiment, arm: str, dose: int, seed: int) -> Path:
    """Where an arm x dose x seed adapter lives inside a run folder ('+' is kept out of folder names)."""
    return run / "adapters" / f"{arm.replace('+', '_')}-{exp.dose_label(dose)}-s{seed}"


class Runner:
    """Runs an experiment's cells in order inside one run folder."""

    def __init__(self, exp: Experiment, out: Path):
        from goodprior.store import RunDB

        self.exp, self.out = exp, out
        self.db = RunDB(out / "results.sqlite")
        blob = json.dumps(exp.model_dump(), sort_keys=True)
        with self.db.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS cells (cell TEXT PRIMARY KEY, seconds REAL NOT NULL, finished TEXT NOT NULL)")
            c.execute("CREATE TABLE IF NOT EXISTS experiment (id INTEGER PRIMARY KEY CHECK (id = 0), config TEXT NOT NULL)")
            row = c.execute("SELECT config FROM experiment").fetchone()
            finished_any = c.execute("SELECT 1 FROM cells LIMIT 1").fetchone() is not None
            if row is None:
                c.execute("INSERT INTO experiment VALUES (0, ?)", (blob,))
            elif row[0] != blob:
                if finished_any:
                    raise UserError(f"{out}: holds a run of a different experiment configuration; use another --out")
                c.execute("UPDATE experiment SET config = ? WHERE id = 0", (blob,))  # nothing finished: start afresh

    def finished(self) -> dict[str, float]:
        return {r["cell"]: r["seconds"] for r in self.db.query("SELECT cell, seconds FROM cells")}

    def mark(self, cell: str, seconds: float) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT OR REPLACE INTO cells VALUES (?, ?, ?)",
                      (cell, seconds, datetime.now(timezone.utc).isoformat(timespec="seconds")))

    # -------------------------------------------------------------- stages
    def data_dir(self, data_arm: str) -> Path:
        return self.out / "data" / data_arm

    def adapter_dir(self, arm: str, dose: int, seed: int) -> Path:
        return adapter_dir(self.out, self.exp, arm, dose, seed)

    @cached_property
    def library(self) -> Library:
        return self.exp.scenario_library()

    @cached_property
    def tokenizer(self) -> Any:
        from goodprior.synth.run import load_tokenizer

        return load_tokenizer(self.exp.model)

    @cached_property
    def token_counter(self) -> TokenCounter:
        """The target model's tokenizer, loaded once for every synth cell."""
        from goodprior.synth.build import TokenCounter

        return TokenCounter(self.tokenizer, self.exp.model)

    def run_synth(self, data_arm: str, advance: Callable[[int], None]) -> None:
        """Build a data arm large enough for its largest share. A `loss_tokens` budget is met by building in
        tokens and growing the set until it holds enough loss-bearing tokens (offline builds are prefix-stable)."""
        from goodprior.synth.run import synth_offline
        from goodprior.synth.spec import load_spec

        spec = load_spec(Path(self.exp.synth.spec) if self.exp.synth.spec else None)
        unit, need = self.exp.budget.unit, self.exp.share_needed(data_arm)
        size = {"n": int(need * 1.15) + 8} if unit == "examples" else {"tokens": int(need * 1.15) + 2000}
        too_much = f"the experiment's largest dose needs {need:,} {unit.replace('_', '-')} of data arm {data_arm}"
        for _ in range(6):
            try:
                synth_offline(data_arm, spec, self.data_dir(data_arm), self.token_counter, self.library,
                              n=size.get("n"), tokens=size.get("tokens"), seed=self.exp.synth.seed,
                              dedup_threshold=None, own_name=self._own_name(), advance=advance)
            except UserError as exc:  # e.g. a grammar exhausted by near-duplicate filtering
                raise UserError(f"{too_much}, more than it can make: {exc}") from None
            if unit != "loss_tokens":
                return
            held = self._loss_tokens_held(data_arm)
            if held >= need * 1.05:
                return
            size["tokens"] = int(size["tokens"] * need / max(held, 1) * 1.2) + 2000
        raise UserError(f"{too_much}; six ever larger builds held only {held:,}")

    def _loss_tokens_held(self, data_arm: str) -> int:
        from goodprior.backends.chat_format import ChatFormat
        from goodprior.train.data import encode_row, read_rows

        fmt = ChatFormat(self.tokenizer)
        return sum(sum(encode_row(r, self.tokenizer, fmt)[1]) for r in read_rows(self.data_dir(data_arm)))

    def _own_name(self) -> str:
        from goodprior.models import embedded

        return embedded.ASSISTANT_NAME if self.exp.model == embedded.NAME else "Assistant"

    def run_train(self, arm: ArmSpec, dose: int, seed: int, advance: Callable[..., None]) -> None:
        from transformers import TrainerCallback

        from goodprior.train.trainer import train

        class Steps(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                advance(0, total=state.max_steps)  # the packed data's real step count replaces the estimate

            def on_step_end(self, args, state, control, **kw):
                advance(1)

        data = [f"{self.data_dir(p.arm)}:{p.weight}" for p in arm.data]
        train(self.exp.train_config(arm, dose, seed, self.adapter_dir(arm.name, dose, seed), data), callbacks=[Steps()])

    def eval_config(self, arm: str, dose: int | None = None, seed: int | None = None):
        from goodprior.config import EvalConfig

        baseline = arm == "baseline"
        return EvalConfig.model_validate({
            **self.exp.eval, "model": self.exp.model, "mode": "logprob",
            "adapter": None if baseline else str(self.adapter_dir(arm, dose, seed)),
            "name": "baseline" if baseline else model_id(self.exp, arm, dose, seed)})

    def run_evals(self, models: list[tuple[str, int | None, int | None]], progress) -> None:
        """Baseline and adapters in one pass over the instances: the layers below the adapters run once per batch
        (backends/shared_trunk.py); each (batch, model) is saved on its own, so a killed cell resumes."""
        from goodprior.evaluate import run_eval_many
        from goodprior.scenarios.library import load_persona

        cfgs = [self.eval_config(arm, dose, seed) for arm, dose, seed in models]
        run_eval_many(self.db, cfgs, self.library, load_persona(), progress=progress)

    @cached_property
    def eval_size(self) -> int:
        from goodprior.evaluate import plan

        return len(plan(self.library, self.eval_config("baseline"), self._own_name()))

    # -------------------------------------------------------------- driver
    def estimate(self, info: dict[str, Any]) -> float:
        """Rough seconds per cell on a 2-core CPU, for the overall bar's ETA."""
        if info["stage"] == "synth":
            return 10.0
        if info["stage"] == "train":
            return self._steps(info["dose"]) * self._max_length / 250.0 + 15
        return self.eval_size * (2.4 + 0.8 * len(info["models"])) + 5  # the shared trunk: ~1/3 per extra model

    def _steps(self, dose: int) -> int:
        """Expected optimiser steps (packed sequences of max_length) of one training cell, for its bar."""
        per_unit = {"tokens": 1, "loss_tokens": 15, "examples": 1200}[self.exp.budget.unit]  # tokens per unit, rough
        tokens = dose * per_unit
        return max(1, math.ceil(tokens * self.exp.budget.epochs / self._max_length))

    @property
    def _max_length(self) -> int:
        from goodprior.train.config import TrainConfig

        return int(self.exp.train.get("max_length", TrainConfig.model_fields["max_length"].default))

    def run(self) -> None:
        from goodprior.progress import make_progress

        cells = cell_ids(self.exp)
        done = self.finished()
        weights = {cell: self.estimate(info) for cell, info in cells}
        with make_progress() as progress:
            overall = progress.add_task(f"experiment {self.exp.id}", total=sum(weights.values()),
                                        completed=sum(weights[c] for c, _ in cells if c in done))
            for cell, info in cells:
                if cell in done:
                    continue
                start = time.perf_counter()
                self.run_cell(cell, info, progress)
                self.mark(cell, time.perf_counter() - start)
                progress.advance(overall, weights[cell])

    def run_cell(self, cell: str, info: dict[str, Any], progress) -> None:
        @contextmanager
        def stage_bar(description: str, total: int, done: int = 0) -> Iterator[Callable[..., None]]:
            """advance(n), or advance(0, total=N) once the true total is known."""
            task = progress.add_task(f"  {description}", total=total, completed=done)

            def advance(n: int, total: int | None = None) -> None:
                if total is not None:
                    progress.update(task, total=total)
                progress.advance(task, n)
            try:
                yield advance
            finally:
                progress.remove_task(task)

        if info["stage"] == "synth":
            need = self.exp.share_needed(info["arm"])
            with stage_bar(cell, need if self.exp.budget.unit == "examples" else int(need * 1.15) + 2000) as advance:
                self.run_synth(info["arm"], advance)
        elif info["stage"] == "train":
            arm = next(a for a in self.exp.arms if a.name == info["arm"])
            with stage_bar(cell, self._steps(info["dose"])) as advance:
                self.run_train(arm, info["dose"], info["seed"], advance)
        else:
            self.run_evals(info["models"], stage_bar)
