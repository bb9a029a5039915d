"""The training run behind `froster-edge train`: from a recipe to a student directory.

The run directory (`--out`) holds config.yaml (resolved recipe), metrics.jsonl, train_list.txt
(K-shot runs), checkpoints/epoch_NNN, state/step_NNNNNNNN (newest resumable state), student/ (the
average of epochs average_from..last, or the last) and failed_videos.txt. Every randomness is a
function of the seed and the position, so a resumed run, or another process split, computes the
same steps. Only rank 0 writes files.

See docs/training.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import RecipeConfig
from ..errors import CheckpointError, ConfigError, FrosterError
from ..io import atomic_dir, atomic_write_text, recover, tensors_fingerprint
from ..model.checkpoint import save_student
from ..model.factory import create_distiller
from ..progress import ProgressBar
from ..prompts import ClassText
from . import ddp
from .average import EPOCHS_DIR, average_students, epoch_dir, epoch_dirs
from .batches import ResumableBatchSampler
from .config import changed_options, load_saved_recipe, save_recipe
from .fewshot import few_shot, short_classes, write_list
from .optim import WarmupCosine, build_optimizer, set_lr
from .state import capture_rng, latest_state, projector_modules, restore_rng, save_state
from .step import TERMS, autocast_dtype, class_prompt_tokens, step_prompts, train_step

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
STATE_DIR = "state"
STUDENT_DIR = "student"
FAILED_FILE = "failed_videos.txt"


@dataclass
class TrainData:
    """What the recipe's data section resolves to, checked."""

    classes: list[ClassText]
    items: list  # list[froster_edge.data.VideoItem]
    val_items: list | None = None
    val_classes: list[ClassText] | None = None
    notes: list[str] = field(default_factory=list)


def _need(value: str | None, key: str, what: str) -> str:
    if value is None:
        raise ConfigError(f"data.{key} is not set ({what}); set it in the recipe or with --set data.{key}=...")
    return value


def prepare_data(config: RecipeConfig) -> TrainData:
    """Read and check the class texts and video lists of the recipe (one-line errors)."""
    d = config.data
    root = Path(_need(d.root, "root", "the folder that holds the training videos"))
    if not root.is_dir():
        raise ConfigError(f"data.root {root} is not a folder")
    from ..data import read_classes, read_video_list

    classes = read_classes(_need(d.classes, "classes", "the class texts: names, JSON {\"0\": \"Name: description\"} or id,name CSV"))
    if d.num_classes is not None and d.num_classes != len(classes):
        raise ConfigError(f"data.num_classes is {d.num_classes} but {d.classes} holds {len(classes)} classes")

    items = read_video_list(_need(d.train_list, "train_list", "the training list: `relative/path label` lines"),
                            root=root, num_classes=len(classes))
    notes = []
    if d.shots is not None:
        short = short_classes(items, d.shots)
        items = few_shot(items, d.shots, d.shots_seed)
        notes.append(f"few-shot: {len(items)} videos, {d.shots} per class (seed {d.shots_seed})"
                     + (f"; {len(short)} classes have fewer and keep all" if short else ""))
    data = TrainData(classes=classes, items=items, notes=notes)
    if d.val_list is not None:
        val_root = Path(d.val_root or d.root)
        if not val_root.is_dir():
            raise ConfigError(f"data.val_root {val_root} is not a folder")
        data.val_classes = read_classes(d.val_classes) if d.val_classes else classes
        data.val_items = read_video_list(d.val_list, root=val_root, num_classes=len(data.val_classes))
    return data


