"""An experiment: synth -> train -> eval for baseline plus every arm x seed, into one run database.

Each stage is a *cell* recorded in the database when it finishes. A run killed at any point and started again
skips finished cells; unfinished ones resume from their own saved state (dataset fingerprints, training
checkpoints, per-batch evaluation rows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from goodprior.errors import UserError
from goodprior.yamlio import load_model

if TYPE_CHECKING:
    from goodprior.scenarios.library import Library
    from goodprior.synth.build import TokenCounter

DEFAULT_EXPERIMENT = Path(__file__).parent / "experiments" / "default.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataPart(Strict):
    arm: str = Field(description="A recipe id (goodprior synth ARM).")
    weight: float = Field(1.0, gt=0)


class ArmSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_+\-]*$")
    data: list[DataPart] = Field(min_length=1)
    control: bool = False


class Experiment(Strict):
    id: str
    version: int = 1
    model: str = "smollm2"
    tokens: int = Field(ge=100, description="Exact training tokens per arm (target tokenizer).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    arms: list[ArmSpec] = Field(min_length=1)
    synth: dict[str, Any] = Field(default_factory=dict, description="generator, seed, spec")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides")
    eval: dict[str, Any] = Field(default_factory=dict, description="EvalConfig overrides")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("arms")
    @classmethod
    def _unique(cls, arms: list[ArmSpec]) -> list[ArmSpec]:
        names = [a.name for a in arms]
        if len(set(names)) != len(names) or "baseline" in names:
            raise ValueError("arm names must be unique and not 'baseline'")
        return arms

    @classmethod
    def load(cls, path: Path | None = None, profile: str | None = None) -> Experiment:
        exp: Experiment = load_model(path or DEFAULT_EXPERIMENT, cls)  # type: ignore[assignment]
        if profile:
            if profile not in exp.profiles:
                raise UserError(f"unknown profile {profile!r}; this experiment has: {', '.join(exp.profiles) or 'none'}")
            merged = {**exp.model_dump(), **exp.profiles[profile], "profiles": {}}
            merged["id"] = f"{exp.id}-{profile}"
            exp = cls.model_validate(merged)
        return exp

    def data_arms(self) -> list[str]:
        return sorted({part.arm for arm in self.arms for part in arm.data})

    def tokens_needed(self, data_arm: str) -> int:
        """Synthetic tokens a data arm must hold: its largest share of any arm's budget, plus slack."""
        from goodprior.train.data import split_budget

        need = 0
        for arm in self.arms:
            shares = split_budget(self.tokens, [p.weight for p in arm.data])
            need = max([need] + [s for p, s in zip(arm.data, shares) if p.arm == data_arm])
        return int(need * 1.15) + 2000


# ---------------------------------------------------------------- cells


def cell_ids(exp: Experiment) -> list[tuple[str, dict[str, Any]]]:
    cells: list[tuple[str, dict[str, Any]]] = [(f"synth/{a}", {"stage": "synth", "arm": a}) for a in exp.data_arms()]
    cells.append(("eval/baseline", {"stage": "eval", "arm": "baseline", "seed": None}))
    for seed in exp.seeds:
        for arm in exp.arms:
            cells.append((f"train/{arm.name}/s{seed}", {"stage": "train", "arm": arm.name, "seed": seed}))
            cells.append((f"eval/{arm.name}/s{seed}", {"stage": "eval", "arm": arm.name, "seed": seed}))
    return cells


def adapter_dir(run: Path, arm: str, seed: int) -> Path:
    """Where an arm x seed adapter lives inside a run folder ('+' is kept out of folder names)."""
    return run / "adapters" / f"{arm.replace('+', '_')}-s{seed}"


def eval_id(arm: str, seed: int | None) -> str:
    return "baseline" if arm == "baseline" else f"{arm}/s{seed}"


