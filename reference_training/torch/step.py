"""The PyTorch trainer: model, optimiser step, EMA target and checkpoint format.

Everything else (batch order, views, logging, evaluation) is the shared loop in
:mod:`glf_train.loop`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from glf_losses.backends import torch as torch_frontends
from glf_train import augment, objective, report
from glf_train.checksum import CHECKSUM_KEY, tree_digest, verify
from glf_train.config import RunConfig
from glf_train.data import Dataset
from glf_train.errors import checkpoint_problem
from glf_train.rundir import CHECKPOINT_NAMES
from glf_train.schedules import StepInputs
from glf_train.torch.model import build_encoder, predictor, projector
from torch import nn

import glf_losses

__all__ = ["TorchTrainer", "launch"]


class _Online(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _worker(
    rank: int, config_dict: dict[str, Any], resume: bool, options: dict[str, Any], port: int
) -> None:
    from glf_train.loop import train

    config = RunConfig.from_dict(config_dict)
    backend = "nccl" if config.device.startswith("cuda") else "gloo"
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=config.devices
    )
    try:
        # The launcher has checked and prepared --out for all of them.
        train(config, resume=resume, prepared_out=True, **options)
        # The other ranks wait for rank 0's evaluation and files, so that no process
        # tears its connections down while another still holds them open.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def launch(
    config: RunConfig, resume: bool, options: dict[str, Any]
) -> dict[str, Any] | None:
    """With ``devices > 1``, one process per device; returns the main process's summary.

    Nothing is started when this process already belongs to a process group of that
    size (a ``torchrun`` launch, or one of the processes started here).
    """
    if config.devices == 1:
        return None
    if dist.is_initialized() or "WORLD_SIZE" in os.environ:
        return None
    if config.device.startswith("cuda") and torch.cuda.device_count() < config.devices:
        raise RuntimeError(
            f"--devices {config.devices}: PyTorch sees {torch.cuda.device_count()} CUDA devices"
        )
    try:
        mp.start_processes(
            _worker, args=(config.to_dict(), resume, options, _free_port()),
            nprocs=config.devices,
            start_method="spawn", join=True,
        )
    except mp.ProcessRaisedException as err:
        # The worker's own error, not the launcher's traceback around it.
        last = str(err).strip().splitlines()[-1]
        raise RuntimeError(f"a data-parallel worker failed: {last}") from None
    summary: dict[str, Any] = json.loads((Path(config.out) / "summary.json").read_text())
    return summary


def _process_group(config: RunConfig) -> tuple[int, int]:
    """(rank, world size), joining torchrun's group if this process was started by it."""
    if config.devices > 1 and not dist.is_initialized() and "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        return 0, 1
    world = dist.get_world_size()
    if world != config.devices:
        raise RuntimeError(
            f"--devices {config.devices}, but the process group has {world} processes"
        )
    return dist.get_rank(), world


