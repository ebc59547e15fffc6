"""The typed, frozen parameters of every stage, and of the run's data and report.

Every field is a recipe key and a CLI flag (``parity_tolerance`` ↔ ``--parity-tolerance``); its ``help`` metadata is
shown by ``edgeopt stages`` and ``edgeopt compress --help``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def _f(default, help: str):
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataParams:
    """Where calibration/evaluation samples come from and how raw images are preprocessed."""

    calib: str | None = _f(None, "calibration data: an image folder, a .npy/.npz file (already preprocessed, "
                                 "original model layout) or an idx file")
    data: str | None = _f(None, "training data for the stages that train (same kinds as calib); image folders are "
                                "decoded and .npy files read batch by batch, idx (uint8) and .npz are held in "
                                "memory")
    labels: str | None = _f(None, "labels of the --data samples, or of --calib when there is no --data (idx label "
                                  "file, .npy integers, or the 'y' of an .npz); class folders and an .npz holding "
                                  "'y' carry their own")
    val: str | None = _f(None, "evaluation data for accuracy, every sample read (default: the held-back split of "
                               "--calib)")
    val_labels: str | None = _f(None, "labels of --val (idx, .npy, .npz 'y'; class folders carry their own)")
    calib_samples: int = _f(256, "at most this many samples are read (a seeded random choice when there are more)")
    holdout: float = _f(0.2, "fraction of the samples held back from calibration to measure fidelity")
    size: tuple[int, ...] = _f((), "resize images to H,W (default: the model input's size)")
    mean: tuple[float, ...] = _f((), "per-channel mean subtracted after value-range scaling (default 0)")
    std: tuple[float, ...] = _f((), "per-channel std divided by after the mean (default 1)")
    channel_order: Literal["rgb", "bgr"] = _f("rgb", "channel order the model expects")
    value_range: tuple[float, ...] = _f((), "pixel values 0..255 are mapped onto LO,HI (default 0,1); "
                                            ".npy/.npz data is checked against it only when stated")
    resize: Literal["center-crop", "stretch"] = _f("center-crop", "center-crop keeps the aspect ratio; stretch "
                                                                  "resizes the whole image")

    def __post_init__(self):
        # An empty value_range/mean/std means "not stated": the defaults apply and arrays go unchecked.
        if self.value_range and (len(self.value_range) != 2 or self.value_range[0] >= self.value_range[1]):
            raise ValueError(f"value_range must be LO,HI with LO < HI, got {self.value_range}")
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.calib_samples < 1:
            raise ValueError(f"calib_samples must be at least 1, got {self.calib_samples}")
        if self.labels is not None and self.calib is None and self.data is None:
            raise ValueError("labels label the --data (or --calib) samples: give data or calib too "
                             "(or val with val_labels)")
        if self.val_labels is not None and self.val is None:
            raise ValueError("val_labels label the --val samples: give val too")
        if len(self.size) not in (0, 1, 2):
            raise ValueError(f"size must be H or H,W, got {self.size}")


@dataclass(frozen=True)
class ImportParams:
    """Import an ONNX or Keras model as a trainable Keras graph and check it against onnxruntime."""

    input_shape: tuple[str, ...] = _f((), "fix dynamic dimensions: NAME:1,3,320,320 (repeatable; batch → 1)")
    parity_tolerance: float = _f(1e-4, "maximum import error, relative to each output's largest magnitude")
    parity_samples: int = _f(4, "number of inputs the parity check runs")

    def __post_init__(self):
        if self.parity_tolerance <= 0:
            raise ValueError(f"parity_tolerance must be positive, got {self.parity_tolerance}")
        if self.parity_samples < 1:
            raise ValueError(f"parity_samples must be at least 1, got {self.parity_samples}")


@dataclass(frozen=True)
class ConvertParams:
    """Convert a Keras model to .tflite without calibration data."""

    precision: Literal["fp32", "fp16", "dynamic-range"] = _f("fp32", "weights/activations precision")


@dataclass(frozen=True)
class PTQParams:
    """Full-integer post-training quantization, calibrated on the run's data."""

    io_type: Literal["int8", "uint8", "float32"] = _f("int8", "type of the model's inputs and outputs")
    per_channel: bool = _f(True, "per-channel weight scales (False: one scale per tensor)")
    min_agreement: float | None = _f(None, "accuracy budget without labels: keep the most damaging ops in float "
                                           "until the top-1 agreement with FP32 on the held-back samples reaches "
                                           "this (the mean output cosine for a model without a classifier)")
    max_accuracy_drop: float | None = _f(None, "accuracy budget with labels: keep the most damaging ops in float "
                                               "until top-1 accuracy is at most this many points below the float "
                                               "model's")
    auto_granularity: bool = _f(False, "per layer, one weight scale instead of one per channel where the output "
                                       "cosine on the held-back samples stays within 0.002 (top-1 agreement "
                                       "within 1 point) of all per-channel (smaller files for narrow and "
                                       "depthwise networks)")
    ptq_repair: Literal["auto", "none"] = _f("auto", "auto: try cross-layer equalization, error-compensating "
                                                     "weight rounding, bias correction and percentile/MSE "
                                                     "activation ranges, keeping each that raises the output "
                                                     "cosine with FP32 on the held-back samples (a budget "
                                                     "then keeps ops in float from the repaired model); "
                                                     "none: the converter's PTQ as it is. Not run with "
                                                     "auto_granularity")

    def __post_init__(self):
        if self.ptq_repair not in ("auto", "none"):
            raise ValueError(f"ptq_repair is 'auto' or 'none', got {self.ptq_repair!r}")
        if self.auto_granularity and not self.per_channel:
            raise ValueError("auto_granularity chooses per-tensor layers from per-channel ones: keep per_channel")
        if self.auto_granularity and (self.min_agreement is not None or self.max_accuracy_drop is not None):
            raise ValueError("auto_granularity and an accuracy budget are not combined; choose one")
        if self.min_agreement is not None and not 0 < self.min_agreement <= 1:
            raise ValueError(f"min_agreement is a fraction in (0, 1], got {self.min_agreement}")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise ValueError(f"max_accuracy_drop is in points (>= 0), got {self.max_accuracy_drop}")
        if self.min_agreement is not None and self.max_accuracy_drop is not None:
            raise ValueError("give one budget: min_agreement (without labels) or max_accuracy_drop (with labels)")


