"""tf.distribute: two mirrored replicas equal one replica, and two multi-worker processes equal one process, on the
same global batches."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train_helpers import CNN, IMAGES, LABELS, REPO, env, free_ports, keras_weights, max_difference, run_edgeopt


def test_mirrored_over_two_logical_cpus_equals_one_replica():
    """20 SGD-momentum steps of a model with two BatchNormalization layers (their statistics synchronized)."""
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "mirrored_check.py")], capture_output=True,
                          text=True, timeout=600, env=env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["steps"] == 20
    assert out["max_weight_change"] > 0.01  # the weights really moved
    print(f"2 mirrored replicas vs 1: max |weight difference| {out['max_weight_difference']:.3g}")
    assert out["max_weight_difference"] <= 1e-5, out["per_weight"]
    assert "--batch-size 15 does not split evenly over 2 replicas" in out["odd_batch_error"]


def _finetune_args(out, *extra):
    return ["finetune", CNN, "--data", IMAGES, "--labels", LABELS, "--epochs", "1", "--batch-size", "32",
            "--lr", "1e-3", "--optimizer", "sgd", "--val-split", "0.1", "-o", out, *extra]


def test_two_multi_worker_processes_match_one_process(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [*[sys.executable, "-m", "edgeopt.cli"], *map(str, _finetune_args(tmp_path / f"w{i}.keras",
                                                                           "--strategy", "multi-worker"))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env(TF_CONFIG=tf_config)))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=600)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    # the chief (worker 0) wrote the output; worker 1 wrote nothing, not even a checkpoint folder
    assert (tmp_path / "w0.keras").exists()
    assert not any(f.name.startswith("w1") for f in tmp_path.iterdir()), sorted(f.name for f in tmp_path.iterdir())
    digests = [next(line.split("sha256")[-1].split(";")[0].strip() for line in log.splitlines() if "sha256" in line)
               for log in logs]
    assert digests[0] == digests[1] and len(digests[0]) == 64  # bit-identical weights on both workers
    assert "2 replica(s) on 2 worker(s)" in logs[0]
    one = run_edgeopt(_finetune_args(tmp_path / "one.keras"))
    assert one.returncode == 0, one.stderr[-3000:]
    multi, single = keras_weights(tmp_path / "w0.keras"), keras_weights(tmp_path / "one.keras")
    before = keras_weights_of_onnx()
    assert max_difference(single, before) > 1e-3  # 16 steps moved the weights
    print(f"2 workers vs 1 process: max |weight difference| {max_difference(multi, single):.3g}")
    assert max_difference(multi, single) <= 1e-5


def keras_weights_of_onnx():
    import edgeopt

    return edgeopt.load(CNN).model.get_weights()


@pytest.mark.parametrize("config, message", [
    (None, "needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a valid cluster description"),
])
def test_multi_worker_without_a_valid_tf_config_is_a_clear_error(tmp_path, config, message):
    extra = {} if config is None else {"TF_CONFIG": config}
    proc = run_edgeopt(_finetune_args(tmp_path / "m.keras", "--strategy", "multi-worker"), **extra)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
