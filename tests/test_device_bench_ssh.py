"""device_bench over ssh, end to end against a real sshd started on 127.0.0.1 for this test."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from device_bench import BenchError
from device_bench.ssh import run_remote

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port, process, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {process.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                if conn.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("sshd did not answer")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server/client not installed (scripts/install-test-deps.sh installs them)")
    root = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port = _free_port()
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (root / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel ERROR",
        "Subsystem sftp internal-sftp", ""]))  # scp of OpenSSH >= 9 copies over sftp
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                               stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(port, process)
        yield {"port": port, "identity": root / "client_key", "known_hosts": root / "known_hosts",
               "user": getpass.getuser()}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from edgeopt._tf import keras, tf

    k = keras()
    inputs = k.layers.Input((32, 32, 3))
    x = k.layers.Conv2D(8, 3, activation="relu")(inputs)
    outputs = k.layers.Dense(10)(k.layers.GlobalAveragePooling2D()(x))
    path = tmp_path_factory.mktemp("ssh_model") / "tiny.tflite"
    path.write_bytes(tf().lite.TFLiteConverter.from_keras_model(k.Model(inputs, outputs)).convert())
    return path


def _remote(sshd, model, remote_dir, **options):
    return run_remote("127.0.0.1", model, user=sshd["user"], port=sshd["port"], identity=sshd["identity"],
                      known_hosts=sshd["known_hosts"], python=sys.executable, remote_dir=str(remote_dir),
                      **options)


def test_remote_run_returns_runner_json_and_cleans_up(sshd, model, tmp_path):
    remote_dir = tmp_path / "remote"
    result = _remote(sshd, model, remote_dir, num_threads=1, num_runs=25, warmup_runs=2, use_xnnpack=False)
    assert result["source"] == "runner" and result["latency_ms"]["count"] == 25
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["model"]["size_bytes"] == model.stat().st_size
    assert result["model"]["path"] == str(remote_dir / "tiny.tflite")
    assert result["settings"]["num_runs"] == 25 and result["settings"]["use_xnnpack"] is False
    assert result["host"]["ssh"] == {"host": "127.0.0.1", "user": sshd["user"], "port": sshd["port"]}
    assert not remote_dir.exists()  # removed after the run


def test_remote_error_is_reported(sshd, model, tmp_path):
    with pytest.raises(BenchError, match=r"libnot_there\.so"):
        _remote(sshd, model, tmp_path / "remote", external_delegate_path="/nowhere/libnot_there.so")
    assert not (tmp_path / "remote").exists()


def test_unknown_host_key_is_refused(sshd, model, tmp_path):
    other = tmp_path / "known_hosts"
    other.write_text("")
    with pytest.raises(BenchError, match="failed"):
        run_remote("127.0.0.1", model, user=sshd["user"], port=sshd["port"], identity=sshd["identity"],
                   known_hosts=other, python=sys.executable, remote_dir=str(tmp_path / "r"))


def test_pruning_latency_table_measures_over_ssh(sshd, model, tmp_path, monkeypatch):
    """--prune-latency --ssh: the per-layer table and the model are timed on the board (here: this host's sshd)."""
    from edgeopt._tf import keras
    from edgeopt.pruning.graph import build_graph
    from edgeopt.pruning.latency import LatencyTable, LatencyTarget, layer_specs

    monkeypatch.setenv("EDGEOPT_CACHE", str(tmp_path / "cache"))
    target = LatencyTarget("ssh", host="127.0.0.1", user=sshd["user"], port=sshd["port"],
                           identity=str(sshd["identity"]), known_hosts=str(sshd["known_hosts"]),
                           python=sys.executable, runs=5)
    assert target.measure(model) > 0
    assert target.key() != LatencyTarget("local").key() and "127.0.0.1" in target.describe()
    k = keras()
    x = k.Input((8, 8, 3))
    net = k.Model(x, k.layers.Conv2D(8, 3, name="only")(x))
    g = build_graph(net)
    table = LatencyTable(target, precision="int8")
    tables = table.fill(layer_specs(g), {})
    assert table.measured_now == 2 and tables["only"]["ms"].shape == (1, 1)  # the empty model and the conv
    assert table.path.parent == tmp_path / "cache" / "latency" and table.path.name.startswith("ssh-")
