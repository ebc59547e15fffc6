"""The `edgeopt` command line: a thin layer over the pipeline, the stage registry and the analysers.

Heavy libraries (TensorFlow, onnxruntime) are imported inside the commands, so `edgeopt --help` stays instant.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Literal, Optional

import typer
import typer.core

from .errors import EdgeoptError


def _flags_take_no_value(params) -> None:
    """Plain flags (``--int8``, ``--per-channel/--per-tensor``) take no value, so ``--help`` shows none for them."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _PlainFlags:
    """Mixed into a click command or group: its ``--help`` shows no ``<bool>`` after a plain flag."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _flags_take_no_value(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _flags_take_no_value([option] if option is not None else [])
        return option


class _Command(_PlainFlags, typer.core.TyperCommand):
    """An edgeopt command."""


class _Group(_PlainFlags, typer.core.TyperGroup):
    """The ``edgeopt`` group, with the same flag display as its commands."""


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        try:
            number = version("edgeopt")
        except PackageNotFoundError:  # running from a source tree that was never installed
            number = __version__
        typer.echo(f"edgeopt {number}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="print the edgeopt version and exit",
                                       callback=_version, is_eager=True)):
    """Compile ONNX or Keras models into small, fast, checked `.tflite` files for phones and boards.

    Example: `edgeopt compress model.onnx --int8 --calib images/ -o model_int8.tflite`
    """


PRE = "Calibration data and preprocessing"
IMP = "Import"
QNT = "Precision and quantization"
REP = "Report"
ACC = "Accuracy (labeled data)"
TRN = "Training"
DAT = "Training data"

# The training options, shared by every command that trains: --epochs, --batch-size, --lr and --strategy mean the
# same everywhere (one OptionInfo per flag, used as the default of each command's parameter).
DATA_OPT = typer.Option(None, "--data", metavar="DATA", help="training data: a folder with one subfolder per class "
                        "(class names sorted), an idx file or .npy/.npz (original layout); streamed batch by batch",
                        rich_help_panel=DAT)
EPOCHS_OPT = typer.Option(1, "--epochs", help="passes over the training data", rich_help_panel=TRN)
BATCH_OPT = typer.Option(32, "--batch-size", help="global batch size (over all replicas and workers)",
                         rich_help_panel=TRN)
LR_OPT = typer.Option(1e-4, "--lr", help="peak learning rate (after warm-up)", rich_help_panel=TRN)
OPTIMIZER_OPT = typer.Option("adamw", "--optimizer", help="adamw, adam, or sgd (with --momentum)",
                             rich_help_panel=TRN)
MOMENTUM_OPT = typer.Option(0.9, "--momentum", help="SGD momentum", rich_help_panel=TRN)
WD_OPT = typer.Option(0.0, "--weight-decay", help="decoupled weight decay (not on biases and normalization)",
                      rich_help_panel=TRN)
SCHEDULE_OPT = typer.Option("cosine", "--schedule", help="learning rate after warm-up: cosine decay to 0, or "
                            "constant", rich_help_panel=TRN)
WARMUP_OPT = typer.Option(0.0, "--warmup-epochs", help="linear warm-up over this many epochs", rich_help_panel=TRN)
LOSS_OPT = typer.Option(None, "--loss", metavar="TERMS", help="loss terms ce, kd, mse with weights, e.g. "
                        "`ce=0.3,kd=0.7`; default: ce with labels, else kd to the original model's outputs "
                        "(mse for a model without a classifier output)", rich_help_panel=TRN)
TEMPERATURE_OPT = typer.Option(4.0, "--temperature", help="softmax temperature of the kd term",
                               rich_help_panel=TRN)
SMOOTHING_OPT = typer.Option(0.0, "--label-smoothing", help="label smoothing of the ce term", rich_help_panel=TRN)
AUGMENT_OPT = typer.Option(None, "--augment", metavar="OPS", help="`crop` (random crop after zero padding), "
                           "`flip` (horizontal), or `crop,flip`; none by default (digits and text must not flip)",
                           rich_help_panel=TRN)
PADDING_OPT = typer.Option(4, "--crop-padding", help="padding in pixels before the random crop", rich_help_panel=TRN)
VAL_SPLIT_OPT = typer.Option(0.1, "--val-split", help="fraction of --data held back for validation (and for the "
                             "report's accuracy) when there is no --val", rich_help_panel=TRN)
PATIENCE_OPT = typer.Option(0, "--patience", help="stop after this many epochs without a lower validation loss, "
                            "keeping the best epoch (0: never stop early)", rich_help_panel=TRN)
SEED_OPT = typer.Option(0, "--seed", help="seed of the data order, augmentations and validation split",
                        rich_help_panel=TRN)
STRATEGY_OPT = typer.Option("default", "--strategy", help="default: one device; mirrored: every local GPU (else "
                            "every logical CPU); multi-worker: the cluster in TF_CONFIG, the same command started "
                            "on each worker (docs/distributed.md)", rich_help_panel=TRN)
CKPT_OPT = typer.Option(None, "--checkpoint-dir", metavar="DIR", help="checkpoint after each epoch here (default "
                        "`OUT.ckpt/` beside the output, removed when the run completes)", rich_help_panel=TRN)
RESUME_OPT = typer.Option(False, "--resume", help="continue an interrupted run (Ctrl-C or a killed process) from "
                          "its last checkpoint; same command otherwise", rich_help_panel=TRN)
PRN = "Structured pruning"
PRUNE_MACS_OPT = typer.Option(0.0, "--prune-macs", metavar="F", help="prune whole channels until at most this "
                              "fraction of the MACs is left, e.g. 0.4", rich_help_panel=PRN)
PRUNE_RATIO_OPT = typer.Option(0.0, "--prune-ratio", metavar="F", help="or remove this fraction of the channels of "
                               "every prunable group, e.g. 0.5", rich_help_panel=PRN)
IMPORTANCE_OPT = typer.Option("l1", "--importance", help="channel importance: l1 or l2 filter norm, bn "
                              "(BatchNorm scale), or taylor (|activation x gradient| on --data batches)",
                              rich_help_panel=PRN)
ROUND_TO_OPT = typer.Option(8, "--round-to", help="keep channel counts multiples of N", rich_help_panel=PRN)
MAX_LAYER_OPT = typer.Option(0.9, "--max-layer-ratio", help="remove at most this fraction of any group's channels",
                             rich_help_panel=PRN)
SKIP_LAYERS_OPT = typer.Option(None, "--skip-layers", metavar="NAMES", help="comma-separated conv or Dense layers "
                               "whose output channels are never pruned", rich_help_panel=PRN)
PRUNE_STEPS_OPT = typer.Option(1, "--prune-steps", help="prune in N steps, fine-tuning --epochs after each "
                               "(with --data)", rich_help_panel=PRN)
RESTORE_BN_OPT = typer.Option(True, "--restore-bn/--no-restore-bn", help="fine-tune with a BatchNormalization "
                              "after every conv that has none (an ONNX export folds them into the convs; TFLite folds "
                              "them back)", rich_help_panel=PRN)
PRUNE_LATENCY_OPT = typer.Option(0.0, "--prune-latency", metavar="F", help="or prune until the latency measured on "
                                 "the target (this host, or --ssh/--android) is at most this fraction of the "
                                 "unpruned model's, e.g. 0.5", rich_help_panel=PRN)
CHANNELS_OPT = typer.Option(None, "--channels", metavar="REPORT.json", help="replay an earlier pruning exactly: the "
                            "channels each layer kept, from its report.json (no target needed)", rich_help_panel=PRN)
# The calibration and preprocessing options (compress, inspect --sensitivity).
CALIB_OPT = typer.Option(None, "--calib", metavar="DATA", help="image folder, .npy/.npz (preprocessed, original "
                         "layout) or idx file", rich_help_panel=PRE)
CALIB_SAMPLES_OPT = typer.Option(256, "--calib-samples", help="samples to read (a seeded random choice when there "
                                 "are more)", rich_help_panel=PRE)
HOLDOUT_OPT = typer.Option(0.2, "--holdout", help="fraction held back to measure fidelity", rich_help_panel=PRE)
SIZE_OPT = typer.Option(None, "--size", metavar="H[,W]", help="resize images to H or H,W (default: the model "
                        "input's size)", rich_help_panel=PRE)
CALIB_MEAN_OPT = typer.Option(None, "--mean", metavar="M[,M,M]", help="per-channel mean, e.g. 0.485,0.456,0.406 "
                              "(default 0)", rich_help_panel=PRE)
CALIB_STD_OPT = typer.Option(None, "--std", metavar="S[,S,S]", help="per-channel std, e.g. 0.229,0.224,0.225 "
                             "(default 1)", rich_help_panel=PRE)
CHANNEL_ORDER_OPT = typer.Option("rgb", "--channel-order", help="channel order the model expects",
                                 rich_help_panel=PRE)
RESIZE_OPT = typer.Option("center-crop", "--resize", help="center-crop keeps the aspect ratio; stretch resizes the "
                          "whole image", rich_help_panel=PRE)
# The data and preprocessing options of the commands that train and write one model (prune, distill).
VAL_OPT = typer.Option(None, "--val", metavar="DATA", help="validation data", rich_help_panel=DAT)
VAL_LABELS_OPT = typer.Option(None, "--val-labels", metavar="FILE", help="labels of --val", rich_help_panel=DAT)
TRAIN_CALIB_OPT = typer.Option(None, "--calib", metavar="DATA", help="samples for the parity check and the report "
                               "(default: a seeded pick of --data's training part)", rich_help_panel=PRE)
VALUE_RANGE_OPT = typer.Option(None, "--value-range", metavar="LO,HI", help="map pixels 0..255 onto LO,HI (default "
                               "0,1)", rich_help_panel=PRE)
MEAN_OPT = typer.Option(None, "--mean", metavar="M[,M,M]", help="per-channel mean (default 0)", rich_help_panel=PRE)
STD_OPT = typer.Option(None, "--std", metavar="S[,S,S]", help="per-channel std (default 1)", rich_help_panel=PRE)
INPUT_SHAPE_OPT = typer.Option([], "--input-shape", metavar="NAME:DIMS", help="fix dynamic dims, e.g. "
                               "`input:1,3,224,224` (repeatable; a dynamic batch becomes 1)", rich_help_panel=IMP)
DST = "Distillation"
ALPHA_OPT = typer.Option(0.9, "--alpha", help="weight of the soft targets (kd); the labels' cross-entropy gets "
                         "1 - alpha (without labels: the soft targets alone)", rich_help_panel=DST)
SMALL_INPUT_OPT = typer.Option("auto", "--small-input", help="the student stem that keeps resolution (CIFAR-style); "
                               "auto: for inputs under 64 pixels a side", rich_help_panel=DST)
SENSITIVITY_OPT = typer.Option(False, "--sensitivity", help="per-op INT8 sensitivity on the held-back samples: "
                               "each op's error and the fidelity with that op alone in float, most damaging first "
                               "(INT8 output)", rich_help_panel="Report")
HINT_OPT = typer.Option(None, "--hint", metavar="LAYER", help="also learn this teacher layer's feature map (hint "
                        "distillation, through a 1x1 adapter); a Keras layer name of the import or its ONNX node "
                        "name", rich_help_panel=DST)
HINT_STUDENT_OPT = typer.Option(None, "--hint-student", metavar="LAYER", help="the student layer that learns the "
                                "hint (default: the deepest one of the teacher layer's size, else of the smallest "
                                "multiple of it)",
                                rich_help_panel=DST)
HINT_WEIGHT_OPT = typer.Option(1.0, "--hint-weight", help="weight of the hint term (the feature map's squared error "
                               "relative to the teacher's mean square)", rich_help_panel=DST)
LAT = "Latency target (--prune-latency; the options of `edgeopt bench`)"
SSH_OPT = typer.Option(None, "--ssh", metavar="HOST", help="measure on this board over ssh", rich_help_panel=LAT)
SSH_USER_OPT = typer.Option(None, "--ssh-user", metavar="USER", rich_help_panel=LAT)
SSH_PORT_OPT = typer.Option(22, "--ssh-port", metavar="PORT", rich_help_panel=LAT)
IDENTITY_OPT = typer.Option(None, "--identity", metavar="KEY", help="ssh private key file", rich_help_panel=LAT)
KNOWN_HOSTS_OPT = typer.Option(None, "--known-hosts", metavar="FILE", help="known_hosts the board's key must match",
                               rich_help_panel=LAT)
REMOTE_PYTHON_OPT = typer.Option("python3", "--remote-python", metavar="EXE", help="python on the board",
                                 rich_help_panel=LAT)
ANDROID_OPT = typer.Option(False, "--android", help="measure on a phone over adb with benchmark_model",
                           rich_help_panel=LAT)
BENCH_BINARY_OPT = typer.Option(None, "--benchmark-binary", metavar="PATH", help="benchmark_model built for the "
                                "phone", rich_help_panel=LAT)
ADB_OPT = typer.Option(None, "--adb", metavar="PATH", help="adb executable (default: adb on PATH)",
                       rich_help_panel=LAT)
SERIAL_OPT = typer.Option(None, "--serial", help="phone serial (adb -s)", rich_help_panel=LAT)
SAVE_KERAS_OPT = typer.Option(None, "--save-keras", metavar="PATH.keras", help="also keep the trained Keras model",
                              rich_help_panel=TRN)


def _train_values(epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs, loss,
                  temperature, label_smoothing, augment, crop_padding, val_split, patience, seed, strategy,
                  checkpoint_dir, resume) -> dict:
    """The train.finetune stage values from the training flags (checked as TrainParams)."""
    from .params import TrainParams

    values = _train_dict(epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs, loss,
                         temperature, label_smoothing, augment, crop_padding, val_split, patience, seed, strategy,
                         checkpoint_dir, resume)
    params = _checked(TrainParams, values)
    return {k: getattr(params, k) for k in values}


def _train_dict(epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs, loss,
                temperature, label_smoothing, augment, crop_padding, val_split, patience, seed, strategy,
                checkpoint_dir, resume) -> dict:
    def items(text):
        return () if not text else tuple(t.strip() for t in str(text).split(",") if t.strip())

    values = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                  weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, loss=items(loss),
                  temperature=temperature, label_smoothing=label_smoothing, augment=items(augment),
                  crop_padding=crop_padding, val_split=val_split, patience=patience, seed=seed, strategy=strategy,
                  checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir), resume=resume)
    return values


def _latency_values(prune_latency, precision, threads, ssh, ssh_user, ssh_port, identity, known_hosts,
                    remote_python, android, benchmark_binary, adb, serial, runs: int = 30) -> dict:
    """The latency-target fields of PruneParams from their flags."""
    def text(p):
        return None if p is None else str(p)

    return dict(prune_latency=prune_latency, latency_precision=precision, latency_threads=threads,
                latency_runs=runs, ssh=ssh,
                ssh_user=ssh_user, ssh_port=ssh_port, identity=text(identity), known_hosts=text(known_hosts),
                remote_python=remote_python, android=android, benchmark_binary=text(benchmark_binary),
                adb=text(adb), serial=serial)


def _prune_values(train: dict, prune_macs, prune_ratio, importance, round_to, max_layer_ratio, skip_layers,
                  prune_steps, latency: dict | None = None, channels=None, restore_bn: bool = True) -> dict:
    """The prune.structured stage values: the training values plus the pruning flags (checked as PruneParams)."""
    from .params import PruneParams

    skip = () if not skip_layers else tuple(t.strip() for t in str(skip_layers).split(",") if t.strip())
    values = dict(train, prune_macs=prune_macs, prune_ratio=prune_ratio, importance=importance, round_to=round_to,
                  max_layer_ratio=max_layer_ratio, skip_layers=skip, prune_steps=prune_steps, restore_bn=restore_bn,
                  **(latency or {}),
                  channels=None if channels is None else str(channels))
    params = _checked(PruneParams, values)
    return {k: getattr(params, k) for k in values}


def _distill_values(train: dict, student: str, alpha: float, small_input: str, hint: str | None = None,
                    hint_student: str | None = None, hint_weight: float = 1.0) -> dict:
    from .params import DistillParams

    values = {**train, "student": student, "alpha": alpha, "small_input": small_input, "hint": hint or "",
              "hint_student": hint_student or "", "hint_weight": hint_weight}
    params = _checked(DistillParams, values)
    return {k: getattr(params, k) for k in values}


def _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize,
                 labels=None, val=None, val_labels=None, data=None):
    """DataParams from the preprocessing flags (strings such as "224", "240x320", "0.485,0.456,0.406")."""
    from .data import parse_preprocess_args
    from .params import DataParams

    pre = parse_preprocess_args(size=size, mean=mean, std=std, channel_order=channel_order,
                                value_range=value_range, resize=resize)
    def text(p):
        return None if p is None else str(p)

    return _checked(DataParams, dict(calib=text(calib), data=text(data), labels=text(labels), val=text(val),
                                     val_labels=text(val_labels), calib_samples=calib_samples,
                                     holdout=holdout, size=tuple(pre.size or ()),
                                     mean=pre.mean if "mean" in pre.stated else (),
                                     std=pre.std if "std" in pre.stated else (),
                                     channel_order=pre.channel_order,
                                     value_range=pre.value_range if "value_range" in pre.stated else (),
                                     resize=pre.resize))


def _checked(cls, values):
    from .errors import RecipeError

    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise RecipeError(str(exc)) from None


@app.command(cls=_Command, no_args_is_help=True)
def compress(
    model: Path = typer.Argument(..., help="ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="OUT.tflite",
                                          help="output .tflite; default: `MODEL_PRECISION.tflite` in the current "
                                               "folder, e.g. `mnist_int8.tflite` for `mnist.onnx --int8`, "
                                               "`mnist_fp32.tflite` without a precision flag. The report "
                                               "(`OUT.report.json`, `.md`, `.svg`) is written beside it"),
    int8: bool = typer.Option(False, "--int8", help="full-integer INT8 post-training quantization",
                              rich_help_panel=QNT),
    qat: bool = typer.Option(False, "--qat", help="quantization-aware training: fine-tune the model with "
                             "fake-quantized weights and activations on --data (the training flags), then convert "
                             "to full-integer INT8 (implies --int8); the report sets plain PTQ beside it",
                             rich_help_panel=QNT),
    fp16: bool = typer.Option(False, "--fp16", help="float16 weights", rich_help_panel=QNT),
    dynamic_range: bool = typer.Option(False, "--dynamic-range", help="int8 weights, float activations. "
                                       "At most one of --int8, --fp16, --dynamic-range; none: FP32",
                                       rich_help_panel=QNT),
    io_type: Literal["int8", "uint8", "float32"] = typer.Option("int8", "--io-type", help="type of the INT8 "
                                                                "model's inputs and outputs", rich_help_panel=QNT),
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="weight scales per output channel "
                                     "or one per tensor", rich_help_panel=QNT),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", metavar="F", help="accuracy budget "
                                                  "without labels: keep the most damaging ops in float until top-1 "
                                                  "agreement with FP32 on the held-back samples reaches F (e.g. "
                                                  "0.99; output cosine for a model without a classifier)",
                                                  rich_help_panel=QNT),
    auto_granularity: bool = typer.Option(False, "--auto-granularity", help="per layer, one weight scale instead "
                                          "of one per channel where the held-back output cosine stays within "
                                          "0.002 (top-1 agreement within 1 point) of all per-channel: smaller "
                                          "files for narrow and depthwise networks", rich_help_panel=QNT),
    ptq_repair: Optional[Literal["auto", "none"]] = typer.Option(
        None, "--ptq-repair", help="auto (the default of --int8): try cross-layer equalization, error-compensating "
        "weight rounding, bias correction and percentile/MSE activation ranges, and keep each that raises the "
        "output cosine with FP32 on the held-back samples (the report lists each one's effect); an accuracy "
        "budget then keeps ops in float from the repaired model; none: the converter's PTQ as it is",
        rich_help_panel=QNT),
    max_accuracy_drop: Optional[float] = typer.Option(None, "--max-accuracy-drop", metavar="POINTS",
                                                      help="accuracy budget with labels: keep the most damaging "
                                                      "ops in float until top-1 is at most POINTS below float "
                                                      "(e.g. 0.5)", rich_help_panel=QNT),
    calib: Optional[Path] = CALIB_OPT,
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of the --data samples "
                                          "(of --calib without --data): idx label file, .npy integers or an .npz "
                                          "holding `y` (class folders and an .npz with `y` carry their own); "
                                          "accuracy is then measured on the held-back split", rich_help_panel=ACC),
    val: Optional[Path] = typer.Option(None, "--val", metavar="DATA", help="evaluation data for accuracy "
                                       "(folder of class folders, .npy/.npz, idx), every sample read",
                                       rich_help_panel=ACC),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", metavar="FILE", help="labels of --val "
                                              "(idx, .npy, .npz `y`)", rich_help_panel=ACC),
    calib_samples: int = CALIB_SAMPLES_OPT, holdout: float = HOLDOUT_OPT, size: Optional[str] = SIZE_OPT,
    mean: Optional[str] = CALIB_MEAN_OPT, std: Optional[str] = CALIB_STD_OPT,
    channel_order: Literal["rgb", "bgr"] = CHANNEL_ORDER_OPT,
    resize: Literal["center-crop", "stretch"] = RESIZE_OPT, value_range: Optional[str] = VALUE_RANGE_OPT,
    input_shape: List[str] = INPUT_SHAPE_OPT,
    parity_tolerance: float = typer.Option(1e-4, "--parity-tolerance", help="max import error relative to each "
                                           "output's scale", rich_help_panel=IMP),
    parity_samples: int = typer.Option(4, "--parity-samples", help="inputs the parity check runs",
                                       rich_help_panel=IMP),
    latency_runs: int = typer.Option(50, "--latency-runs", help="timed runs per model (the report's latency, and "
                                     "--prune-latency's measurements)", rich_help_panel=REP),
    warmup_runs: int = typer.Option(5, "--warmup-runs", help="untimed runs before timing", rich_help_panel=REP),
    num_threads: int = typer.Option(1, "--num-threads", help="interpreter threads for latency", rich_help_panel=REP),
    delegates: bool = typer.Option(True, "--delegates/--no-delegates", help="delegate-compatibility analysis",
                                   rich_help_panel=REP),
    sensitivity: bool = SENSITIVITY_OPT,
    profile: bool = typer.Option(False, "--profile", help="print the seconds of each step (import, parity, "
                                 "conversions, calibration, fidelity, latency, ...) as a table; report.json "
                                 "always records them", rich_help_panel=REP),
    recipe_out: Optional[Path] = typer.Option(None, "--recipe-out", metavar="RECIPE.toml",
                                              help="also write the equivalent recipe (TOML)"),
    finetune: bool = typer.Option(False, "--finetune", help="fine-tune the imported model on --data before "
                                  "converting (training flags below)", rich_help_panel=TRN),
    data: Optional[Path] = DATA_OPT,
    epochs: int = EPOCHS_OPT, batch_size: int = BATCH_OPT, lr: float = LR_OPT,
    optimizer: Literal["adamw", "adam", "sgd"] = OPTIMIZER_OPT, momentum: float = MOMENTUM_OPT,
    weight_decay: float = WD_OPT, schedule: Literal["cosine", "constant"] = SCHEDULE_OPT,
    warmup_epochs: float = WARMUP_OPT, loss: Optional[str] = LOSS_OPT, temperature: float = TEMPERATURE_OPT,
    label_smoothing: float = SMOOTHING_OPT, augment: Optional[str] = AUGMENT_OPT, crop_padding: int = PADDING_OPT,
    val_split: float = VAL_SPLIT_OPT, patience: int = PATIENCE_OPT, seed: int = SEED_OPT,
    strategy: Literal["default", "mirrored", "multi-worker"] = STRATEGY_OPT,
    checkpoint_dir: Optional[Path] = CKPT_OPT, resume: bool = RESUME_OPT,
    save_keras: Optional[Path] = SAVE_KERAS_OPT,
    distill: Optional[str] = typer.Option(None, "--distill", metavar="STUDENT", help="distill the model into this "
                                          "student (`edgeopt students`) on --data, then go on with the student",
                                          rich_help_panel=DST),
    alpha: float = ALPHA_OPT, small_input: Literal["auto", "yes", "no"] = SMALL_INPUT_OPT,
    hint: Optional[str] = HINT_OPT, hint_student: Optional[str] = HINT_STUDENT_OPT,
    hint_weight: float = HINT_WEIGHT_OPT,
    prune_macs: float = PRUNE_MACS_OPT, prune_ratio: float = PRUNE_RATIO_OPT,
    importance: Literal["l1", "l2", "bn", "taylor"] = IMPORTANCE_OPT, round_to: int = ROUND_TO_OPT,
    max_layer_ratio: float = MAX_LAYER_OPT, skip_layers: Optional[str] = SKIP_LAYERS_OPT,
    prune_steps: int = PRUNE_STEPS_OPT, prune_latency: float = PRUNE_LATENCY_OPT,
    channels: Optional[Path] = CHANNELS_OPT, restore_bn: bool = RESTORE_BN_OPT,
    ssh: Optional[str] = SSH_OPT, ssh_user: Optional[str] = SSH_USER_OPT, ssh_port: int = SSH_PORT_OPT,
    identity: Optional[Path] = IDENTITY_OPT, known_hosts: Optional[Path] = KNOWN_HOSTS_OPT,
    remote_python: str = REMOTE_PYTHON_OPT, android: bool = ANDROID_OPT,
    benchmark_binary: Optional[Path] = BENCH_BINARY_OPT, adb: Optional[Path] = ADB_OPT,
    serial: Optional[str] = SERIAL_OPT,
):
    """Import, check, quantize and convert a model to `.tflite`, with a report beside it.

    Examples:

    * `edgeopt compress model.onnx` (FP32, writes `model_fp32.tflite`)

    * `edgeopt compress model.onnx --int8 --calib images/ --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225`

    * `edgeopt compress mnist.onnx --int8 --calib t10k-images-idx3-ubyte.gz --value-range 0,255 -o mnist_int8.tflite`

    * `edgeopt compress mnist.onnx --int8 --calib t10k-images-idx3-ubyte.gz --value-range 0,255 --val
    t10k-images-idx3-ubyte.gz --val-labels t10k-labels-idx1-ubyte.gz` (top-1 accuracy of the original, FP32 and
    INT8 on all 10,000 images; `--labels t10k-labels-idx1-ubyte.gz` instead of `--val`: on the held-back split)

    * `edgeopt compress cnn.onnx --finetune --data train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz
    --epochs 2 --int8` (fine-tune on labeled data, then quantize, calibrating on the training part of --data)

    * `edgeopt compress resnet.onnx --prune-macs 0.4 --data train/ --epochs 3 --int8` (remove channels until 40 %
    of the MACs are left, fine-tune, quantize)

    * `edgeopt compress resnet.onnx --prune-latency 0.5 --data train/ --epochs 3 --int8 --ssh pi@rpi.local` (until
    the INT8 model runs in half the time on the board)

    * `edgeopt compress model.onnx --qat --data train/ --epochs 2 --lr 1e-5` (quantization-aware training on the
    labeled folder, then INT8; the report compares it with plain PTQ)

    * `edgeopt compress teacher.onnx --distill mobilenet_v2_035 --data train/ --epochs 20 --int8` (train a
    MobileNetV2-0.35 to imitate the model, then quantize the student; the order is import, fine-tune, distill,
    prune, quantize)

    Exit codes: 0 done; 2 a problem with the input, data or flags; 3 the import does not match onnxruntime;
    4 the model was written but its report is incomplete (a measurement failed; the report says which); 5 no
    INT8 model meets --min-agreement or --max-accuracy-drop.
    """
    from .outputs import check_not_input, default_output
    from .params import ImportParams, ReportParams
    from .pipeline import StageCall

    chosen = [n for n, on in (("int8", int8 or qat), ("fp16", fp16), ("dynamic-range", dynamic_range)) if on]
    if len(chosen) > 1:
        raise typer.BadParameter("choose one of --int8 (or --qat), --fp16, --dynamic-range")
    if qat and (min_agreement is not None or max_accuracy_drop is not None or auto_granularity):
        raise typer.BadParameter("--qat trains every layer in INT8: --min-agreement, --max-accuracy-drop and "
                                 "--auto-granularity belong to post-training quantization (--int8 without --qat)")
    if qat and ptq_repair is not None:
        raise typer.BadParameter("--ptq-repair repairs post-training quantization; with --qat the ranges and "
                                 "weights are trained: give --int8 without --qat for it")
    if ptq_repair == "auto" and auto_granularity:
        raise typer.BadParameter("--ptq-repair auto is not combined with --auto-granularity, which measures the "
                                 "converter's per-channel PTQ as it is (drop --ptq-repair)")
    if ptq_repair is not None and not (int8 or qat):
        raise typer.BadParameter("--ptq-repair belongs to INT8 post-training quantization: give --int8")
    if qat and sensitivity:
        raise typer.BadParameter("--sensitivity analyses post-training quantization; with --qat the INT8 file is "
                                 "trained: give --int8 without --qat for the table")
    if qat and save_keras is not None:
        raise typer.BadParameter("--save-keras keeps a Keras model; with --qat the trained model is the INT8 "
                                 ".tflite (run --finetune or --distill with --save-keras first, then --qat)")
    if qat and not per_channel:
        raise typer.BadParameter("--qat uses per-channel conv weights (tensorflow-model-optimization's scheme): "
                                 "drop --per-tensor")
    precision = chosen[0] if chosen else "fp32"
    data_params = _data_params(calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize,
                               labels=labels, val=val, val_labels=val_labels, data=data)
    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape), parity_tolerance=parity_tolerance,
                                      parity_samples=parity_samples))
    rep = _checked(ReportParams, dict(latency_runs=latency_runs, warmup_runs=warmup_runs, num_threads=num_threads,
                                      delegates=delegates, sensitivity=sensitivity))
    if sensitivity and precision != "int8":
        raise typer.BadParameter("--sensitivity analyses INT8 quantization: give --int8")
    calls = [StageCall("import", {k: getattr(imp, k) for k in ("input_shape", "parity_tolerance", "parity_samples")})]
    train_raw = _train_dict(epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs,
                            loss, temperature, label_smoothing, augment, crop_padding, val_split, patience, seed,
                            strategy, checkpoint_dir, resume)
    if finetune:
        from .params import TrainParams

        params = _checked(TrainParams, train_raw)
        calls.append(StageCall("train.finetune", {k: getattr(params, k) for k in train_raw}))
    if (hint or hint_student) and not distill:
        raise typer.BadParameter("--hint and --hint-student belong to distillation: give --distill STUDENT")
    if distill:
        calls.append(StageCall("distill", _distill_values(train_raw, distill, alpha, small_input, hint, hint_student,
                                                               hint_weight)))
    if prune_macs or prune_ratio or prune_latency or channels:
        latency = _latency_values(prune_latency, "int8" if precision == "int8" else "fp32", num_threads, ssh,
                                  ssh_user, ssh_port, identity, known_hosts, remote_python, android,
                                  benchmark_binary, adb, serial, latency_runs)
        calls.append(StageCall("prune.structured", _prune_values(train_raw, prune_macs, prune_ratio, importance,
                                                                 round_to, max_layer_ratio, skip_layers,
                                                                 prune_steps, latency, channels, restore_bn)))
    if (min_agreement is not None or max_accuracy_drop is not None) and precision != "int8":
        raise typer.BadParameter("--min-agreement and --max-accuracy-drop are budgets of INT8: give --int8")
    if qat:
        from .params import QATParams

        params = _checked(QATParams, {**train_raw, "io_type": io_type})
        calls.append(StageCall("quantize.qat", {**{k: getattr(params, k) for k in train_raw}, "io_type": io_type}))
    elif precision == "int8":
        from .params import PTQParams

        ptq = _checked(PTQParams, dict(io_type=io_type, per_channel=per_channel, min_agreement=min_agreement,
                                       max_accuracy_drop=max_accuracy_drop, auto_granularity=auto_granularity,
                                       ptq_repair=ptq_repair or ("none" if auto_granularity else "auto")))
        values = {"io_type": ptq.io_type, "per_channel": ptq.per_channel, "ptq_repair": ptq.ptq_repair}
        if ptq.auto_granularity:
            values["auto_granularity"] = True
        values.update({k: getattr(ptq, k) for k in ("min_agreement", "max_accuracy_drop")
                       if getattr(ptq, k) is not None})
        calls.append(StageCall("quantize.ptq", values))
    else:
        calls.append(StageCall("convert.tflite", {"precision": precision}))
    out = output or default_output(model, precision)
    if recipe_out is not None:
        from .outputs import write_text
        from .recipe import dump_recipe

        check_not_input(recipe_out, model, suggestion=out.with_suffix(".toml"))
        write_text(recipe_out, dump_recipe(calls, data=data_params, report=rep))
    _run_and_print(model, calls, output=out, data=data_params, report=rep, profile=profile, save_keras=save_keras)


@app.command(cls=_Command, no_args_is_help=True)
def finetune(
    model: Path = typer.Argument(..., help="ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT.keras|OUT.tflite", help="the fine-tuned "
                                "model: `.keras`/`.h5` (Keras), or `.tflite` (FP32, with a report beside it)"),
    data: Path = typer.Option(..., "--data", metavar="DATA", help="training data: a folder with one subfolder per "
                              "class (class names sorted), an idx file or .npy/.npz (original layout); streamed "
                              "batch by batch", rich_help_panel=DAT),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of --data (idx, .npy, "
                                          ".npz `y`); without labels the original model's outputs are the targets",
                                          rich_help_panel=DAT),
    val: Optional[Path] = typer.Option(None, "--val", metavar="DATA", help="validation data (default: --val-split "
                                       "of --data)", rich_help_panel=DAT),
    val_labels: Optional[Path] = typer.Option(None, "--val-labels", metavar="FILE", help="labels of --val",
                                              rich_help_panel=DAT),
    calib: Optional[Path] = typer.Option(None, "--calib", metavar="DATA", help="samples for the import parity "
                                         "check and the report (default: a seeded pick of --data's training part)",
                                         rich_help_panel=PRE),
    calib_samples: int = typer.Option(256, "--calib-samples", help="samples for parity and the report",
                                      rich_help_panel=PRE),
    size: Optional[str] = typer.Option(None, "--size", metavar="H[,W]", help="resize images to H or H,W",
                                       rich_help_panel=PRE),
    mean: Optional[str] = typer.Option(None, "--mean", metavar="M[,M,M]", help="per-channel mean (default 0)",
                                       rich_help_panel=PRE),
    std: Optional[str] = typer.Option(None, "--std", metavar="S[,S,S]", help="per-channel std (default 1)",
                                      rich_help_panel=PRE),
    channel_order: Literal["rgb", "bgr"] = typer.Option("rgb", "--channel-order", help="channel order the model "
                                                        "expects", rich_help_panel=PRE),
    resize: Literal["center-crop", "stretch"] = typer.Option("center-crop", "--resize", help="center-crop or "
                                                             "stretch", rich_help_panel=PRE),
    value_range: Optional[str] = typer.Option(None, "--value-range", metavar="LO,HI", help="map pixels 0..255 "
                                              "onto LO,HI (default 0,1)", rich_help_panel=PRE),
    input_shape: List[str] = typer.Option([], "--input-shape", metavar="NAME:DIMS", help="fix dynamic dims, e.g. "
                                          "`input:1,3,224,224`", rich_help_panel=IMP),
    epochs: int = EPOCHS_OPT, batch_size: int = BATCH_OPT, lr: float = LR_OPT,
    optimizer: Literal["adamw", "adam", "sgd"] = OPTIMIZER_OPT, momentum: float = MOMENTUM_OPT,
    weight_decay: float = WD_OPT, schedule: Literal["cosine", "constant"] = SCHEDULE_OPT,
    warmup_epochs: float = WARMUP_OPT, loss: Optional[str] = LOSS_OPT, temperature: float = TEMPERATURE_OPT,
    label_smoothing: float = SMOOTHING_OPT, augment: Optional[str] = AUGMENT_OPT, crop_padding: int = PADDING_OPT,
    val_split: float = VAL_SPLIT_OPT, patience: int = PATIENCE_OPT, seed: int = SEED_OPT,
    strategy: Literal["default", "mirrored", "multi-worker"] = STRATEGY_OPT,
    checkpoint_dir: Optional[Path] = CKPT_OPT, resume: bool = RESUME_OPT,
    save_keras: Optional[Path] = SAVE_KERAS_OPT,
    profile: bool = typer.Option(False, "--profile", help="print the seconds of each step", rich_help_panel=REP),
):
    """Fine-tune a model on labeled data (or on its own outputs) before compressing it.

    Examples:

    * `edgeopt finetune cnn.onnx --data train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz --epochs 2
    -o cnn_tuned.keras` (10 % of --data validates; `--val DATA --val-labels FILE` to use other data)

    * `edgeopt finetune net.onnx --data photos/ --epochs 5 --augment crop,flip --mean 0.485,0.456,0.406 --std
    0.229,0.224,0.225 -o net.tflite` (class folders carry the labels; a report beside `net.tflite`)

    * `edgeopt finetune net.onnx --data unlabeled/ --epochs 3 -o net.keras` (no labels: the original model's
    outputs are the targets)

    * the same command with `--resume` continues an interrupted run; with `--strategy multi-worker` and a
    `TF_CONFIG` per machine it trains on several machines (docs/distributed.md)
    """
    from .params import ImportParams, ReportParams
    from .pipeline import StageCall

    data_params = _data_params(calib, calib_samples, 0.2, size, mean, std, channel_order, value_range, resize,
                               labels=labels, val=val, val_labels=val_labels, data=data)
    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape)))
    calls = [StageCall("import", {"input_shape": imp.input_shape}),
             StageCall("train.finetune", _train_values(
                 epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs, loss,
                 temperature, label_smoothing, augment, crop_padding, val_split, patience, seed, strategy,
                 checkpoint_dir, resume))]
    if output.suffix.lower() == ".tflite":
        calls.append(StageCall("convert.tflite", {"precision": "fp32"}))
    _run_and_print(model, calls, output=output, data=data_params, report=ReportParams(), profile=profile,
                   save_keras=save_keras)


@app.command(cls=_Command, no_args_is_help=True)
def prune(
    model: Path = typer.Argument(..., help="ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT.keras|OUT.tflite", help="the pruned model: "
                                "`.keras`/`.h5`, or `.tflite` (FP32, with a report beside it)"),
    prune_macs: float = PRUNE_MACS_OPT, prune_ratio: float = PRUNE_RATIO_OPT,
    importance: Literal["l1", "l2", "bn", "taylor"] = IMPORTANCE_OPT, round_to: int = ROUND_TO_OPT,
    max_layer_ratio: float = MAX_LAYER_OPT, skip_layers: Optional[str] = SKIP_LAYERS_OPT,
    prune_steps: int = PRUNE_STEPS_OPT, prune_latency: float = PRUNE_LATENCY_OPT,
    channels: Optional[Path] = CHANNELS_OPT, restore_bn: bool = RESTORE_BN_OPT,
    latency_precision: Literal["int8", "fp32"] = typer.Option("int8", "--latency-precision", help="the conversion "
                                                              "--prune-latency is measured on", rich_help_panel=LAT),
    num_threads: int = typer.Option(1, "--num-threads", help="interpreter threads for the latency measurements",
                                    rich_help_panel=LAT),
    ssh: Optional[str] = SSH_OPT, ssh_user: Optional[str] = SSH_USER_OPT, ssh_port: int = SSH_PORT_OPT,
    identity: Optional[Path] = IDENTITY_OPT, known_hosts: Optional[Path] = KNOWN_HOSTS_OPT,
    remote_python: str = REMOTE_PYTHON_OPT, android: bool = ANDROID_OPT,
    benchmark_binary: Optional[Path] = BENCH_BINARY_OPT, adb: Optional[Path] = ADB_OPT,
    serial: Optional[str] = SERIAL_OPT,
    data: Optional[Path] = typer.Option(None, "--data", metavar="DATA", help="fine-tuning data (class folders, "
                                        "idx, .npy/.npz); without it the model is pruned by importance alone and "
                                        "not fine-tuned", rich_help_panel=DAT),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of --data; without "
                                          "labels the original model's outputs are the targets",
                                          rich_help_panel=DAT),
    val: Optional[Path] = VAL_OPT, val_labels: Optional[Path] = VAL_LABELS_OPT,
    calib: Optional[Path] = TRAIN_CALIB_OPT, value_range: Optional[str] = VALUE_RANGE_OPT,
    mean: Optional[str] = MEAN_OPT, std: Optional[str] = STD_OPT, input_shape: List[str] = INPUT_SHAPE_OPT,
    epochs: int = typer.Option(1, "--epochs", help="fine-tuning epochs after each pruning step (0: none)",
                               rich_help_panel=TRN),
    batch_size: int = BATCH_OPT, lr: float = LR_OPT, optimizer: Literal["adamw", "adam", "sgd"] = OPTIMIZER_OPT,
    loss: Optional[str] = LOSS_OPT, val_split: float = VAL_SPLIT_OPT, seed: int = SEED_OPT,
    strategy: Literal["default", "mirrored", "multi-worker"] = STRATEGY_OPT,
    checkpoint_dir: Optional[Path] = CKPT_OPT, resume: bool = RESUME_OPT,
    save_keras: Optional[Path] = SAVE_KERAS_OPT,
):
    """Remove whole channels (filters) so that the network really shrinks, then fine-tune it.

    Examples:

    * `edgeopt prune resnet.onnx --prune-macs 0.4 --data train-images-idx3-ubyte.gz --labels
    train-labels-idx1-ubyte.gz --epochs 3 -o resnet_pruned.keras`

    * `edgeopt prune net.onnx --prune-ratio 0.5 -o net_pruned.tflite` (no data: importance alone, no fine-tuning;
    the report says what that costs)

    * `edgeopt prune resnet.onnx --prune-latency 0.5 --data train/ -o resnet_pruned.keras` (until the INT8 model
    takes half the time on this host; `--ssh HOST` or `--android --benchmark-binary B` for a board or a phone)

    * `edgeopt prune resnet.onnx --channels resnet_pruned.report.json --data train/ -o again.keras` (the same
    channels as an earlier run with `-o resnet_pruned.tflite`, whose report.json records
    them)

    More training flags (schedule, augmentation, ...) are in `edgeopt compress --help`.
    """
    from .params import ReportParams
    from .pipeline import StageCall

    data_params = _data_params(calib, 256, 0.2, None, mean, std, "rgb", value_range, "center-crop", labels=labels,
                               val=val, val_labels=val_labels, data=data)
    train = _train_dict(epochs, batch_size, lr, optimizer, 0.9, 0.0, "cosine", 0.0, loss, 4.0, 0.0, None, 4,
                        val_split, 0, seed, strategy, checkpoint_dir, resume)
    latency = _latency_values(prune_latency, latency_precision, num_threads, ssh, ssh_user, ssh_port, identity,
                              known_hosts, remote_python, android, benchmark_binary, adb, serial)
    values = _prune_values(train, prune_macs, prune_ratio, importance, round_to, max_layer_ratio, skip_layers,
                           prune_steps, latency, channels, restore_bn)
    from .params import ImportParams

    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape)))
    calls = [StageCall("import", {"input_shape": imp.input_shape}), StageCall("prune.structured", values)]
    if output.suffix.lower() == ".tflite":
        calls.append(StageCall("convert.tflite", {"precision": "fp32"}))
    _run_and_print(model, calls, output=output, data=data_params, report=ReportParams(), profile=False,
                   save_keras=save_keras)


@app.command(cls=_Command, no_args_is_help=True)
def distill(
    model: Path = typer.Argument(..., help="the teacher: ONNX file, tf_keras .h5/.keras file or SavedModel folder"),
    student: str = typer.Option(..., "--student", metavar="NAME", help="the student architecture (`edgeopt "
                                "students` lists them with params and MACs)", rich_help_panel=DST),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT.keras|OUT.tflite", help="the trained student: "
                                "`.keras`/`.h5`, or `.tflite` (FP32, with a report beside it)"),
    alpha: float = ALPHA_OPT, temperature: float = TEMPERATURE_OPT,
    small_input: Literal["auto", "yes", "no"] = SMALL_INPUT_OPT, hint: Optional[str] = HINT_OPT,
    hint_student: Optional[str] = HINT_STUDENT_OPT, hint_weight: float = HINT_WEIGHT_OPT,
    data: Path = typer.Option(..., "--data", metavar="DATA", help="training data (class folders, idx, .npy/.npz)",
                              rich_help_panel=DAT),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of --data; without labels "
                                          "the student learns the teacher's outputs alone", rich_help_panel=DAT),
    val: Optional[Path] = VAL_OPT, val_labels: Optional[Path] = VAL_LABELS_OPT,
    calib: Optional[Path] = TRAIN_CALIB_OPT, value_range: Optional[str] = VALUE_RANGE_OPT,
    mean: Optional[str] = MEAN_OPT, std: Optional[str] = STD_OPT, input_shape: List[str] = INPUT_SHAPE_OPT,
    epochs: int = EPOCHS_OPT, batch_size: int = BATCH_OPT, lr: float = LR_OPT,
    optimizer: Literal["adamw", "adam", "sgd"] = OPTIMIZER_OPT, momentum: float = MOMENTUM_OPT,
    weight_decay: float = WD_OPT, schedule: Literal["cosine", "constant"] = SCHEDULE_OPT,
    warmup_epochs: float = WARMUP_OPT, label_smoothing: float = SMOOTHING_OPT,
    augment: Optional[str] = AUGMENT_OPT, crop_padding: int = PADDING_OPT, val_split: float = VAL_SPLIT_OPT,
    patience: int = PATIENCE_OPT, seed: int = SEED_OPT,
    strategy: Literal["default", "mirrored", "multi-worker"] = STRATEGY_OPT,
    checkpoint_dir: Optional[Path] = CKPT_OPT, resume: bool = RESUME_OPT,
):
    """Train a small mobile student to imitate a model (knowledge distillation).

    Examples:

    * `edgeopt distill resnet.onnx --student shufflenet_v2_x0_5 --data train-images-idx3-ubyte.gz --labels
    train-labels-idx1-ubyte.gz --epochs 20 --lr 3e-3 --augment crop,flip -o student.keras`

    * `edgeopt distill resnet.onnx --student mobilenet_v2_035 --data photos/ -o student.tflite` (no labels: the
    teacher's outputs are the only targets)

    * `edgeopt compress resnet.onnx --distill mobilenet_v2_035 --data train/ --int8` (distill, then INT8)

    * `edgeopt distill resnet.onnx --student mobilenet_v2_035 --hint /layers/layers.3/relu_1/Relu --data train/
    --labels labels.txt -o student.keras` (the student also learns that teacher layer's feature map)
    """
    from .params import ImportParams, ReportParams
    from .pipeline import StageCall

    data_params = _data_params(calib, 256, 0.2, None, mean, std, "rgb", value_range, "center-crop", labels=labels,
                               val=val, val_labels=val_labels, data=data)
    train = _train_dict(epochs, batch_size, lr, optimizer, momentum, weight_decay, schedule, warmup_epochs, None,
                        temperature, label_smoothing, augment, crop_padding, val_split, patience, seed, strategy,
                        checkpoint_dir, resume)
    imp = _checked(ImportParams, dict(input_shape=tuple(input_shape)))
    calls = [StageCall("import", {"input_shape": imp.input_shape}),
             StageCall("distill", _distill_values(train, student, alpha, small_input, hint, hint_student,
                                                         hint_weight))]
    if output.suffix.lower() == ".tflite":
        calls.append(StageCall("convert.tflite", {"precision": "fp32"}))
    _run_and_print(model, calls, output=output, data=data_params, report=ReportParams(), profile=False)


@app.command("run", cls=_Command, no_args_is_help=True)
def run_recipe(
    recipe: Path = typer.Argument(..., help="recipe TOML file ([[stage]] tables)"),
    model: Path = typer.Argument(..., help="model to run it on"),
    output: Path = typer.Option(..., "-o", "--output", metavar="OUT", help="output .tflite (or .keras for "
                                "import-only recipes)"),
    calib: Optional[Path] = typer.Option(None, "--calib", metavar="DATA", help="calibration data (overrides the "
                                         "recipe's [data])"),
    data: Optional[Path] = typer.Option(None, "--data", metavar="DATA", help="training data, for recipes with a "
                                        "training stage (overrides the recipe's [data])"),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="FILE", help="labels of --data (overrides the "
                                          "recipe's [data])"),
    profile: bool = typer.Option(False, "--profile", help="print the seconds of each step as a table"),
):
    """Run a recipe on a model.

    Example: `edgeopt run recipes/int8_ptq.toml model.onnx --calib images/ -o model_int8.tflite`
    """
    from .recipe import load_recipe

    def text(p):
        return None if p is None else str(p)

    r = load_recipe(recipe)
    data_params = r.data_params(calib=text(calib), data=text(data), labels=text(labels))
    _run_and_print(model, r.calls, output=output, data=data_params, report=r.report_params(), profile=profile)


def _run_and_print(model: Path, calls, *, output: Path, data, report, profile: bool, save_keras=None) -> None:
    """Run the pipeline and print its tables; a run whose report is incomplete still prints what there is and
    the files written, then ends with the error (exit code 4)."""
    from .errors import ReportIncompleteError
    from .pipeline import run

    try:
        result = run(model, calls, output=output, data=data, report=report, save_keras=save_keras)
    except ReportIncompleteError as exc:
        if exc.result is not None:
            _print_result(exc.result, profile=profile)
        raise
    _print_result(result, profile=profile)


def _print_result(result, *, profile: bool = False) -> None:
    from rich.console import Console

    from .report import accuracy_rows, fidelity_rows, profile_rows, pruning_summary, summary_rows, training_rows

    con = Console()
    rep = result.report
    training = result.training
    if result.pruning:
        con.print(f"pruned: {pruning_summary(result.pruning)}", markup=False)
    if training:
        t = training
        con.print(_table(f"{t['title']}: {t['objective']}, {t['optimizer']}, global batch {t['global_batch']}, "
                         f"{t['strategy']['replicas']} replica(s) on {t['strategy']['workers']} worker(s)",
                         training_rows(t)))
    if rep is not None and rep["models"]:
        con.print(_table("edgeopt: FP32 vs " + rep["precision"], summary_rows(rep)))
    if rep is not None and rep["fidelity"]:
        con.print(_table(f"fidelity on {rep['evaluation_data']['heldback_samples']} held-back samples",
                         fidelity_rows(rep)))
    if rep is not None and rep.get("accuracy") and rep["accuracy"]["models"]:
        acc = rep["accuracy"]
        where = "--val" if acc["data"]["split"] == "val" else "held-back"
        con.print(_table(f"accuracy on {acc['data']['samples']} labeled {where} samples, output "
                         f"{acc['output']['name']}", accuracy_rows(rep)))
    if rep is not None:
        _print_quantization_choices(con, rep)
    if profile and result.profile is not None:
        con.print(_table("where the time went (seconds)", profile_rows(result.profile)))
    if result.output is None:  # another worker of a multi-worker run: the chief writes the files
        con.print(f"{training['worker'] if training else 'this worker'}: done, weights sha256 "
                  f"{training['weights_sha256'] if training else '?'}; the chief writes the output", markup=False)
        return
    if training:
        con.print(f"weights sha256 {training['weights_sha256']}", markup=False)
    con.print(f"wrote {result.output}" + "".join(f"\nwrote {p}" for p in result.report_paths), markup=False)


def _table(title: str, rows):
    """A rich table from rows whose first row is the header; the first column left-aligned, the others right."""
    from rich.table import Table

    t = Table(title=title)
    for i, h in enumerate(rows[0]):
        t.add_column(h or "", justify="left" if i == 0 else "right")
    for r in rows[1:]:
        t.add_row(*r)
    return t


@app.command(cls=_Command)
def stages():
    """List every stage, with the recipe keys it accepts and the `compress` flags that set them."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .params import DataParams, ReportParams
    from .registry import StageSpec, all_stages, field_info

    con = Console()
    flags = compress_flags()
    extra = [StageSpec("[data]", DataParams, None, DataParams.__doc__),
             StageSpec("[report]", ReportParams, None, ReportParams.__doc__)]
    for spec in all_stages() + extra:
        t = Table(title=escape(f"{spec.name}: {spec.doc}"), title_justify="left")
        for col in ("key", "type", "default", "compress flag", "meaning"):
            t.add_column(col)
        for name, typ, default, help_ in field_info(spec.params):
            t.add_row(name, typ, repr(default), flags.get(name, "(recipe only)"), help_)
        con.print(t)


@app.command(cls=_Command)
def students(
    teacher: Optional[Path] = typer.Option(None, "--teacher", metavar="MODEL", help="size the students for this "
                                           "model's input and classes, and show their MACs against its own"),
    input_size: Optional[str] = typer.Option(None, "--input-size", metavar="H,W,C", help="input size without a "
                                             "teacher (default 224,224,3)"),
    classes: Optional[int] = typer.Option(None, "--classes", help="classes without a teacher (default 1000)"),
):
    """List the distillation students with their params and MACs at the teacher's input size.

    Examples: `edgeopt students` (224x224x3, 1000 classes, beside each paper's figures), `edgeopt students
    --teacher resnet.onnx`, `edgeopt students --input-size 28,28,1 --classes 10`
    """
    from rich.console import Console

    from .console import status
    from .distillation.students import summaries
    from .errors import RecipeError

    teacher_macs = None
    if teacher is not None:
        if input_size or classes:
            raise RecipeError("--teacher gives the input size and classes; drop --input-size/--classes")
        from .distillation.teacher import teacher_shape

        with status(f"loading {teacher.name}"):
            shape, n, teacher_macs = teacher_shape(teacher)
    else:
        try:
            shape = tuple(int(v) for v in (input_size or "224,224,3").split(","))
        except ValueError:
            raise RecipeError(f"--input-size {input_size!r}: expected H,W,C such as 28,28,1") from None
        if len(shape) != 3:
            raise RecipeError(f"--input-size {input_size!r}: expected H,W,C such as 28,28,1")
        n = classes or 1000
    with status("building the students"):
        rows = summaries(shape, n)
    # learned parameters (BatchNorm's moving statistics not counted), as the papers count them
    header = ["student", "params", "MACs"] + (["MACs vs teacher"] if teacher_macs else [])
    paper = shape == (224, 224, 3) and n == 1000
    header += ["paper params", "paper MACs"] if paper else []
    table = [header]
    for r in rows:
        row = [r["name"], f"{r['trainable_params']:,}", f"{r['macs']:,}"]
        row += [f"{100 * r['macs'] / teacher_macs:.1f} %"] if teacher_macs else []
        row += [f"{r['paper_params'] / 1e6:.2f} M", f"{r['paper_macs'] / 1e6:.0f} M"] if paper else []
        table.append(row)
    title = f"students at {'x'.join(map(str, shape))}, {n} classes" + (f" (teacher: {teacher_macs:,} MACs)"
                                                                        if teacher_macs else "")
    Console().print(_table(title, table))


def compress_flags() -> dict[str, str]:
    """Recipe key → the `compress` flag(s) that set it, read from the `compress` command itself, so `stages`
    never names a flag that does not exist.

    >>> compress_flags()["per_channel"], compress_flags()["precision"]
    ('--per-channel / --per-tensor', '--fp16 | --dynamic-range (neither: fp32)')
    """
    import typer.main

    from .params import ConvertParams
    from .registry import field_info

    command = typer.main.get_command(app).commands["compress"]
    flags = {}
    for param in command.params:
        names = [o for o in param.opts if o.startswith("--")] + list(param.secondary_opts)
        if names and param.name:
            flags[param.name] = " / ".join(names)
    choices = next(t for n, t, _, _ in field_info(ConvertParams) if n == "precision").split("|")
    given = [f"--{c}" for c in choices if f"--{c}" in flags.values()]
    unflagged = [c for c in choices if f"--{c}" not in flags.values()]
    flags["precision"] = " | ".join(given) + (f" (neither: {', '.join(unflagged)})" if unflagged else "")
    # the latency target is measured as the report's latency is: the same threads and runs, and the output's
    # precision
    flags["latency_threads"] = flags["num_threads"]
    flags["student"] = flags["distill"]
    flags["latency_precision"] = "--int8 (int8; otherwise fp32)"
    return flags


@app.command(cls=_Command, no_args_is_help=True)
def inspect(
    model: Path = typer.Argument(..., help=".onnx, .tflite, tf_keras .keras/.h5 file or SavedModel folder"),
    delegates: bool = typer.Option(False, "--delegates", help="which ops GPU/NNAPI/Edge TPU/Hexagon/Core ML run "
                                   "(.tflite files)"),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="also write the summary as JSON"),
    sensitivity: bool = typer.Option(False, "--sensitivity", help="per-op INT8 sensitivity of an .onnx or Keras "
                                     "model, calibrated on --calib and measured on its held-back part"),
    calib: Optional[Path] = CALIB_OPT, calib_samples: int = CALIB_SAMPLES_OPT, holdout: float = HOLDOUT_OPT,
    size: Optional[str] = SIZE_OPT, mean: Optional[str] = CALIB_MEAN_OPT, std: Optional[str] = CALIB_STD_OPT,
    channel_order: Literal["rgb", "bgr"] = CHANNEL_ORDER_OPT,
    resize: Literal["center-crop", "stretch"] = RESIZE_OPT, value_range: Optional[str] = VALUE_RANGE_OPT,
    input_shape: List[str] = INPUT_SHAPE_OPT,
    per_channel: bool = typer.Option(True, "--per-channel/--per-tensor", help="weight scales of the analysed INT8 "
                                     "model (--sensitivity)"),
):
    """Show inputs/outputs, op histogram (layers of a Keras file), params, MACs and tensor quantization of a model;
    with --sensitivity, which ops cost the INT8 model its fidelity.

    Examples: `edgeopt inspect model_int8.tflite --delegates`, `edgeopt inspect model.keras`,
    `edgeopt inspect --sensitivity squeezenet.onnx --calib photos/ --channel-order bgr --value-range 0,255
    --mean 104,117,123 --json sensitivity.json`
    """
    import json

    from rich.console import Console

    from .analyze.keras_file import is_keras_file
    from .artifact import jsonable
    from .errors import RecipeError

    if delegates and model.suffix.lower() != ".tflite":
        raise RecipeError("--delegates analyses .tflite files", hint=f"compress first: edgeopt compress {model}")
    if sensitivity:
        from .params import ImportParams

        if model.suffix.lower() == ".tflite":
            raise RecipeError("--sensitivity analyses the float model (.onnx or Keras) before quantization",
                              hint=f"give the model {model.stem} was converted from")
        if calib is None:
            raise RecipeError("--sensitivity needs real inputs to calibrate on and measure with",
                              hint="give --calib DATA (and its preprocessing: --mean, --std, --value-range)")
        _inspect_sensitivity(model, json_out, per_channel, _data_params(
            calib, calib_samples, holdout, size, mean, std, channel_order, value_range, resize),
                             _checked(ImportParams, dict(input_shape=tuple(input_shape))))
        return
    if is_keras_file(model):
        from .analyze.keras_file import render_keras, summarize_keras
        from .console import status

        with status(f"loading {model.name}"):
            summary = summarize_keras(model)
        rendered, dele = render_keras(summary), None
    else:
        from .analyze.delegates import analyze_delegates
        from .analyze.render import render_inspect, summarize

        summary = summarize(model)
        dele = analyze_delegates(model) if delegates else None
        rendered = render_inspect(summary, delegates=dele)
    Console().print(rendered)
    if json_out is not None:
        from .outputs import write_text

        doc = {"summary": summary, "delegates": dele}
        write_text(json_out, json.dumps(jsonable(doc), indent=2) + "\n")


def _print_quantization_choices(con, rep: dict) -> None:
    """The accuracy budget's, the PTQ repair's and the granularity's outcome in a line each, the most damaging ops
    as a table."""
    from .quantization.budget import Budget
    from .report import sensitivity_layer, sensitivity_rows

    b = rep.get("budget")
    if b:
        budget = Budget(b["metric"], b["target"])
        kept = ", ".join(sensitivity_layer(op) for op in b["float_ops"]) or "none"
        con.print(f"accuracy budget met: {budget.describe(b['value'])} (every op INT8: "
                  f"{budget.describe(b['all_int8'])}) with {len(b['float_ops'])} of {b['ops_total']} ops in float: "
                  f"{kept}", markup=False)
    r = rep.get("ptq_repair")
    if r:
        kept = ", ".join(r["kept"]) or "none helped"
        con.print(f"PTQ repair: output cosine with FP32 {r['plain']['cosine']:.5f} → {r['final']['cosine']:.5f} on "
                  f"{r['measured_on']} (kept: {kept})", markup=False)
    g = rep.get("granularity")
    if g:
        con.print(f"weight granularity: {g['per_tensor']} of {g['layers_total']} layers per-tensor, "
                  f"{g['size_per_channel']:,} → {g['size']:,} bytes, output cosine {g['cosine_per_channel']:.5f} → "
                  f"{g['cosine']:.5f}", markup=False)
    sens = rep.get("sensitivity")
    if sens and sens.get("layers"):
        rows = sensitivity_rows(sens)
        shown = min(10, len(rows) - 1)
        con.print(_table(f"INT8 sensitivity: the {shown} most damaging of {len(rows) - 1} ops (all in the "
                         "report)", rows[:shown + 1]))


def _inspect_sensitivity(model: Path, json_out: Optional[Path], per_channel: bool, data, imp) -> None:
    """import → INT8 (not written) with the report's sensitivity table, printed (and written as JSON)."""
    import json

    from rich.console import Console

    from .artifact import jsonable
    from .params import ReportParams
    from .pipeline import StageCall, run
    from .report import sensitivity_rows

    calls = [StageCall("import", {"input_shape": imp.input_shape}),
             StageCall("quantize.ptq", {"io_type": "float32", "per_channel": per_channel})]
    result = run(model, calls, output=None, data=data, quiet=False,
                 report=ReportParams(latency_runs=1, warmup_runs=0, delegates=False, sensitivity=True))
    rep = result.report
    from .errors import EdgeoptError

    failed = [i for i in rep["incomplete"] if i["step"] == "sensitivity"]
    if failed:
        raise EdgeoptError(f"the sensitivity analysis failed: {failed[0]['error']}")
    sens = rep["sensitivity"]
    base = sens["all_int8"]
    if base is None:
        raise EdgeoptError(f"{model.name}: its INT8 model has no quantized op to analyse")
    title = (f"INT8 sensitivity of {model.name} per op, most damaging first ({sens['samples']} held-back samples; "
             f"every op in INT8: cosine {base['cosine']:.5f}"
             + ("" if base.get("top1_agreement") is None else f", top-1 agreement {100 * base['top1_agreement']:.2f} %")
             + ")")
    Console().print(_table(title, sensitivity_rows(sens)))
    if json_out is not None:
        from .outputs import write_text

        write_text(json_out, json.dumps(jsonable({"sensitivity": sens, "fidelity": rep["fidelity"]}), indent=2)
                   + "\n")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def bench(ctx: typer.Context):
    """Measure a `.tflite` on this host, a phone (adb) or a board (ssh); `edgeopt bench --help` for flags.

    Example: `edgeopt bench model_int8.tflite --num-threads 1 --num-runs 100 --json latency.json`
    """
    from device_bench.cli import run
    from device_bench.runner import BenchError

    from .console import status
    from .errors import DeviceError

    try:
        code = run(list(ctx.args), busy=status)
    except BenchError as exc:
        raise DeviceError(exc.message, hint=exc.hint) from None
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except EdgeoptError as exc:
        from .console import err_console

        from rich.markup import escape

        # soft_wrap: an error line stays one line in logs, whatever the terminal width
        err_console().print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            err_console().print(f"  hint: {exc.hint}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
