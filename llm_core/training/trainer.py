"""The training loop shared by pretraining, instruction finetuning and DPO.

One optimizer step = `grad_accum` micro-batches of `batch_size` (per process), their gradients summed
(each loss scaled by 1/grad_accum), measured (global norm before clipping), clipped, and applied by AdamW at
the learning rate `lr_at(step) * lr_scale`. A non-finite loss or gradient never reaches the optimizer.

The loop is driven from one thread (`run()` blocks) and controlled from others: `pause()`,
`resume_training()`, `stop()`, `set_lr_scale()`, `set_tunable()` (the objective's live hyperparameters,
e.g. DPO's beta) take effect at the next step boundary. Every step emits an event to subscribers, to
`metrics.jsonl` (schema: `events.py`) and to the experiment trackers of `config.loggers` (`loggers/`:
CSV, TensorBoard, W&B; fed only by `emit`, closed when the run ends or dies); the objective's `on_step`
hook sees each step and eval event and may add alarms through the same public `emit`. The loop knows no
stage: everything stage-specific is the objective's (`objectives.Objective`) or the registry's
(`stages.STAGES`).

Exact resume: a checkpoint holds the weights, AdamW state, the torch RNG state and the data position
(epoch, index), and nothing else in the loop is random, so a resumed run replays the uninterrupted one.

One writer per run folder: the Trainer takes the run's lock (`lock.RunLock`, an flock the kernel drops
when the process dies) before it writes anything, new run or resume, and holds it until `run()` ends
(or `close()`). A second writer is refused with one line naming the holder's PID.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import to_dict
from ..data import BatchIterator
from ..device import autocast, pick_device, supports_bf16
from ..errors import CheckpointError, ConfigError, DiskFullError, WorkbenchError
from .. import cpu_kernels
from ..host_memory import reuse_freed_memory
from ..model import GPT
from ..tokenizer import Tokenizer
from . import checkpoint as ckpt
from .accumulate import accumulate_gradients, to_device
from .builders import build_objective
from .config import MODEL_CONFIG_KEY, TrainConfig
from .control import STATES, LoopControl
from .distributed import all_reduce_mean, broadcast_from_main, setup_distributed, wrap_model
from .estimate import check_memory_fits, estimate_run, run_memory_estimate
from .evaluation import eval_loss, greedy_sample, mean_metric, sample_prompt_ids
from .events import Event
from .objectives import Objective
from .optim import build_optimizer, clip_gradients, layer_grad_norms
from .lock import RunLock
from .loggers import build_loggers
from .runs import METRICS_FILE, MetricsWriter, claim_new_run_dir, prepare_run_dir, truncate_metrics
from .schedule import lr_at
from .setup import build_run_parts, load_for_resume, resume_target
from .stages import STAGES

__all__ = ["COUNTERS", "STATES", "NonFiniteError", "Trainer"]



# The loop's counters, all saved in checkpoints: (attribute, type); the val losses may be None.
COUNTERS: tuple[tuple[str, type], ...] = (
    ("step", int), ("tokens", int), ("clipped_steps", int), ("nonfinite_in_a_row", int), ("best_val_loss", float),
    ("last_val_loss", float), ("elapsed", float), ("lr_scale", float),
)


class NonFiniteError(WorkbenchError):
    """A non-finite loss or gradient norm (the update was not applied)."""


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        model: GPT | None = None,
        tokenizer: Tokenizer | None = None,
        train_data: Any = None,
        val_data: Any = None,
        objective: Objective | None = None,
        run_dir: str | Path | None = None,
        collate_fn: Callable | None = None,
        *,
        force: bool = False,
        run_lock: RunLock | None = None,
    ) -> None:
        """`force` skips the refusal of a run whose memory estimate exceeds the device's memory; `run_lock`
        is the already held lock of `run_dir` (Trainer.resume takes it before reading the folder)."""
        self.config = config
        # The trackers first: a missing optional package is refused before anything is built or written.
        self._loggers = build_loggers(config.loggers)
        self.ctx, self.device = setup_distributed(pick_device(config.device))
        if config.reuse_freed_memory and self.device.type == "cpu":
            reuse_freed_memory()  # before the model and data are built: a fresh mmap per block costs a fifth of a step
        self.kernel_notice: str | None = None  # why the CPU kernels do not run, where bf16 training wanted them
        if self.device.type == "cpu":
            cpu_kernels.set_enabled(config.cpu_kernels)
            # built now (0.2-0.5 s, once per machine), not inside the first step
            if config.bf16 and supports_bf16(self.device) and cpu_kernels.wanted_but_unavailable():
                self.kernel_notice = cpu_kernels.status()
        # --- model, tokenizer (None only for a given model + data: no samples then), data ----------
        # A pretraining window is a full context, so an impossible one is refused before the corpus is read.
        early_check = None if force or STAGES[config.stage].dataset != "text" else (
            lambda m: check_memory_fits(m, config, self.device))
        parts = build_run_parts(config, model, tokenizer, train_data, val_data, collate_fn, early_check)
        self.config = config = parts.config  # what config.json records (init_adapters' settings filled in)
        self.tokenizer, self.model = parts.tokenizer, parts.model.to(self.device)
        self.train_data, self.val_data, self.collate_fn = parts.train_data, parts.val_data, parts.collate_fn
        # The objective before the batches: it may wrap the data with what its loss reads beside the tokens.
        self.objective = objective if objective is not None else build_objective(config, self.model)
        self.train_data, self.val_data, self.collate_fn = self.objective.prepare_data(
            self.train_data, self.val_data, self.collate_fn, self.device)
        self.batches = BatchIterator(
            self.train_data, batch_size=config.batch_size, collate_fn=self.collate_fn, seed=config.seed,
            shuffle=True, drop_last=True, rank=self.ctx.rank, world_size=self.ctx.world_size,
        )
        # --- optimisation ------------------------------------------------------------------------
        self.objective.attach(self)
        self.ddp_model = wrap_model(self.model, self.ctx, self.device)
        self.optimizer = build_optimizer(self.model, config)
        self._trainable = [p for p in self.model.parameters() if p.requires_grad]
        # --- counters (all saved in checkpoints) -------------------------------------------------
        self.step = 0  # optimizer steps done = index of the next step
        self.tokens = 0
        self.clipped_steps = 0
        self.nonfinite_in_a_row = 0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.elapsed = 0.0
        self.lr_scale = 1.0
        # --- control and events ------------------------------------------------------------------
        self._control = LoopControl()
        self._subscribers: list[Callable[[Event], None]] = []
        self.history: list[Event] = []
        self.estimates: dict[str, Any] | None = None
        self.error: str | None = None
        self.failure: WorkbenchError | None = None  # the user-facing error that ended the run, if any
        self.notices: list[str] = []  # one-line warnings of the setup (a corrupt checkpoint skipped, ...)
        self._stop_cause: str | None = None  # e.g. "SIGTERM": named in the end event
        self._saved_step: int | None = None  # the step this process last checkpointed
        if not force:  # with the real sequence length; before the run folder exists: a refusal leaves nothing
            check_memory_fits(self.model, config, self.device, run_memory_estimate(self)["total"])
        # --- run folder (rank 0 takes the lock, then writes) -------------------------------------
        self._lock = run_lock
        if self.ctx.is_main:
            if run_dir is None:
                run_dir, self._lock = claim_new_run_dir(config)
            elif self._lock is None:
                self._lock = RunLock(run_dir).acquire()
        run_dir = broadcast_from_main(str(run_dir) if run_dir is not None else None, self.ctx)  # the
        # (timestamped) name every rank must agree on
        self.run_dir = Path(run_dir)
        self._metrics: MetricsWriter | None = None
        if self.ctx.is_main:
            try:
                prepare_run_dir(self.run_dir, self._full_config(), self.tokenizer)
            except BaseException as exc:
                self.close()
                if isinstance(exc, OSError) and ckpt.is_disk_full(exc):
                    raise DiskFullError(f"{self.run_dir}: disk full while writing the run folder ({exc})") from None
                raise

    # --- Construction from a run folder -----------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, *, train_data: Any = None, val_data: Any = None,
               objective: Objective | None = None,
               collate_fn: Callable | None = None, force: bool = False, **overrides: Any) -> "Trainer":
        """Continue a run from its latest valid checkpoint (e.g. `Trainer.resume(d, max_steps=2000)`), or
        from a chosen one (`Trainer.resume("runs/x/checkpoints/step-00000500")`); a run killed before its
        first checkpoint starts again from step 0 with its saved config.

        Model, tokenizer and (unless given) data are rebuilt from the run folder's config.json. The run's
        lock is taken first: a run still training elsewhere is refused before anything is read or moved.
        A newer checkpoint that fails verification is moved aside (`.corrupt-...`) with a warning in
        `notices`; checkpoints newer than a chosen one are moved aside (`.superseded-...`), never deleted.
        """
        run_dir, chosen = resume_target(run_dir)
        lock = RunLock(run_dir).acquire()
        try:
            plan = load_for_resume(run_dir, chosen, **overrides)
            trainer = cls(plan.config, model=plan.model, tokenizer=plan.tokenizer, train_data=train_data,
                          val_data=val_data, objective=objective, run_dir=run_dir, collate_fn=collate_fn,
                          force=force, run_lock=lock)
        except BaseException:
            lock.release()
            raise
        trainer.notices.extend(plan.notices)
        if plan.step_dir is not None:
            trainer.load_state(ckpt.load_trainer_state(plan.step_dir), str(plan.step_dir / ckpt.STATE_FILE))
            trainer._saved_step = trainer.step  # a stop right away need not save it again
        if trainer.ctx.is_main:
            truncate_metrics(run_dir / METRICS_FILE, trainer.step)
        return trainer

    def close(self) -> None:
        """Release the run folder's lock (done by `run()` when it ends; for a Trainer that never runs)."""
        if self._lock is not None:
            self._lock.release()

    def _full_config(self) -> dict[str, Any]:
        """config.json: the TrainConfig plus the resolved model shape."""
        return {**self.config.to_dict(), MODEL_CONFIG_KEY: to_dict(self.model.config)}

    # --- Public control (thread-safe; applied at the next step boundary, see control.py) -----------
    @property
    def state(self) -> str:
        return self._control.state

    def wait_for_state(self, *states: str, timeout: float | None = None) -> bool:
        """Block until the trainer is in one of `states` (True) or `timeout` passes (False)."""
        return self._control.wait_for_state(*states, timeout=timeout)

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Call `fn(event)` for every event, in the training thread (keep it quick; buffer in the UI)."""
        self._subscribers.append(fn)

    def pause(self) -> None:
        self._control.request(pause=True)

    def resume_training(self) -> None:
        self._control.request(pause=False)

    def stop(self, cause: str | None = None) -> None:
        """Finish after the current step, writing a checkpoint. `cause` (e.g. "SIGTERM") is named in the
        end event and its message."""
        if cause and self._stop_cause is None:
            self._stop_cause = cause
        self._control.request(stop=True)

    @property
    def stop_cause(self) -> str | None:
        """What asked the run to stop, when it was named (`stop(cause=...)`: e.g. "SIGTERM")."""
        return self._stop_cause

    def set_lr_scale(self, scale: float) -> None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"lr_scale: must be a positive number, got {scale!r}")
        self._control.request(lr_scale=float(scale))

    def set_tunable(self, name: str, value: float) -> None:
        """Change one of the objective's live hyperparameters (`objective.tunables()`) at the next step."""
        if name not in self.objective.tunables():
            raise ConfigError(f"{name}: the {self.config.stage} objective has no {name}")
        self._control.request(tunable=(name, self.objective.check_tunable(name, value)))

    def set_beta(self, beta: float) -> None:
        """DPO's beta: `set_tunable("beta", beta)`."""
        self.set_tunable("beta", beta)

    def estimate(self, measure_steps: int = 2) -> dict[str, Any]:
        """Memory and time estimates (see `estimate.py`); included in the start event."""
        saved = self.objective.state_dict()  # the measured steps must not count as the objective's (RL seeds)
        try:
            self.estimates = estimate_run(self, measure_steps)
        finally:
            self.objective.load_state_dict(saved)
        return self.estimates

    # --- Events -----------------------------------------------------------------------------------
    def emit(self, event_type: str, **fields: Any) -> Event:
        """Record an event: history, metrics.jsonl and subscribers (rank 0). Step and eval events then go
        to the objective's `on_step` hook, which may emit alarms through this same method."""
        event = {"type": event_type, **fields}
        self.history.append(event)
        if not self.ctx.is_main:
            return event
        if self._metrics is None:
            self._metrics = MetricsWriter(self.run_dir / METRICS_FILE)
        self._metrics.write(event)
        self._loggers(event)  # the experiment trackers (config.loggers): the same events, as scalars
        for fn in list(self._subscribers):
            fn(event)
        if event_type in ("step", "eval"):
            self.objective.on_step(self, event)
        return event

    # --- Checkpoint state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that the next step depends on (plain values and tensors only)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "data": dict(self.batches.state_dict()),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            **{name: getattr(self, name) for name, _ in COUNTERS},
            "objective": self.objective.state_dict(),
        }

    def load_state(self, state: dict[str, Any], where: str = "trainer state") -> None:
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.batches.load_state_dict(state["data"])
            torch.set_rng_state(state["rng"]["torch"])
            if state["rng"]["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            for name, cast in COUNTERS:
                value = state.get(name) if name == "last_val_loss" else state[name]  # last_val_loss came later
                setattr(self, name, value if value is None else cast(value))
            if "objective" in state:
                self.objective.load_state_dict(state["objective"])
            elif state.get("beta") is not None and "beta" in self.objective.tunables():
                self.objective.set_tunable("beta", state["beta"])  # a checkpoint from before the hooks
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{where}: does not match this run ({type(exc).__name__}: {exc})") from None

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0) and prune old ones; emits a checkpoint event."""
        if not self.ctx.is_main:
            return None
        path = ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.state_dict(), self._full_config(),
                                    val_loss=self.last_val_loss)
        self._saved_step = self.step
        ckpt.prune_checkpoints(self.run_dir, self.config.keep_last)
        self.emit("checkpoint", step=self.step, path=str(path))
        if self._metrics is not None:
            self._metrics.sync()  # the log up to this checkpoint is on disk with it
        return path

    # --- Data -------------------------------------------------------------------------------------
    def _next_batch(self) -> dict[str, torch.Tensor]:
        # BatchIterator is endless: it rolls over to the next epoch (a new seeded permutation) by itself.
        return to_device(next(self.batches), self.device)

    @property
    def epoch(self) -> int:
        return self.batches.epoch

    # --- One optimizer step -----------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """The run's mixed-precision context (bf16 where the device computes it and the config asks)."""
        return autocast(self.device, self.config.bf16)

    def _eval_due(self, step: int) -> bool:
        return (step + 1) % self.config.eval_every == 0 or step + 1 == self.config.max_steps

    def train_step(self) -> Event:
        """Run optimizer step `self.step` and return its step event (not yet emitted)."""
        cfg, step = self.config, self.step
        lr = lr_at(step, cfg) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        acc = accumulate_gradients(self.objective, self.ddp_model, self._next_batch, cfg.grad_accum, self.autocast,
                                   self.ddp_model.no_sync if self.ctx.enabled else None)
        extra, n_tokens = acc.metrics, acc.tokens
        loss_value = float(all_reduce_mean(torch.stack(acc.losses).mean(), self.ctx))
        layer_norms = layer_grad_norms(self.model) if self._eval_due(step) else None
        clip_now = cfg.clip_during_warmup or step >= cfg.warmup
        grad_norm, clipped = clip_gradients(self._trainable, cfg.max_norm if clip_now else None)
        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
            self.nonfinite_in_a_row = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)  # the bad gradient never reaches AdamW
            self.nonfinite_in_a_row += 1
        self.clipped_steps += int(clipped)
        self.tokens += n_tokens * self.ctx.world_size
        duration = time.perf_counter() - started
        self.elapsed += duration
        self.step += 1
        self._layer_norms = layer_norms
        event: Event = {
            "step": step, "epoch": self.epoch, "lr": lr, "loss": _finite_or_none(loss_value),
            "grad_norm": _finite_or_none(grad_norm), "clipped": clipped, "tokens": self.tokens,
            "tokens_per_s": n_tokens * self.ctx.world_size / max(duration, 1e-9), "elapsed": self.elapsed,
        }
        if self.lr_scale != 1.0:
            event["lr_scale"] = self.lr_scale
        event.update(self.objective.tunables())
        for k, values in extra.items():
            event.setdefault(k, mean_metric(values))
        if not finite:
            event["skipped"] = True
            what = "loss" if not math.isfinite(loss_value) else "gradient norm"
            value = loss_value if what == "loss" else grad_norm
            event["nonfinite"] = f"step {step}: non-finite {what} ({value})"
        return event

    # --- Evaluation (evaluation.py) ---------------------------------------------------------------
    def _eval_loss(self, dataset: Any) -> tuple[float | None, dict[str, Any]]:
        return eval_loss(self.objective, self.model, dataset, self.config, self.collate_fn, self.device,
                         self.autocast)

    @torch.no_grad()
    def evaluate(self) -> Event:
        """Train/val loss over `eval_batches` fixed batches, a greedy sample, layer grad norms, clip fraction."""
        self.model.eval()
        custom = self.objective.evaluate(self)
        if custom is None:
            train_loss, _ = self._eval_loss(self.train_data)
            val_loss, val_metrics = self._eval_loss(self.val_data)
        else:  # the objective's own evaluation (RL: greedy accuracy), no loss over fixed batches
            train_loss, val_loss, val_metrics = None, None, {}
        self.model.train()
        event: Event = {
            "step": self.step - 1, "train_loss": train_loss, "val_loss": val_loss,
            "sample": self.sample() if self.ctx.is_main else "",
            "layer_grad_norms": getattr(self, "_layer_norms", None) or {},
            "clip_fraction": self.clipped_steps / max(self.step, 1),
        }
        for key in ("reward_accuracy", "reward_margin"):
            if key in val_metrics:
                event[f"val_{key}"] = val_metrics[key]
        event.update(custom or {})
        if val_loss is not None:
            self.last_val_loss = val_loss
            if self.best_val_loss is None or val_loss < self.best_val_loss:
                self.best_val_loss = val_loss
        return event

    def sample(self) -> str:
        """A short greedy continuation of the sample prompt (`evaluation.sample_prompt_ids`), by the Engine."""
        if self.tokenizer is None or self.config.sample_tokens == 0:
            return ""
        ids = sample_prompt_ids(self.config, self.tokenizer, self.val_data, self.train_data)
        return greedy_sample(self.model, self.tokenizer, ids, self.config.sample_tokens)

    # --- The loop ---------------------------------------------------------------------------------
    def _start_event(self) -> Event:
        return {
            "stage": self.config.stage, "run_dir": str(self.run_dir), "start_step": self.step,
            "total_steps": self.config.max_steps, "parameters": self.model.num_parameters(),
            "trainable_parameters": self.model.num_parameters(trainable_only=True),
            "world_size": self.ctx.world_size, "device": str(self.device),
            "train_examples": len(self.train_data),
            "val_examples": len(self.val_data) if self.val_data is not None else 0,
            "config": self.config.to_dict(), "estimates": self.estimates,
        }

    def _boundary(self) -> bool:
        """Apply control requests between steps; True when the run must stop."""
        return self._control.boundary(lambda scale: setattr(self, "lr_scale", scale), self.objective.set_tunable)

    def run(self) -> Event:
        """Train until `max_steps` or a stop request; return the end event. Blocks: call it in a worker thread.

        User-caused failures (non-finite values, bad data) end the run with state "failed" and an end event
        carrying the message (also in `self.error`); unexpected exceptions are re-raised after that.
        """
        cfg = self.config
        if self.ctx.is_main:
            self._lock = (self._lock or RunLock(self.run_dir)).acquire()  # again, when run() is called twice
        self._control.set_state("running")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        try:
            self.emit("start", **self._start_event())
            for notice in self.notices:
                self.emit("alarm", kind="resume", message=notice)
            if self.kernel_notice:
                self.emit("alarm", kind="cpu_kernels", message=self.kernel_notice)
            stopped = False
            while self.step < cfg.max_steps:
                if self._boundary():
                    stopped = True
                    break
                event = self.train_step()
                if event.get("skipped"):
                    self.emit("alarm", kind="nonfinite", step=event["step"], message=event["nonfinite"])
                    if cfg.nonfinite == "stop" or self.nonfinite_in_a_row >= cfg.max_nonfinite_in_a_row:
                        self.emit("step", **event)
                        runs_of = f" ({self.nonfinite_in_a_row} in a row)" if cfg.nonfinite == "skip" else ""
                        raise NonFiniteError(f"{event['nonfinite']}{runs_of}: stopped before the update"
                                             f"{self._way_forward(event['step'] - self.nonfinite_in_a_row + 1)}")
                if (event["step"] % cfg.log_every == 0) or event.get("skipped") or self._eval_due(event["step"]):
                    self.emit("step", **event)
                if self._eval_due(event["step"]):
                    self.emit("eval", **self.evaluate())
                if self.step % cfg.checkpoint_every == 0 and self.step < cfg.max_steps:
                    self._checkpoint_or_alarm()
            self._control.set_state("stopping")
            self._checkpoint_or_alarm()
            self._loggers.close()  # before the end event: a tracker that fails to close fails the run
            reason = "stopped" if stopped else "finished"
            by = f" by {self._stop_cause}" if stopped and self._stop_cause else ""
            fields = {"signal": self._stop_cause} if stopped and self._stop_cause else {}
            end = self.emit("end", reason=reason, step=self.step,
                             message=f"{reason}{by} at step {self.step} of {cfg.max_steps}", **fields)
            self._control.set_state("finished")
            return end
        except BaseException as exc:
            # A full disk is the user's to fix, not a bug: one line like any WorkbenchError.
            if isinstance(exc, (OSError, RuntimeError)) and ckpt.is_disk_full(exc):
                exc = DiskFullError(f"{self.run_dir}: disk full at step {self.step} "
                                    f"({str(exc).splitlines()[0]}); free some space and --resume")
            user_error = isinstance(exc, WorkbenchError)
            self.failure = exc if user_error else None
            self.error = str(exc) if user_error else f"{type(exc).__name__}: {exc}"
            end = {"type": "end", "reason": "error", "step": self.step, "message": self.error}
            try:
                end = self.emit("end", reason="error", step=self.step, message=self.error)
            except OSError:  # the disk that just failed may refuse the end event too: the error still stands
                pass
            self._control.set_state("failed")
            if not user_error:
                raise
            return end
        finally:
            try:
                self._loggers.close(failed=True)  # a no-op after a clean close; else the run died or was interrupted
            except Exception:
                pass  # the run's own error (or interrupt) is the one to report
            if self._metrics is not None:
                try:
                    self._metrics.close()
                except OSError:
                    pass
                self._metrics = None
            self.close()

    def _way_forward(self, first_bad: int) -> str:
        """The end of a non-finite stop's message: the newest verified checkpoint from before the bad streak.

        A checkpoint at the failing step itself is no way forward: its weights and the data position give
        the same gradient again, whatever learning rate a resume sets (the rate only scales the update that
        follows the gradient), so a resume from it fails at the same step."""
        good = []
        for step_dir in ckpt.list_checkpoints(self.run_dir):
            if ckpt.checkpoint_step(step_dir) >= first_bad:
                continue
            try:
                ckpt.read_manifest(step_dir)
            except CheckpointError:
                continue
            good.append(step_dir)
        if not good:
            return "; no checkpoint from before it: start again with a lower peak_lr"
        return (f"; latest good checkpoint: {good[-1].name} (resume from it with a lower learning rate: "
                f"--resume {good[-1]} --set peak_lr=...)")

    def _checkpoint_or_alarm(self) -> None:
        if not ckpt.weights_are_finite(self.model):
            self.emit("alarm", kind="nonfinite_weights", step=self.step,
                       message=f"step {self.step}: model weights are non-finite; checkpoint not written")
            return
        if self._saved_step == self.step:
            return  # this exact step is already saved (stop right after a periodic checkpoint)
        self.save_checkpoint()  # a folder of this step left by an abandoned run is replaced atomically


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
