"""Benchmark a .tflite on a Linux board over ssh with the system OpenSSH client.

``runner.py`` (one file, numpy + ai_edge_litert/tflite_runtime on the board) and the model are copied with
``scp`` into ``remote_dir``, run with ``--json -``, and the JSON it prints is returned; ``remote_dir`` is removed
afterwards. Authentication is non-interactive (``BatchMode=yes``); unknown host keys are accepted on first use
(``StrictHostKeyChecking=accept-new``) unless a ``known_hosts`` file is given, which is then required to match.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess

from . import runner
from .runner import BenchError

_FLAGS = {"num_threads": "--num-threads", "warmup_runs": "--warmup-runs", "num_runs": "--num-runs",
          "min_secs": "--min-secs", "max_secs": "--max-secs", "external_delegate_path": "--external-delegate-path",
          "external_delegate_options": "--external-delegate-options", "seed": "--seed"}
_SWITCHES = {"xnnpack_fp16": "--xnnpack-fp16", "use_gpu": "--use-gpu", "allow_fallback": "--allow-fallback"}


def ssh_options(*, port=22, identity=None, known_hosts=None):
    """OpenSSH ``-o`` options shared by ssh and scp (the port flag differs between them and is added later)."""
    opts = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    if known_hosts:
        opts += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={os.fspath(known_hosts)}"]
    else:
        opts += ["-o", "StrictHostKeyChecking=accept-new"]
    if identity:
        opts += ["-i", os.fspath(identity), "-o", "IdentitiesOnly=yes"]
    return opts


def runner_flags(options, /):
    """Runner command-line flags for :func:`device_bench.runner.benchmark` keyword arguments."""
    flags = []
    for key, value in options.items():
        if key in _FLAGS and value is not None:
            flags += [_FLAGS[key], str(value)]
        elif key in _SWITCHES and value:
            flags.append(_SWITCHES[key])
        elif key == "use_xnnpack":
            flags += ["--use-xnnpack", "true" if value else "false"]
        elif key not in _FLAGS and key not in _SWITCHES:
            raise BenchError(f"unknown runner option {key!r} for a remote run")
    return flags


def _run(command, /, *, what, host):
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:
        raise BenchError(f"cannot run {command[0]}: {exc} (install the OpenSSH client)") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise BenchError(f"{what} on {host} failed (exit {done.returncode}): {detail}")
    return done.stdout


def run_remote(host, model_path, *, user=None, port=22, identity=None, known_hosts=None, python="python3",
               remote_dir="/tmp/device_bench", **options):
    """Run the benchmark on ``host`` and return the runner's result dict (plus ``host.ssh``).

    >>> run_remote("rpi.local", "m.tflite", user="pi", num_threads=4, num_runs=100)   # doctest: +SKIP
    """
    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise BenchError(f"model file not found: {model_path}")
    flags = runner_flags(options)
    dest = f"{user}@{host}" if user else host
    opts = ssh_options(port=port, identity=identity, known_hosts=known_hosts)
    ssh = ["ssh", *opts, "-p", str(port), dest]
    remote_model = f"{remote_dir}/{os.path.basename(model_path)}"
    _run(ssh + [f"mkdir -p {shlex.quote(remote_dir)}"], what="creating the remote folder", host=host)
    try:
        _run(["scp", *opts, "-P", str(port), "-q", runner.__file__, model_path, f"{dest}:{remote_dir}/"],
             what="copying runner.py and the model", host=host)
        command = [python, f"{remote_dir}/runner.py", remote_model, "--json", "-", *flags]
        stdout = _run(ssh + [" ".join(shlex.quote(c) for c in command)], what="the benchmark", host=host)
    finally:
        subprocess.run(ssh + [f"rm -rf {shlex.quote(remote_dir)}"], capture_output=True, check=False)
    try:
        result = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"the runner on {host} printed no JSON result: {stdout[-500:]!r}") from exc
    result["host"]["ssh"] = {"host": host, "user": user, "port": port}
    return result
