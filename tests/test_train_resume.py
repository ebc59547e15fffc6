"""Resume: a run killed after epoch 2 of 4 and resumed ends with the weights of an uninterrupted run."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from train_helpers import CNN, IMAGES, LABELS, REPO, env, keras_weights, max_difference, run_edgeopt

ARGS = ["finetune", CNN, "--data", IMAGES, "--labels", LABELS, "--epochs", "4", "--batch-size", "8",
        "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.01", "--warmup-epochs", "1", "--augment", "crop",
        "--seed", "3"]


def _kill_after_epoch(args, state, epoch: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edgeopt.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env())
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if state.exists():
                try:
                    done = len(json.loads(state.read_text())["history"])
                except (ValueError, KeyError):  # being replaced this very moment
                    done = 0
                if done >= epoch:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.005)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way: {proc.stderr.read()[-2000:]}"
    assert len(json.loads(state.read_text())["history"]) == epoch


def test_killed_after_epoch_two_then_resumed_equals_uninterrupted(tmp_path):
    whole = run_edgeopt([*ARGS, "-o", tmp_path / "whole.keras"])
    assert whole.returncode == 0, whole.stderr[-3000:]
    ckpt = tmp_path / "ck"
    _kill_after_epoch([*ARGS, "--checkpoint-dir", ckpt, "-o", tmp_path / "resumed.keras"], ckpt / "state.json", 2)
    assert not (tmp_path / "resumed.keras").exists()
    resumed = run_edgeopt([*ARGS, "--checkpoint-dir", ckpt, "--resume", "-o", tmp_path / "resumed.keras"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 1/4" not in resumed.stderr and "epoch 3/4" in resumed.stderr  # it continued, not restarted
    a, b = keras_weights(tmp_path / "whole.keras"), keras_weights(tmp_path / "resumed.keras")
    assert max_difference(a, keras_weights_of(CNN)) > 1e-3  # training changed the weights
    print(f"resumed vs uninterrupted: max |weight difference| {max_difference(a, b):.3g}")
    assert max_difference(a, b) <= 1e-6


def keras_weights_of(path):
    import edgeopt

    return edgeopt.load(path).model.get_weights()


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "ck"
    args = ["finetune", CNN, "--data", IMAGES, "--labels", LABELS, "--epochs", "1", "--batch-size", "64",
            "--checkpoint-dir", ckpt, "-o", tmp_path / "a.keras"]
    first = run_edgeopt(args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (ckpt / "state.json").exists()  # an explicit --checkpoint-dir is kept
    done = run_edgeopt([*args[:-2], "--resume", "-o", tmp_path / "again.keras"])  # nothing left to train
    assert done.returncode == 0, done.stderr[-3000:]
    assert "epoch 1/1" not in done.stderr
    assert max_difference(keras_weights(tmp_path / "a.keras"), keras_weights(tmp_path / "again.keras")) == 0
    again = run_edgeopt([*args[:-2], "--lr", "0.5", "--resume", "-o", tmp_path / "b.keras"])
    assert again.returncode == 2
    assert "made by a different run" in again.stderr and "lr: 0.0001 then, 0.5 now" in again.stderr


def test_interrupt_says_how_to_resume(tmp_path):
    """Ctrl-C (SIGINT) mid-training: exit 130 and the command to continue."""
    ckpt = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-m", "edgeopt.cli", *map(str, [*ARGS, "--checkpoint-dir", ckpt,
                                                                             "-o", tmp_path / "i.keras"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env(),
                            # a test run started in the background of a shell without job control inherits SIGINT
                            # ignored, and Python keeps it so: the child takes the default, as in a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600
    while time.time() < deadline and not (ckpt / "state.json").exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    assert not (tmp_path / "i.keras").exists()
