"""Atomic, safe checkpoints: safetensors for tensors, JSON for everything else.

Every file is written to a temporary file in the same folder, flushed and fsync'ed, then
renamed over the old one, so a crash (or a full disk) mid-write leaves the previous file
intact. A resumable checkpoint is ONE file, ``checkpoint.safetensors``, holding the model,
the optimizer's tensors and the RNG state as tensors and the rest (epoch, scheduler,
history, optimizer hyper-parameters) as JSON in the safetensors metadata; nothing is ever
unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, safe_open, save_file

from lenet2vit.errors import UserError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "save_weights",
    "save_checkpoint",
    "load_checkpoint",
    "read_metadata",
    "CheckpointError",
    "FolderLock",
    "FolderBusyError",
]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be written or read; the message says what to do."""


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then atomically replace ``path`` with the result.

    On any failure (including ENOSPC) the temporary file is removed and ``path`` is left as it
    was; the error is re-raised as :class:`CheckpointError` with a clear message.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise CheckpointError(
                f"could not write {path} ({e.strerror or e}); the previous file is intact. "
                "Free disk space or choose another --out."
            ) from e
        raise
    # Make the rename itself durable.
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _cpu_contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared/non-contiguous storage; clone keeps tied weights valid.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_weights(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Save a model state_dict as safetensors, with JSON ``metadata`` (e.g. the run config)."""
    meta = {"lenet2vit": json.dumps(metadata or {}, default=_json_default)}
    tensors = _cpu_contiguous(state_dict)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata stored by :func:`save_weights` / :func:`save_checkpoint`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    return json.loads(meta.get("lenet2vit", "{}"))


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for idx, st in opt_state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict,
    extra: dict,
    rng_state: torch.Tensor | None = None,
    scaler_state: dict | None = None,
    ema_state: dict[str, torch.Tensor] | None = None,
    cuda_rng_states: list[torch.Tensor] | None = None,
    slow_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write one resumable checkpoint file atomically.

    ``rng_state`` is the CPU generator's state, ``cuda_rng_states`` every CUDA device's
    (``torch.cuda.get_rng_state_all()``): dropout and any other random op on a GPU resume
    where they stopped.
    """
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    tensors.update({f"ema.{k}": v for k, v in (ema_state or {}).items()})
    tensors.update({f"slow.{k}": v for k, v in (slow_state or {}).items()})  # Lookahead's slow weights
    opt_tensors, opt_meta = _flatten_optimizer(optimizer_state)
    tensors.update(opt_tensors)
    if rng_state is not None:
        tensors["rng.cpu"] = rng_state
    for i, state in enumerate(cuda_rng_states or []):
        tensors[f"rng.cuda.{i}"] = state
    meta = dict(extra, optimizer=opt_meta, scaler=scaler_state)
    tensors = _cpu_contiguous(tensors)
    metadata = {"lenet2vit": json.dumps(meta, default=_json_default)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns ``{"model": state_dict, "optimizer": state_dict, "rng": tensor|None,
    "cuda_rng": [tensor, ...]|None, **extra}``.
    """
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(
            f"{path}: checkpoint is unreadable ({e}); delete it to start the run afresh"
        ) from None
    meta = read_metadata(path)
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    opt = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    out = dict(meta)
    out["model"] = model
    out["optimizer"] = _unflatten_optimizer(opt, meta["optimizer"])
    out["rng"] = tensors.get("rng.cpu")
    cuda = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng.cuda."))
    out["cuda_rng"] = [v for _, v in cuda] or None
    out["ema"] = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    out["slow"] = {k[len("slow."):]: v for k, v in tensors.items() if k.startswith("slow.")} or None
    return out


# ----------------------------------------------------------------------------- one process per folder


class FolderBusyError(UserError, RuntimeError):
    """Another live process owns a run or study folder; the message names its PID."""


class FolderLock:
    """Holds ``<folder>/<name>`` for one process: a second process gets :class:`FolderBusyError`.

    The lock is an ``flock`` on the file, so the kernel drops it when its process dies, even by
    SIGKILL: a lock left behind that way is stale and the next process simply takes it over.
    The file records the owner's PID and command for the message the second process prints.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "training run", name: str = ".run.lock") -> None:
        self.folder, self.what, self.name = Path(folder), what, name
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl
        import sys

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            pid = owner.split(" ", 1)[0] if owner else "?"
            raise FolderBusyError(
                f"{self.folder} is in use by another {self.what} (PID {pid}: {owner.split(' ', 1)[1] if ' ' in owner else 'unknown'}); "
                f"wait for it to finish, stop it, or pass another --out"
            ) from None
        stale = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)}\n".encode(), 0)
        self._fd, self.took_over = fd, stale or None  # the PID line of a process that died holding it
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