@dataclass(frozen=True)
class ReportParams:
    """What the report measures beyond the stages themselves."""

    latency_runs: int = _f(50, "timed runs per model for the local latency figures")
    warmup_runs: int = _f(5, "untimed runs before timing")
    num_threads: int = _f(1, "interpreter threads for latency")
    delegates: bool = _f(True, "include the delegate-compatibility analysis")
    sensitivity: bool = _f(False, "per-layer INT8 sensitivity on the held-back samples: each op's error, and the "
                                  "fidelity with that op alone kept in float (INT8 outputs)")

    def __post_init__(self):
        if self.latency_runs < 1 or self.num_threads < 1 or self.warmup_runs < 0:
            raise ValueError("latency_runs and num_threads must be at least 1, warmup_runs at least 0")


@dataclass(frozen=True)
class TrainParams:
    """Training: every stage that trains (fine-tuning, and the stages built on it) takes these fields."""

    epochs: int = _f(1, "passes over the training data")
    batch_size: int = _f(32, "global batch size: the samples of one step, over all replicas and workers")
    lr: float = _f(1e-4, "peak learning rate (after warm-up)")
    optimizer: Literal["adamw", "adam", "sgd"] = _f("adamw", "adamw/adam, or sgd with momentum")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(0.0, "decoupled weight decay (biases and normalization parameters excluded)")
    schedule: Literal["cosine", "constant"] = _f("cosine", "learning-rate schedule after warm-up")
    warmup_epochs: float = _f(0.0, "linear warm-up from 0 to --lr over this many epochs")
    loss: tuple[str, ...] = _f((), "loss terms, each ce, kd or mse with an optional weight (ce=0.3,kd=0.7); "
                                    "default: ce with labels, else kd on a classifier output, else mse")
    temperature: float = _f(4.0, "softmax temperature of the kd term (soft targets of the teacher)")
    label_smoothing: float = _f(0.0, "label smoothing of the ce term")
    augment: tuple[str, ...] = _f((), "augmentations: crop (random crop after zero padding), flip (horizontal); "
                                       "none by default (digits and text must not be flipped)")
    crop_padding: int = _f(4, "pixels of padding on each side before the random crop")
    val_split: float = _f(0.1, "fraction of --data held back for validation when there is no --val")
    patience: int = _f(0, "stop after this many epochs without a lower validation loss and keep the best "
                          "epoch's weights (0: never stop early)")
    seed: int = _f(0, "seed of the data order, the augmentations and the validation split")
    strategy: Literal["default", "mirrored", "multi-worker"] = _f(
        "default", "default: one device; mirrored: every local GPU (else every logical CPU); multi-worker: "
                   "the cluster in TF_CONFIG, one process per worker")
    checkpoint_dir: str | None = _f(None, "where a checkpoint is kept after each epoch (default: OUT.ckpt/ beside "
                                          "the output, removed when the run completes)")
    resume: bool = _f(False, "continue from the last checkpoint in checkpoint_dir")

    needs_data = True  # a class attribute, not a field: whether the stage cannot run without --data
    min_epochs = 1

    def __post_init__(self):
        if self.epochs < self.min_epochs or self.batch_size < 1:
            raise ValueError(f"epochs must be at least {self.min_epochs} and batch_size at least 1, got "
                             f"{self.epochs} and {self.batch_size}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("lr must be positive, weight_decay at least 0 and momentum in [0, 1)")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.val_split < 1:
            raise ValueError("label_smoothing and val_split must be in [0, 1)")
        if self.temperature <= 0 or self.warmup_epochs < 0 or self.patience < 0 or self.crop_padding < 0:
            raise ValueError("temperature must be positive; warmup_epochs, patience and crop_padding at least 0")
        # "crop,flip" from a recipe or the API means the same as ("crop", "flip")
        object.__setattr__(self, "augment", tuple(a.strip() for item in self.augment for a in str(item).split(",")
                                                  if a.strip()))
        bad = [a for a in self.augment if a not in ("crop", "flip")]
        if bad:
            raise ValueError(f"unknown augmentation {bad[0]!r}: choose crop, flip")
        from .train.losses import parse_loss

        parse_loss(self.loss)


@dataclass(frozen=True)
class PruneParams(TrainParams):
    """Structured pruning: remove whole channels to a MACs or channel target, then fine-tune (the training fields
    above; ``epochs`` after each pruning step, 0 for none)."""

    needs_data = False  # data-free importance works; without --data there is no fine-tuning
    min_epochs = 0

    prune_macs: float = _f(0.0, "keep at most this fraction of the MACs, e.g. 0.4 (0: no MACs target)")
    prune_ratio: float = _f(0.0, "remove this fraction of the channels of every prunable group (0: none)")
    importance: Literal["l1", "l2", "bn", "taylor"] = _f("l1", "channel importance: L1 or L2 filter norm, BatchNorm "
                                                               "scale, or taylor (|activation x gradient| on "
                                                               "--data batches)")
    round_to: int = _f(8, "keep channel counts multiples of this (the widths XNNPACK and GPU kernels like)")
    max_layer_ratio: float = _f(0.9, "remove at most this fraction of any group's channels")
    skip_layers: tuple[str, ...] = _f((), "conv or Dense layers whose output channels are never pruned (names)")
    prune_steps: int = _f(1, "prune in this many steps, fine-tuning after each")
    restore_bn: bool = _f(True, "fine-tune with a BatchNormalization after every conv that has none (an ONNX export "
                                "folds them into the convs; the TFLite conversion folds them back)")
    prune_latency: float = _f(0.0, "keep at most this fraction of the unpruned model's latency measured on the "
                                   "target device, e.g. 0.5 (0: no latency target)")
    latency_precision: Literal["int8", "fp32"] = _f("int8", "the conversion the latency target is measured on")
    latency_threads: int = _f(1, "interpreter threads for the latency measurements")
    latency_runs: int = _f(30, "timed runs per latency measurement")
    ssh: str | None = _f(None, "measure latency on this board over ssh (as `edgeopt bench --ssh`)")
    ssh_user: str | None = _f(None, "ssh user")
    ssh_port: int = _f(22, "ssh port")
    identity: str | None = _f(None, "ssh private key file")
    known_hosts: str | None = _f(None, "known_hosts file the board's host key must match")
    remote_python: str = _f("python3", "python on the board")
    android: bool = _f(False, "measure latency on a phone over adb with benchmark_model (as `edgeopt bench "
                              "--android`)")
    benchmark_binary: str | None = _f(None, "benchmark_model built for the phone")
    adb: str | None = _f(None, "adb executable (default: adb on PATH)")
    serial: str | None = _f(None, "phone serial (adb -s)")
    channels: str | None = _f(None, "replay an earlier pruning: its report.json (the channels each layer kept, per "
                                    "step); no target is needed")

    def __post_init__(self):
        super().__post_init__()
        targets = sum(1 for t in (self.prune_macs, self.prune_ratio, self.prune_latency) if t > 0)
        if self.channels and targets:
            raise ValueError("channels replays an earlier pruning: give no prune_macs, prune_ratio or prune_latency "
                             "with it")
        if targets != 1 and not self.channels:
            raise ValueError("give exactly one target: prune_macs (fraction of MACs kept), prune_ratio (fraction of "
                             "channels removed) or prune_latency (fraction of the measured latency kept)")
        if not all(0 <= t < 1 for t in (self.prune_macs, self.prune_ratio, self.prune_latency)) or \
                not 0 < self.max_layer_ratio < 1:
            raise ValueError("prune_macs, prune_ratio, prune_latency and max_layer_ratio are fractions below 1")
        if self.round_to < 1 or self.prune_steps < 1:
            raise ValueError("round_to and prune_steps must be at least 1")
        if self.latency_threads < 1 or self.latency_runs < 1:
            raise ValueError("latency_threads and latency_runs must be at least 1")
        if self.ssh and self.android:
            raise ValueError("measure latency over ssh or on an Android phone, not both")
        if self.android and not self.benchmark_binary:
            raise ValueError("android latency needs benchmark_binary (a benchmark_model built for the phone)")
        if self.prune_ratio > self.max_layer_ratio:
            raise ValueError(f"prune_ratio {self.prune_ratio:g} removes more than max_layer_ratio "
                             f"{self.max_layer_ratio:g} allows")


@dataclass(frozen=True)
class QATParams(TrainParams):
    """Quantization-aware training: fake-quantized weights and activations (tensorflow-model-optimization's 8-bit
    scheme, ranges starting from the calibration), fine-tuned through the shared trainer, then converted to a
    full-integer INT8 `.tflite` (the training fields above; without labels the float model's outputs are the
    targets)."""

    io_type: Literal["int8", "uint8", "float32"] = _f("int8", "type of the model's inputs and outputs")


@dataclass(frozen=True)
class DistillParams(TrainParams):
    """Knowledge distillation: train a mobile student from the zoo (`edgeopt students`) to imitate the model (the
    teacher), on its soft targets mixed with the labels, or on its outputs alone without labels (the training
    fields above)."""

    student: str = _f("mobilenet_v2_035", "the student architecture (`edgeopt students` lists them)")
    alpha: float = _f(0.9, "weight of the soft-target (kd) term; the labels' cross-entropy gets 1 - alpha "
                           "(without labels: kd alone)")
    small_input: Literal["auto", "yes", "no"] = _f("auto", "the stem that keeps resolution (CIFAR-style): auto for "
                                                           "inputs under 64 pixels a side")
    hint: str = _f("", "feature (hint) distillation: the teacher layer whose feature map a student layer learns "
                       "through a 1x1 adapter (a Keras layer name of the import, or its ONNX node name)")
    hint_student: str = _f("", "the student layer of the hint (default: the deepest one with the teacher layer's "
                               "height and width, else of the smallest multiple of them)")
    hint_weight: float = _f(1.0, "weight of the hint term (the feature map's squared error relative to the "
                                 "teacher's mean square)")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.hint_weight <= 0:
            raise ValueError(f"hint_weight must be positive, got {self.hint_weight}")
        if self.hint_weight != 1.0 and not self.hint:
            raise ValueError("hint_weight weighs a hint: give hint (the teacher layer) too")
        if self.hint_student and not self.hint:
            raise ValueError("hint_student names the student's side of a hint: give hint (the teacher layer) too")
        from .distillation.students import STUDENTS, student
        from .errors import RecipeError

        try:
            student(self.student)
        except RecipeError as exc:
            raise ValueError(f"{exc.args[0].splitlines()[0]}; choose {', '.join(STUDENTS)}") from None