class Runner:
    """Runs an experiment's cells in order inside one run folder."""

    def __init__(self, exp: Experiment, out: Path):
        from goodprior.store import RunDB

        self.exp, self.out = exp, out
        self.db = RunDB(out / "results.sqlite")
        with self.db.transaction() as c:
            c.execute("CREATE TABLE IF NOT EXISTS cells (cell TEXT PRIMARY KEY, seconds REAL NOT NULL, finished TEXT NOT NULL)")
            c.execute("CREATE TABLE IF NOT EXISTS experiment (id INTEGER PRIMARY KEY CHECK (id = 0), config TEXT NOT NULL)")
            row = c.execute("SELECT config FROM experiment").fetchone()
            blob = json.dumps(exp.model_dump(), sort_keys=True)
            if row is None:
                c.execute("INSERT INTO experiment VALUES (0, ?)", (blob,))
            elif row[0] != blob:
                raise UserError(f"{out}: holds a run of a different experiment configuration; use another --out")

    def finished(self) -> dict[str, float]:
        return {r["cell"]: r["seconds"] for r in self.db.query("SELECT cell, seconds FROM cells")}

    def mark(self, cell: str, seconds: float) -> None:
        with self.db.transaction() as c:
            c.execute("INSERT OR REPLACE INTO cells VALUES (?, ?, ?)",
                      (cell, seconds, datetime.now(timezone.utc).isoformat(timespec="seconds")))

    # -------------------------------------------------------------- stages
    def data_dir(self, data_arm: str) -> Path:
        return self.out / "data" / data_arm

    def adapter_dir(self, arm: str, seed: int) -> Path:
        return adapter_dir(self.out, arm, seed)

    @cached_property
    def library(self) -> Library:
        from goodprior.scenarios.library import Library

        return Library.load()

    @cached_property
    def token_counter(self) -> TokenCounter:
        """The target model's tokenizer, loaded once for every synth cell."""
        from goodprior.synth.build import TokenCounter
        from goodprior.synth.run import load_tokenizer

        return TokenCounter(load_tokenizer(self.exp.model), self.exp.model)

    def run_synth(self, data_arm: str, advance: Callable[[int], None]) -> None:
        from goodprior.synth.run import synth_offline
        from goodprior.synth.spec import load_spec

        s = self.exp.synth
        if s.get("generator", "offline") != "offline":
            raise UserError("experiments synthesize offline; build LLM datasets with `goodprior synth` first")
        synth_offline(data_arm, load_spec(Path(s["spec"]) if s.get("spec") else None), self.data_dir(data_arm),
                      self.token_counter, self.library, n=None, tokens=self.exp.tokens_needed(data_arm),
                      seed=int(s.get("seed", 0)), dedup_threshold=None, own_name=self._own_name(), advance=advance)

    def _own_name(self) -> str:
        from goodprior.models import embedded

        return embedded.ASSISTANT_NAME if self.exp.model == embedded.NAME else "Assistant"

    def run_train(self, arm: ArmSpec, seed: int, advance: Callable[[int], None]) -> None:
        from transformers import TrainerCallback

        from goodprior.train.config import TrainConfig
        from goodprior.train.trainer import train

        class Steps(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                advance(1)

        data = [f"{self.data_dir(p.arm)}:{p.weight}" for p in arm.data]
        cfg = TrainConfig.model_validate({**self.exp.train, "model": self.exp.model, "data": data,
                                          "tokens": self.exp.tokens, "seed": seed, "out": str(self.adapter_dir(arm.name, seed))})
        train(cfg, callbacks=[Steps()])

    def run_eval(self, arm: str, seed: int | None, progress) -> None:
        from goodprior.backends import load_backend
        from goodprior.config import EvalConfig
        from goodprior.evaluate import run_eval
        from goodprior.scenarios.library import load_persona

        adapter = None if arm == "baseline" else str(self.adapter_dir(arm, seed))
        cfg = EvalConfig.model_validate({**self.exp.eval, "model": self.exp.model, "adapter": adapter,
                                         "mode": "logprob", "name": eval_id(arm, seed)})
        backend = load_backend(cfg.model, adapter=cfg.adapter, dtype=cfg.dtype, device=cfg.device)
        backend.batch_size = cfg.batch_size
        run_eval(self.db, cfg, backend, self.library, load_persona(), progress=progress)

    @cached_property
    def eval_size(self) -> int:
        from goodprior.config import EvalConfig
        from goodprior.evaluate import plan

        cfg = EvalConfig.model_validate({**self.exp.eval, "model": self.exp.model})
        return len(plan(self.library, cfg, self._own_name()))

    # -------------------------------------------------------------- driver
    def estimate(self, info: dict[str, Any]) -> float:
        """Rough seconds per cell on a 2-core CPU, for the overall bar's ETA."""
        if info["stage"] == "synth":
            return 10.0
        if info["stage"] == "train":
            return self.exp.tokens / 250.0 + 15
        return self.eval_size * 1.6 + 5

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
        def stage_bar(description: str, total: int, done: int = 0) -> Iterator[Callable[[int], None]]:
            task = progress.add_task(f"  {description}", total=total, completed=done)
            try:
                yield lambda n: progress.advance(task, n)
            finally:
                progress.remove_task(task)

        if info["stage"] == "synth":
            with stage_bar(cell, self.exp.tokens_needed(info["arm"])) as advance:
                self.run_synth(info["arm"], advance)
        elif info["stage"] == "train":
            arm = next(a for a in self.exp.arms if a.name == info["arm"])
            steps = max(1, self.exp.tokens // int(self.exp.train.get("max_length", 2048)))
            with stage_bar(cell, steps) as advance:
                self.run_train(arm, info["seed"], advance)
        else:
            self.run_eval(info["arm"], info["seed"], stage_bar)
