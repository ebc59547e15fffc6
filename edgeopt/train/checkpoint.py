"""Checkpoints after every epoch, and resuming from them.

A checkpoint folder holds ``ckpt-<epoch>`` (model weights, optimizer slots and step counter, epoch counter; the
last two are kept), ``state.json`` (the history so far, early-stopping state, and the signature of the run's
settings) and, with early stopping, ``best.npz`` (the best epoch's weights). ``state.json`` is written last and
atomically, so the epoch it names always has a complete checkpoint. With ``multi-worker`` every worker saves (the
strategy needs it), but only the chief into the folder; the others write to a private temporary folder, then
remove it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from edgeopt.errors import RecipeError

IGNORED = ("resume", "checkpoint_dir")  # settings that may change between an interrupted run and its resume


def signature_of(params, data_info: dict, model) -> dict:
    """What must be equal for a resume to continue the same run: the settings, the data, the starting weights."""
    from .trainer import weights_digest

    settings = {k: v for k, v in dataclasses.asdict(params).items() if k not in IGNORED}
    return {"settings": json.loads(json.dumps(settings)), "data": json.loads(json.dumps(data_info, default=str)),
            "start_weights_sha256": weights_digest(model)}


class CheckpointStore:
    def __init__(self, folder: Path, checkpoint, *, chief: bool, worker: str, cluster: bool = False):
        import edgeopt._tf as T

        self.folder = folder
        self.chief = chief
        self.cluster = cluster  # one of several workers: all must resume from the same epoch
        self.checkpoint = checkpoint
        # the other workers save too (the strategy needs every worker to), into a private folder removed at once
        self._write = folder if chief else None
        self._worker = worker
        self._tf = T.tf()

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def start(self, signature: dict) -> dict:
        """A fresh run: an old checkpoint in the folder is cleared (with a note saying how it could have resumed)."""
        from edgeopt.console import warn

        if self.state_path.exists() and self.chief:
            old = json.loads(self.state_path.read_text())
            warn(f"{self.folder}: replacing the checkpoint of epoch {len(old.get('history', []))} of an earlier "
                 "run (--resume would have continued it)")
        if self.chief:
            for p in list(self.folder.glob("ckpt-*")) + [self.folder / "checkpoint", self.state_path,
                                                         self.folder / "best.npz"]:
                if p.exists():
                    p.unlink()
        return {"signature": signature, "history": [], "best": None}

    def restore(self, signature: dict) -> dict:
        """The state of the last complete epoch, with the model and optimizer restored to it."""
        from edgeopt.console import warn

        if not self.state_path.exists():
            if self.cluster:  # starting afresh while the others resume would train different models
                raise RecipeError(f"--resume: {self._worker} finds no checkpoint in {self.folder}",
                                  hint="every worker reads the chief's checkpoint folder: share it (the same path "
                                       "on a shared file system) or copy it to each worker; see docs/distributed.md")
            warn(f"--resume: no checkpoint in {self.folder}; training starts at epoch 1")
            return self.start(signature)
        state = json.loads(self.state_path.read_text())
        diff = _differences(state.get("signature", {}), signature)
        if diff:
            raise RecipeError(f"--resume: the checkpoint in {self.folder} was made by a different run ({diff})",
                              hint="resume with the same model, data and training settings, or leave out --resume "
                                   "to start again")
        epoch = len(state["history"])
        prefix = self.folder / f"ckpt-{epoch}"
        if not Path(f"{prefix}.index").exists():
            raise RecipeError(f"--resume: {self.folder} names epoch {epoch} but holds no ckpt-{epoch}",
                              hint="the folder was changed by hand; start again without --resume")
        self.checkpoint.restore(str(prefix)).assert_nontrivial_match()  # written with write(): no save counter
        restored = int(self.checkpoint.epoch.numpy())
        if restored != epoch:
            raise RecipeError(f"--resume: ckpt-{epoch} in {self.folder} holds epoch {restored}",
                              hint="the folder was changed by hand; start again without --resume")
        return state

    def best_weights(self) -> list[np.ndarray] | None:
        path = self.folder / "best.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            return [z[f"w{i}"] for i in range(len(z.files))]

    def save(self, epoch: int, state: dict, *, best_weights=None) -> None:
        if not self.chief:
            import tempfile

            private = Path(tempfile.mkdtemp(prefix=f"edgeopt-{self._worker}-"))
            try:
                self.checkpoint.write(str(private / f"ckpt-{epoch}"))
            finally:
                shutil.rmtree(private, ignore_errors=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoint.write(str(self.folder / f"ckpt-{epoch}"))
        if best_weights is not None:
            tmp = self.folder / ".best.npz"
            np.savez(tmp, **{f"w{i}": w for i, w in enumerate(best_weights)})
            os.replace(tmp, self.folder / "best.npz")
        tmp = self.folder / ".state.json"
        tmp.write_text(json.dumps(state, indent=1, default=float))
        os.replace(tmp, self.state_path)  # the epoch is complete once state.json names it
        for old in self.folder.glob("ckpt-*.index"):
            n = int(old.name.split("-")[1].split(".")[0])
            if n < epoch - 1:
                for part in self.folder.glob(f"ckpt-{n}.*"):
                    part.unlink()


def _differences(old: dict, new: dict) -> str:
    out = []
    for key in ("settings", "data"):
        a, b = old.get(key, {}), new.get(key, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name):
                out.append(f"{name}: {a.get(name)!r} then, {b.get(name)!r} now")
    if old.get("start_weights_sha256") != new.get("start_weights_sha256"):
        out.append("the starting weights differ")
    return "; ".join(out[:4])
