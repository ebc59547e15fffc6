"""Pruning to a measured latency: a per-layer latency table on the target device, widths chosen against it, and
the pruned model measured on the same device.

**Table.** Every layer with MACs (Conv2D, DepthwiseConv2D, Conv2DTranspose, Dense) is cut out as a one-layer model
(the same kernel, strides, padding, dilation and fused activation, batch 1), converted as the deployed model will
be (INT8 with per-channel weights, or FP32) and timed on the target at a grid of input and output widths: the
layer's full widths times 1/4, 1/2, 3/4 and 1, rounded to ``round_to``. Between grid points the time is
interpolated bilinearly. The time of an empty one-op model (the interpreter's own cost per invoke) is subtracted
from each entry. Entries are cached per device in ``~/.cache/edgeopt/latency/`` (``EDGEOPT_CACHE`` moves it), keyed
by the layer's shape and settings, so a second pruning of the same architecture measures nothing.

**Prediction.** ``predicted = sum of table entries at the chosen widths + rest``, where ``rest`` (adds, pooling,
reshapes, quantize ops: everything that is no table layer) is the measured latency of the model the step starts from
minus its table sum, scaled by the fraction of activation elements kept.

**Choice.** Starting from the full widths, the group step (``round_to`` channels of one group, its least important
ones) with the least importance lost per millisecond saved is taken until the prediction meets the target. The
pruned model is then converted and measured on the target; while the measurement misses the target less 2 % (room
for the spread between measuring runs; at most four times), the prediction's target is lowered by the miss and the
choice continues from there.

>>> target = LatencyTarget()  # this host, 1 thread  # doctest: +SKIP
>>> table = LatencyTable(target, precision="int8")  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .graph import ChannelGraph, _inbound, _outbound, _tensor_name
from .select import normalized, prunable, removed_units, round_up

TABLE_LAYERS = ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "Dense")
GRID = (0.25, 0.5, 0.75, 1.0)


def cache_dir() -> Path:
    root = os.environ.get("EDGEOPT_CACHE")
    return Path(root) / "latency" if root else Path.home() / ".cache" / "edgeopt" / "latency"


@dataclass(frozen=True)
class LatencyTarget:
    """Where latency is measured: this host (``kind="local"``), a board over ssh or a phone over adb, with the same
    settings as ``edgeopt bench``."""

    kind: str = "local"  # local | ssh | android
    threads: int = 1
    runs: int = 30
    host: str | None = None
    user: str | None = None
    port: int = 22
    identity: str | None = None
    known_hosts: str | None = None
    python: str = "python3"
    benchmark_binary: str | None = None
    adb: str | None = None
    serial: str | None = None

    def describe(self) -> str:
        if self.kind == "ssh":
            who = f"{self.user}@{self.host}" if self.user else self.host
            return f"{who}:{self.port} over ssh, {self.threads} thread(s)"
        if self.kind == "android":
            return f"Android phone {self.serial or '(the only one attached)'} over adb, {self.threads} thread(s)"
        return f"this host ({platform.machine()}, {_cpu_name()}), {self.threads} thread(s)"

    def key(self) -> str:
        """The cache file name: the device and the settings that change timings."""
        if self.kind == "ssh":
            ident = f"ssh-{self.user or ''}@{self.host}-{self.port}"
        elif self.kind == "android":
            ident = f"android-{self.serial or 'default'}-{Path(self.benchmark_binary or '').name}"
        else:
            from device_bench.runner import load_runtime

            _, name, version = load_runtime()
            ident = f"local-{platform.node()}-{platform.machine()}-{_cpu_name()}-{name}-{version}"
        digest = hashlib.sha256(f"{ident}-t{self.threads}".encode()).hexdigest()[:16]
        return f"{self.kind}-{digest}"

    def measure(self, path: str | Path) -> float:
        """The median latency of one ``.tflite`` in milliseconds."""
        from device_bench.runner import BenchError

        from edgeopt.errors import DeviceError

        try:
            if self.kind == "ssh":
                from device_bench.ssh import run_remote

                result = run_remote(self.host, path, user=self.user, port=self.port, identity=self.identity,
                                    known_hosts=self.known_hosts, python=self.python, num_threads=self.threads,
                                    warmup_runs=2, num_runs=self.runs)
            elif self.kind == "android":
                from device_bench.adb import run_android

                result = run_android(path, benchmark_binary=self.benchmark_binary, adb=self.adb, serial=self.serial,
                                     num_threads=self.threads, warmup_runs=2, num_runs=self.runs)
            else:
                from device_bench.runner import benchmark

                result = benchmark(str(path), num_threads=self.threads, warmup_runs=2, num_runs=self.runs)
        except BenchError as exc:
            raise DeviceError(f"latency measurement on {self.describe()} failed: {exc.message}",
                              hint=exc.hint) from None
        lat = result["latency_ms"]
        return float(lat.get("median") if lat.get("median") is not None else lat.get("mean"))

    def compare(self, models: dict[str, str]) -> dict[str, float]:
        """Median latency per model; on this host interleaved round-robin (the same drift for every model)."""
        if self.kind != "local":
            return {label: self.measure(path) for label, path in models.items()}
        from device_bench.compare import compare

        result = compare(models, rounds=10, runs_per_round=max(5, self.runs // 3), num_threads=self.threads,
                         warmup_runs=2)
        return {label: float(m["latency_ms"]["median"]) for label, m in result["models"].items()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


@dataclass
class LayerSpec:
    """One table layer: its config, input shape and the tensors whose widths it reads and writes."""

    name: str
    kind: str
    config: dict
    spatial: tuple[int, ...]  # input shape without batch and channels (for Dense after Flatten: positions)
    src: str | None  # channel tensor of the input (None: not prunable)
    out: str | None
    cin: int
    cout: int

    def key(self, cin: int, cout: int, precision: str) -> str:
        config = {k: v for k, v in self.config.items() if k not in ("name", "trainable", "filters", "units")}
        text = json.dumps([self.kind, config, self.spatial, cin, cout, precision], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def layer_specs(graph: ChannelGraph) -> list[LayerSpec]:
    model = graph.model
    specs = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in TABLE_LAYERS or not _inbound(layer, model):
            continue
        inp = _inbound(layer, model)[0][0]
        src, out = _tensor_name(inp), _tensor_name(_outbound(layer, model)[0])
        if any(d is None for d in inp.shape[1:]) or any(d is None for d in _outbound(layer, model)[0].shape[1:]):
            from edgeopt.errors import RecipeError

            raise RecipeError(f"--prune-latency times every layer at its input size, and {layer.name} has a dynamic "
                              f"input shape {tuple(inp.shape)}", hint="fix the sizes with --input-shape, e.g. "
                              "`--input-shape input:1,3,224,224`")
        shape = tuple(int(d) for d in inp.shape[1:])
        spatial: tuple[int, ...] = shape[:-1]
        cin = shape[-1]
        if kind == "Dense" and src in graph.flatten_inputs:
            src, full = graph.flatten_inputs[src]
            spatial, cin = (int(np.prod(full[:-1])),), full[-1]
        cout = int(_outbound(layer, model)[0].shape[-1])
        specs.append(LayerSpec(layer.name, kind, layer.get_config(), spatial, src if src in graph.widths else None,
                               out if out in graph.widths else None, int(cin), cout))
    return specs


def one_layer_model(spec: LayerSpec, cin: int, cout: int):
    """A one-layer tf_keras model of ``spec`` at ``cin`` input and ``cout`` output channels (batch 1)."""
    from edgeopt._tf import keras

    k = keras()
    config = dict(spec.config)
    config.pop("batch_input_shape", None)
    if spec.kind == "Dense":
        config["units"] = cout
        shape = (spec.spatial[0] * cin,) if spec.spatial and spec.spatial != () else (cin,)
    elif spec.kind == "DepthwiseConv2D":
        shape = (*spec.spatial, cin)
    else:
        config["filters"] = cout
        shape = (*spec.spatial, cin)
    layer = type_of(spec.kind).from_config(config)
    x = k.Input(shape, batch_size=1)
    return k.Model(x, layer(x))


def type_of(kind: str):
    from edgeopt._tf import keras

    return getattr(keras().layers, kind)


def _empty_model():
    from edgeopt._tf import keras

    k = keras()
    x = k.Input((8,), batch_size=1)
    return k.Model(x, k.layers.ReLU()(x))


def convert(model, precision: str) -> bytes:
    """``model`` as the deployed file would be converted: INT8 (random calibration: latency does not depend on the
    scales) or FP32."""
    from edgeopt.converter import to_tflite

    names = [f"input_{i}" for i in range(len(model.inputs))]
    outs = [f"output_{i}" for i in range(len(model.outputs))]
    if precision != "int8":
        return to_tflite(model, input_names=names, output_names=outs, precision="fp32")
    rng = np.random.default_rng(0)

    def representative():  # several inputs by signature name: the converter orders them by name
        for _ in range(4):
            sample = [rng.standard_normal((1, *[int(d) for d in t.shape[1:]])).astype(np.float32)
                      for t in model.inputs]
            yield sample if len(sample) == 1 else dict(zip(names, sample))

    return to_tflite(model, input_names=names, output_names=outs, precision="int8", representative=representative,
                     io_type="int8")


def grid(width: int, round_to: int, minimum: int) -> list[int]:
    """The widths a table layer is timed at for a tensor of ``width`` channels."""
    values = {width}
    for f in GRID:
        values.add(max(round_up(int(math.ceil(width * f)), round_to, width), minimum))
    return sorted(v for v in values if v <= width)


def grids_for(graph: ChannelGraph, *, round_to: int, skip: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """The grid of every channel tensor that can lose channels (the others are timed at their width only)."""
    free = {u for g in prunable(graph, skip=skip) for u in g.units}
    out = {}
    for name, width in graph.widths.items():
        units = graph.units_of(name)
        out[name] = grid(width, round_to, min(width, round_to)) if any(int(u) in free for u in units) else [width]
    return out


def _interp(xs: list[int], x: float) -> tuple[int, int, float]:
    """Indices (i, j) of ``xs`` around ``x`` and the weight of j (linear; extrapolates below the first point)."""
    if len(xs) == 1:
        return 0, 0, 0.0
    j = int(np.searchsorted(xs, x))
    j = min(max(j, 1), len(xs) - 1)
    i = j - 1
    return i, j, (x - xs[i]) / (xs[j] - xs[i])


@dataclass
class LatencyTable:
    """Per-layer times on one target at grid widths, cached per device."""

    target: LatencyTarget
    precision: str = "int8"
    entries: dict[str, float] = field(default_factory=dict)
    measured_now: int = 0
    path: Path | None = None

    def __post_init__(self):
        self.path = cache_dir() / f"{self.target.key()}.json"
        if self.path.exists():
            try:
                self.entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.entries = {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=0, sort_keys=True))
        tmp.replace(self.path)

    def _time(self, key: str, build) -> float:
        if key not in self.entries:
            with tempfile.TemporaryDirectory(prefix="edgeopt-latency-") as tmp:
                path = Path(tmp) / "layer.tflite"
                path.write_bytes(convert(build(), self.precision))
                self.entries[key] = self.target.measure(path)
            self.measured_now += 1
        return self.entries[key]

    def overhead(self) -> float:
        """The time of an empty model's invoke on the target."""
        return self._time(f"empty-{self.precision}", _empty_model)

    def fill(self, specs: list[LayerSpec], grids: dict[str, list[int]]) -> dict[str, dict]:
        """Time every spec at its grid; returns name -> {"cins", "couts", "ms" (2-D)}."""
        base = self.overhead()
        out = {}
        for spec in specs:
            cins = grids.get(spec.src, [spec.cin]) if spec.src else [spec.cin]
            couts = [spec.cout] if spec.kind == "DepthwiseConv2D" else (
                grids.get(spec.out, [spec.cout]) if spec.out else [spec.cout])
            ms = np.zeros((len(cins), len(couts)))
            groups = int(spec.config.get("groups", 1) or 1) if spec.kind == "Conv2D" else 1
            for i, ci in enumerate(cins):
                for j, co in enumerate(couts):
                    c_out = ci * (spec.cout // spec.cin) if spec.kind == "DepthwiseConv2D" else co
                    if groups > 1:  # a grouped conv at widths that divide into its groups
                        ci, c_out = -(-ci // groups) * groups, -(-c_out // groups) * groups
                    key = spec.key(ci, c_out, self.precision)
                    ms[i, j] = max(0.0, self._time(key, lambda: one_layer_model(spec, ci, c_out)) - base)
            out[spec.name] = {"cins": cins, "couts": couts, "ms": ms}
        self.save()
        return out


class LatencyModel:
    """``predict(removed)``: the model's latency in ms without the units ``removed``."""

    def __init__(self, graph: ChannelGraph, specs: list[LayerSpec], tables: dict[str, dict], measured_full: float):
        self.graph, self.specs, self.tables = graph, specs, tables
        self.units = {name: graph.units_of(name) for name in graph.widths}
        self.elements = {}
        for layer in graph.model.layers:
            for t in _outbound(layer, graph.model):
                name = _tensor_name(t)
                if name in graph.widths:
                    self.elements[name] = int(np.prod([d for d in t.shape[1:-1]])) if len(t.shape) > 2 else 1
        self.full_elements = sum(self.elements[n] * graph.widths[n] for n in self.elements)
        self.table_full = self.layer_sum(frozenset())
        self.rest = measured_full - self.table_full
        self.measured_full = measured_full

    def kept(self, tensor: str | None, full: int, mask: np.ndarray | None) -> int:
        if tensor is None or mask is None:
            return full
        return int((~mask[self.units[tensor]]).sum())

    def _mask(self, removed) -> np.ndarray | None:
        return self.graph.removed_mask(removed) if removed else None

    def per_layer(self, removed) -> dict[str, float]:
        mask = self._mask(removed)
        out = {}
        for spec in self.specs:
            t = self.tables[spec.name]
            ci = self.kept(spec.src, spec.cin, mask)
            co = ci * (spec.cout // spec.cin) if spec.kind == "DepthwiseConv2D" else self.kept(spec.out, spec.cout,
                                                                                                mask)
            i0, i1, wi = _interp(t["cins"], ci)
            j0, j1, wj = _interp(t["couts"], co)
            ms = t["ms"]
            value = ((1 - wi) * (1 - wj) * ms[i0, j0] + wi * (1 - wj) * ms[i1, j0] + (1 - wi) * wj * ms[i0, j1]
                     + wi * wj * ms[i1, j1])
            out[spec.name] = max(0.0, float(value))
        return out

    def layer_sum(self, removed) -> float:
        return sum(self.per_layer(removed).values())

    def predict(self, removed) -> float:
        mask = self._mask(removed)
        kept = sum(self.elements[n] * self.kept(n, self.graph.widths[n], mask) for n in self.elements)
        share = kept / self.full_elements if self.full_elements else 1.0
        return self.layer_sum(removed) + self.rest * share


def choose_latency(graph: ChannelGraph, scores: dict[int, float], model: LatencyModel, *, target_ms: float,
                   round_to: int, max_ratio: float, skip: tuple[str, ...] = (), floors: dict[str, int] | None = None,
                   start: dict[str, int] | None = None) -> dict[str, list[int]]:
    """Per prunable group the units kept: greedy steps of ``round_to`` channels, each time the one with the least
    normalized importance lost per predicted millisecond saved, until ``model.predict`` meets ``target_ms`` (or
    every group is at its floor). ``start``: kept counts to continue from."""
    norm = normalized(graph, scores)
    groups = prunable(graph, skip=skip)
    ranked = {g.name: sorted(g.units, key=lambda u: -scores.get(u, 0.0)) for g in groups}
    width = {g.name: g.width for g in groups}
    unit_step = {g.name: g.step(round_to) for g in groups}
    minimum = {}
    for g in groups:
        floor = int(math.ceil(g.width * (1.0 - max_ratio)))
        if floors is not None and g.name in floors:
            floor = min(g.width, floors[g.name])
        minimum[g.name] = round_up(max(floor, 1), unit_step[g.name], g.width)
    n = {g.name: min(width[g.name], (start or {}).get(g.name, width[g.name])) for g in groups}

    def keep_of(counts):
        return {name: ranked[name][:c] for name, c in counts.items()}

    current = model.predict(removed_units(graph, keep_of(n)))
    while current > target_ms:
        best = None
        for name in n:
            r = unit_step[name]
            step = n[name] - r if n[name] % r == 0 else (n[name] // r) * r
            step = max(step, minimum[name])
            if step >= n[name]:
                continue
            trial = dict(n, **{name: step})
            t = model.predict(removed_units(graph, keep_of(trial)))
            gain = current - t
            lost = sum(norm[u] for u in ranked[name][step:n[name]])
            score = lost / gain if gain > 1e-9 else math.inf
            if best is None or score < best[0]:
                best = (score, name, step, t)
        if best is None:
            break
        _, name, step, t = best
        n[name], current = step, t
    return keep_of(n)