class TorchTrainer:
    """One method (optionally with ADC) on one encoder, trained with PyTorch.

    With ``devices > 1`` there is one process per device (started by :func:`launch` or
    by ``torchrun``). Each feeds its rows of the global batch; the loss is computed inside
    :func:`glf_losses.data_parallel`, so every process gets the global batch's loss and
    the exact gradient with respect to its rows; the parameter gradients are then
    **summed** over processes (one all-reduce of the flattened gradients), which makes
    each step the step of the global loss. BatchNorm layers use per-device statistics on
    CPU and are synchronised (``SyncBatchNorm``) on CUDA. Only rank 0 evaluates and
    writes files.
    """

    xp = xp_torch
    checkpoint_name = CHECKPOINT_NAMES["torch"]

    def __init__(self, config: RunConfig, dataset: Dataset) -> None:
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA device is available to PyTorch")
        self.config, self.dataset = config, dataset
        self.rank, self.world = _process_group(config)
        self.is_main = self.rank == 0
        local = config.batch_size // self.world
        self.batch_rows = slice(self.rank * local, (self.rank + 1) * local)
        device = config.device
        if self.world > 1 and device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', self.rank))}"
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.autocast = config.precision == "bfloat16" or (config.precision == "auto" and on_cuda)
        torch.manual_seed(config.seed)
        encoder, feature_dim = build_encoder(
            dataset.image_shape, config.arch, width=config.cnn_width
        )
        self.entry = entry = config.method_entry()
        head = projector(feature_dim, config.proj_hidden, config.proj_dim, entry.projector_layers,
                         last_bn=entry.projector_last_bn)
        self.online = _Online(encoder, head).to(self.device)
        if self.world > 1 and on_cuda:
            self.online = nn.SyncBatchNorm.convert_sync_batchnorm(self.online)
        self.predictor: nn.Module | None = None
        self.target: nn.Module | None = None
        if entry.predictor:
            self.predictor = predictor(config.proj_dim, config.pred_hidden).to(self.device)
        if entry.momentum_target:
            self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.loss_fn: Any = objective.front_end(config, torch_frontends)
        self.loss_fn.to(self.device)
        # SwAV's queue of earlier projections (both views), used once full.
        self.queue = torch.zeros(2, config.swav_queue, config.proj_dim, device=self.device)
        self.prior_encoder: nn.Module | None = None
        if config.adc and config.adc_prior == "frozen_encoder":
            # The encoder as initialised, frozen: input-space structure seen through
            # random features (a checkpointed encoder can be loaded into it instead).
            self.prior_encoder = copy.deepcopy(encoder).eval().requires_grad_(False)
        params = list(self.online.parameters()) + list(self.loss_fn.parameters())
        if self.predictor is not None:
            if self.world > 1 and on_cuda:
                self.predictor = nn.SyncBatchNorm.convert_sync_batchnorm(self.predictor)
            params += list(self.predictor.parameters())
        self.params = params
        # Weight decay on weight matrices and kernels only: BatchNorm's scales and shifts
        # and the biases (the 1-d parameters) are not decayed, as SSL recipes do.
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        if config.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=config.lr)
        else:
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9)
        self._loss = self._compute_loss
        if config.compile == "on" or (config.compile == "auto" and on_cuda):
            self._loss = torch.compile(self._compute_loss)

    # --- one step ----------------------------------------------------------------------

    def to_device(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(images)).to(self.device, non_blocking=True)

    def _prior(self, images: torch.Tensor) -> torch.Tensor:
        if self.prior_encoder is None:
            return images
        with torch.no_grad():
            x = augment.center(self.xp, images, self.dataset.mean, self.dataset.std)
            return self.prior_encoder(x)

    def _compute_loss(
        self,
        view_a: torch.Tensor,
        view_b: torch.Tensor,
        prior: torch.Tensor,
        queue: torch.Tensor | None = None,
        local_views: tuple[torch.Tensor, ...] = (),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        local: dict[str, torch.Tensor] = {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            z_a, z_b = self.online(view_a), self.online(view_b)
            if local_views:
                # Multi-crop: the online network alone sees the local crops, all in one
                # forward pass (one set of BatchNorm statistics), as the authors' code runs
                # the crops of one size together; (L * N, D) rows back to (L, N, D).
                assert self.entry.local_input is not None  # RunConfig.validate checked it
                z = self.online(torch.cat(local_views))
                local[self.entry.local_input] = z.reshape(len(local_views), -1, z.shape[-1])
            outputs = {"online_a": z_a, "online_b": z_b}
            views = {"a": view_a, "b": view_b}
            if self.predictor is not None:
                for v in objective.views_through(self.config, "predicted"):
                    outputs[f"predicted_{v}"] = self.predictor(outputs[f"online_{v}"])
            if self.target is not None:
                with torch.no_grad():
                    for v in objective.views_through(self.config, "target"):
                        outputs[f"target_{v}"] = self.target(views[v])
            args = objective.method_inputs(self.config, outputs)
            if queue is not None:
                args = (*args, queue[0], queue[1])
        # The loss itself computes in float32 at least, whatever autocast produced.
        n_inputs = len(self.entry.inputs)
        parts = objective.with_controls(
            self.config, self.loss_fn.parts(*args, prior=prior, **local), args[:n_inputs], prior
        )
        if self.entry.states:
            # The states advance from the outputs the loss saw (MoCo: this step's keys).
            with torch.no_grad():
                self.loss_fn.update_state(*(a.detach().float() for a in args[:n_inputs]))
        projections = torch.stack([z_a, z_b]).detach().float()
        return parts.total, parts.align, parts.constrain, projections

    def train_step(
        self, view_a: Any, view_b: Any, prior: Any, inputs: StepInputs,
        local_views: tuple[Any, ...] = (),
    ) -> dict[str, Any]:
        self.online.train()
        for group in self.optimizer.param_groups:
            group["lr"] = inputs.lr
        queue = self.queue if inputs.use_queue else None
        with glf_losses.data_parallel() if self.world > 1 else contextlib.nullcontext():
            loss, align, constrain, projections = self._loss(
                view_a, view_b, self._prior(prior), queue, tuple(local_views)
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not inputs.parameters_active:
            # Arrays the method owns may be held still at first (SwAV's prototypes, so
            # that the codes do not chase them): no gradient, so the optimiser skips them.
            for parameter in self.entry.parameters:
                getattr(self.loss_fn, parameter.name).grad = None
        if self.world > 1:
            self._sum_gradients()
        self.optimizer.step()
        self.loss_fn.after_step()
        if self.config.swav_queue > 0:
            # Newest first; the oldest fall off the end.
            size = self.config.swav_queue
            self.queue = torch.cat([projections, self.queue], dim=1)[:, :size]
        if self.target is not None:
            tau = inputs.ema_rate
            with torch.no_grad():
                for t, o in zip(self.target.parameters(), self.online.parameters(), strict=True):
                    t.lerp_(o, 1.0 - tau)
                for t, o in zip(self.target.buffers(), self.online.buffers(), strict=True):
                    t.copy_(o)
        return {"loss": loss.detach(), "align": align.detach(), "constrain": constrain.detach()}

    def _sum_gradients(self) -> None:
        # Each process holds its rows' share of the global loss's gradient: the sum is
        # the gradient. The same parameters have gradients in every process (the same
        # graph), so one flat buffer lines up.
        grads = [p.grad for p in self.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    # --- evaluation --------------------------------------------------------------------

    @torch.no_grad()
    def _encode(self, encoder: nn.Module, images: np.ndarray) -> np.ndarray:
        encoder.eval()
        x = augment.center(self.xp, self.to_device(images), self.dataset.mean, self.dataset.std)
        return encoder(x).float().cpu().numpy()

    def features(self, images: np.ndarray) -> np.ndarray:
        return self._encode(self.online.encoder, images)

    def random_encoder_features(self, images: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_random_encoder"):
            torch.manual_seed(self.config.seed + 1)
            self._random_encoder = build_encoder(
                self.dataset.image_shape, self.config.arch, width=self.config.cnn_width
            )[0]
            self._random_encoder.to(self.device)
        return self._encode(self._random_encoder, images)

    # --- checkpoints -------------------------------------------------------------------

    def _modules(self) -> dict[str, nn.Module | None]:
        return {
            "online": self.online, "predictor": self.predictor, "target": self.target,
            "loss_fn": self.loss_fn, "prior_encoder": self.prior_encoder,
        }

    def save(self, path: Path, meta: dict[str, Any]) -> None:
        state = {
            "meta": meta,
            "queue": self.queue,
            "optimizer": self.optimizer.state_dict(),
            **{k: m.state_dict() for k, m in self._modules().items() if m is not None},
        }
        state[CHECKSUM_KEY] = tree_digest(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        report.atomic_write_bytes(path, buffer.getvalue())

    def load(self, path: Path, check: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        with checkpoint_problem(path, "the checkpoint is unreadable"):
            state = torch.load(path, map_location=self.device, weights_only=True)
            verify(state, path)  # its own CheckpointError passes through unchanged
            meta = dict(state["meta"])
            int(meta["epoch"])
        check(meta)
        with checkpoint_problem(path, "it does not fit this model"):
            for key, module in self._modules().items():
                if module is not None:
                    module.load_state_dict(state[key])
            self.optimizer.load_state_dict(state["optimizer"])
            self.queue = state["queue"]
        return meta