class _Meter:
    """Loss terms, gradient norm and time since the last read, summed on the device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(TERMS) + 1, device=self.device)
        self.steps = 0
        self.data_s = 0.0
        self.start = time.perf_counter()

    def add(self, terms: torch.Tensor, grad_norm: torch.Tensor, data_s: float) -> None:
        self.sums += torch.cat([terms, grad_norm.float().reshape(1)])
        self.steps += 1
        self.data_s += data_s

    def read(self, d: ddp.Dist, batch_size: int) -> dict[str, float]:
        """Means over steps and processes (a collective: every process calls it at the same step)."""
        means = ddp.mean_over_processes(self.sums / max(self.steps, 1), d).tolist()
        elapsed = time.perf_counter() - self.start
        out = {name: means[i] for i, name in enumerate(("loss", "ce", "vision", "text"))}
        out["grad_norm"] = means[-1]
        out["clips_per_s"] = batch_size * self.steps / elapsed if elapsed > 0 else 0.0
        out["data_wait"] = self.data_s / elapsed if elapsed > 0 else 0.0
        self.reset()
        return out


class Trainer:
    """One training run. `fit()` does the epochs and returns the final student directory."""

    def __init__(self, config: RecipeConfig, out_dir: str | Path, dist: ddp.Dist, resume: bool = False):
        self.config = config
        self.out = Path(out_dir)
        self.dist = dist
        self.resume = resume
        self.failed: set[str] = set()
        self.distiller = None  # the live model, once fit() has built it
        self.micro_batch = 1
        self.progress = ProgressBar(False, "", 0)

    # ---- small helpers ------------------------------------------------------------------------

    def note(self, text: str) -> None:
        """Log from the main process only: every rank runs the same loop."""
        if self.dist.is_main:
            log.info(text)

    def metrics(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / METRICS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _check_run_dir(self) -> None:
        """A fresh run refuses a directory with trained weights in it; a resumed one refuses a changed
        recipe. A directory a run left before its first checkpoint (a recipe that failed at step 1)
        holds nothing to keep: a fresh run starts over in it, so the corrected retry is not blocked."""
        saved = self.out / CONFIG_FILE
        used = (self.out / STUDENT_DIR).exists() or any(_entries(self.out / STATE_DIR)) or any(_entries(self.out / EPOCHS_DIR))
        if not self.resume and used:
            raise ConfigError(f"{self.out} already holds a training run; pass --resume to continue it, or choose another --out")
        if not self.resume and saved.exists() and self.dist.is_main:
            self.note(f"{self.out} holds a run that stopped before its first checkpoint: starting over in it")
            (self.out / METRICS_FILE).unlink(missing_ok=True)
        if self.resume and saved.exists():
            try:
                before = load_saved_recipe(saved)
            except FrosterError as e:
                raise CheckpointError(f"{saved} cannot be read back: {e}") from e
            changed = changed_options(before, self.config)
            if changed:
                raise ConfigError(f"the recipe differs from the one {self.out} was started with, in {', '.join(changed)}; "
                                  "resume with the same recipe, or start a new run with another --out")

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines past `step` (written by the killed run after its last checkpoint)."""
        path = self.out / METRICS_FILE
        if self.dist.is_main and path.exists():
            keep = [line for line in path.read_text().splitlines(keepends=True)
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            atomic_write_text(path, "".join(keep))

    def _batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        self.failed.update(batch.get("failed", []))
        frames = batch["frames"][:, 0]  # (B, V=1, T, 3, S, S) -> (B, T, 3, S, S)
        dev = self.dist.device
        return frames.to(dev, non_blocking=True), batch["labels"].to(dev, non_blocking=True)

    # ---- the run ------------------------------------------------------------------------------

    def fit(self) -> Path:
        cfg, d = self.config, self.dist
        t = cfg.train
        data = prepare_data(cfg)
        micro = self.micro_batch = t.micro_batch_size or max(t.batch_size // d.world_size, 1)
        sampler = ResumableBatchSampler(len(data.items), t.batch_size, micro, rank=d.rank, world_size=d.world_size, seed=t.seed)
        amp = autocast_dtype(t.amp, d.device)
        self._check_run_dir()
        ddp.barrier(d)  # every process has looked at the run directory before rank 0 writes to it
        if d.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for folder in (self.out, self.out / STATE_DIR, self.out / EPOCHS_DIR):
                recover(folder)  # what kills interrupted: hidden .tmp / .old entries
            save_recipe(cfg, self.out / CONFIG_FILE)
            if cfg.data.shots is not None:
                write_list(data.items, self.out / "train_list.txt", root=cfg.data.root)
        ddp.barrier(d)

        torch.manual_seed(t.seed)  # the same initial student, teacher and projectors in every process
        distiller = self.distiller = create_distiller(cfg.student, cfg.distill).to(d.device)
        teacher_print = tensors_fingerprint(distiller.teacher.state_dict())
        params = [p for p in distiller.parameters() if p.requires_grad]
        optimizer = build_optimizer(distiller, cfg.optim)
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        schedule = WarmupCosine.from_config(cfg.optim, sampler.steps_per_epoch, t.epochs)
        all_tokens = class_prompt_tokens(distiller.student.tokenize, data.classes).to(d.device)  # (C, 29, L)
        torch.manual_seed(t.seed + 1 + d.rank)

        step, epoch, epoch_step = 0, 0, 0
        if self.resume:
            state, skipped = latest_state(self.out / STATE_DIR)
            for reason in skipped:
                self.note(f"skipping a damaged checkpoint: {reason}")
            if state is None:
                self.note(f"no checkpoint in {self.out / STATE_DIR}: starting from the beginning")
                self._truncate_metrics(0)
            else:
                if state.meta.get("teacher") != teacher_print:
                    raise CheckpointError(f"{state.path}: the teacher rebuilt from student.pretrained differs from the run's "
                                          "(were the pretrained weights replaced?)")
                state.apply(distiller, optimizer, scaler)
                if d.rank < len(state.rng):
                    restore_rng(state.rng[d.rank])
                step, epoch, epoch_step = state.step, state.epoch, state.epoch_step
                self._truncate_metrics(step)
                self.note(f"resumed from {state.path.name}: epoch {epoch + 1}, step {step}")
        for note in data.notes:
            self.note(note)

        model = distiller
        if d.distributed:
            model = DistributedDataParallel(distiller, device_ids=[d.device.index] if d.device.type == "cuda" else None)
        from ..data import VideoDataset, make_loader

        dataset = VideoDataset(data.items, num_frames=cfg.student.num_frames, image_size=cfg.student.image_size, train=True,
                               views=1, sampling=cfg.student.sampling_spec(), spatial=cfg.student.spatial_spec(),
                               seed=t.seed)
        # the sampler's epoch and first step are read when each epoch's iterator starts (set_epoch below);
        # the dataset's epoch lives in shared memory, so the persistent workers see it too
        loader = make_loader(dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers, pin_memory=d.device.type == "cuda",
                             persistent_workers=True, prefetch_factor=4)
        total_steps = sampler.steps_per_epoch * t.epochs
        self.note(f"training {len(data.items)} videos, {len(data.classes)} classes: {t.epochs} epochs x "
                 f"{sampler.steps_per_epoch} steps of {t.batch_size} clips ({d.world_size} process(es) x "
                 f"{sampler.accumulation} micro-batch(es) of {micro}), {d.device}, amp {amp or 'off'} -> {self.out}")
        self.progress = ProgressBar(t.progress and d.is_main, "epoch -", total_steps, completed=step)
        meter, epoch_meter = _Meter(d.device), _Meter(d.device)
        try:
            first_epoch = epoch
            for epoch in range(first_epoch, t.epochs):
                dataset.set_epoch(epoch)
                sampler.set_epoch(epoch, epoch_step)  # read when the loader's iterator starts, just below
                batches = iter(loader)
                meter.reset()  # rates count training time only, not the last epoch's checkpoint and evaluation
                epoch_meter.reset()
                for s in range(epoch_step, sampler.steps_per_epoch):
                    t0 = time.perf_counter()
                    micro_batches = [self._batch(next(batches)) for _ in range(sampler.accumulation)]
                    data_s = time.perf_counter() - t0
                    lr = schedule(step)
                    set_lr(optimizer, lr)
                    out = train_step(model, optimizer, micro_batches, step_prompts(all_tokens, t.seed, step), params,
                                     amp_dtype=amp, scaler=scaler, clip_grad_norm=cfg.optim.clip_grad_norm)
                    step += 1
                    meter.add(out.terms, out.grad_norm, data_s)
                    epoch_meter.add(out.terms, out.grad_norm, data_s)
                    last = s == sampler.steps_per_epoch - 1
                    if step % t.log_every == 0 or last:
                        m = meter.read(d, t.batch_size)
                        if not math.isfinite(m["loss"]):
                            raise FrosterError(f"the loss became {m['loss']} at step {step}: lower optim.lr, or set train.amp to bf16 or off")
                        self.metrics({"step": step, "epoch": epoch + 1, "lr": lr, **m})
                        self.progress.update(step, f"epoch {epoch + 1}/{t.epochs}",
                                             f"loss {m['loss']:.3f} ce {m['ce']:.3f} vis {m['vision']:.4f} txt {m['text']:.4f} "
                                             f"lr {lr:.2e} {m['clips_per_s']:.1f} clips/s")
                    else:
                        self.progress.update(step, f"epoch {epoch + 1}/{t.epochs}")
                    if t.save_every_steps and step % t.save_every_steps == 0 and not last:
                        self._save_state(distiller, optimizer, scaler, teacher_print, step, epoch, s + 1)
                del batches
                epoch_step = 0
                self._end_epoch(distiller, optimizer, scaler, teacher_print, data, epoch, step, epoch_meter.read(d, t.batch_size))
            return self._finish(distiller, step)
        finally:
            self.progress.close()

    def _save_state(self, distiller, optimizer, scaler, teacher_print: str, step: int, epoch: int, epoch_step: int) -> None:
        rng = ddp.gather_objects(capture_rng(), self.dist)
        if self.dist.is_main:
            save_state(self.out / STATE_DIR, step=step, epoch=epoch, epoch_step=epoch_step, distiller=distiller,
                       optimizer=optimizer, scaler=scaler, rng_states=rng, keep=self.config.train.keep_states,
                       extra={"teacher": teacher_print, "world_size": self.dist.world_size})
        ddp.barrier(self.dist)

    def _end_epoch(self, distiller, optimizer, scaler, teacher_print: str, data: TrainData, epoch: int, step: int,
                   summary: dict[str, float]) -> None:
        t = self.config.train
        done = epoch + 1
        record: dict[str, Any] = {"step": step, "epoch": done, "kind": "epoch", **summary}
        if self.dist.is_main:
            with atomic_dir(epoch_dir(self.out, done)) as tmp:
                save_student(distiller.student, tmp, projectors=projector_modules(distiller),
                             extra={"epoch": done, "step": step})
        evaluate = data.val_items is not None and t.eval_every and (done % t.eval_every == 0 or done == t.epochs)
        if evaluate and self.dist.is_main:
            record["val"] = self._evaluate(distiller, data)
        self.metrics(record)  # before the state: a kill in between drops this line on resume, not the state
        ddp.barrier(self.dist)
        self._save_state(distiller, optimizer, scaler, teacher_print, step, done, 0)
        val = f", val top1 {record['val']['top1']:.1f}" if "val" in record else ""
        self.note(f"epoch {done}/{t.epochs}: loss {summary['loss']:.4f} (ce {summary['ce']:.4f}, vision {summary['vision']:.4f}, "
                 f"text {summary['text']:.4f}), {summary['clips_per_s']:.1f} clips/s{val}")

    def _evaluate(self, distiller, data: TrainData) -> dict[str, Any]:
        from ..evaluation import evaluate

        student = distiller.student
        student.eval()
        try:
            result = evaluate(student, data.val_items, data.val_classes, views=self.config.data.val_views,
                              batch_size=self.micro_batch,
                              num_workers=self.config.data.num_workers, device=self.dist.device, progress=False)
        finally:
            student.train()
        return {k: v for k, v in result.to_dict().items() if k != "videos"}  # per-video detail: eval's job

    def _finish(self, distiller, step: int) -> Path:
        t = self.config.train
        failed = sorted(set().union(*ddp.gather_objects(sorted(self.failed), self.dist)))
        final = self.out / STUDENT_DIR
        if self.dist.is_main:
            with atomic_dir(final) as tmp:
                if t.average_from is not None:
                    average_students(epoch_dirs(self.out, t.average_from, t.epochs), tmp)
                else:
                    save_student(distiller.student, tmp, projectors=projector_modules(distiller),
                                 extra={"epoch": t.epochs, "step": step})
            how = f"the average of epochs {t.average_from}..{t.epochs}" if t.average_from is not None else f"epoch {t.epochs}"
            self.note(f"wrote {final} ({how})")
            if failed:
                atomic_write_text(self.out / FAILED_FILE, "".join(f + "\n" for f in failed))
                self.note(f"{len(failed)} video(s) could not be decoded and were replaced by others; see {self.out / FAILED_FILE}")
        ddp.barrier(self.dist)
        return final


def _entries(folder: Path) -> list[Path]:
    """The visible entries of a folder (none when it is missing): hidden ones are a kill's leftovers."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []


def train(config: RecipeConfig, out_dir: str | Path, *, resume: bool = False) -> Path:
    """Run training as the recipe says (under torchrun: this process's part); returns the student directory."""
    d = ddp.setup(config.train.device)
    try:
        return Trainer(config, out_dir, d, resume=resume).fit()
    finally:
        ddp.cleanup()


def default_out_dir(config_path: str | Path) -> Path:
    return Path("runs") / Path(config_path).stem

