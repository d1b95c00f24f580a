"""int8 full-integer TFLite export, int8 inference with LiteRT, and invoke timing."""

from __future__ import annotations

import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REPRESENTATIVE_WINDOWS = 400
TIMING_RUNS = 300
TIMING_WARMUP = 20


def convert_int8(model, representative: np.ndarray, seed: int = 0) -> bytes:
    """Full-integer int8 flatbuffer of a Keras model, calibrated on representative windows."""
    import tensorflow as tf

    chosen = _calibration_subset(representative, seed)

    def configure(converter) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([window[None, ..., None].astype(np.float32)] for window in chosen)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8

    return _convert(model, configure)


def convert_float(model) -> bytes:
    """Float32 flatbuffer of a Keras model (for the size comparison)."""
    return _convert(model, None)


def _convert(model, configure) -> bytes:
    """Save the model with a batch-of-one signature and convert it, configure(converter) first."""
    import tensorflow as tf

    from keras.export import ExportArchive

    frames, n_features = model.input_shape[1:3]
    archive = ExportArchive()
    archive.track(model)
    spec = tf.TensorSpec([1, frames, n_features, 1], tf.float32)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
    with tempfile.TemporaryDirectory() as folder:
        archive.write_out(folder, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if configure is not None:
            configure(converter)
        return converter.convert()


def _calibration_subset(windows: np.ndarray, seed: int) -> np.ndarray:
    """Up to REPRESENTATIVE_WINDOWS windows drawn without replacement."""
    rng = np.random.default_rng(seed)
    count = min(REPRESENTATIVE_WINDOWS, len(windows))
    return windows[np.sort(rng.choice(len(windows), size=count, replace=False))]


def interpreter(model_bytes: bytes):
    """A one-thread LiteRT interpreter for a flatbuffer, tensors allocated."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes, num_threads=1)
    runner.allocate_tensors()
    return runner


def tflite_logits(model_bytes: bytes, windows: np.ndarray) -> np.ndarray:
    """Logits of (n, frames, bands) windows, quantised and dequantised with the tensors' own params."""
    runner = interpreter(model_bytes)
    source = runner.get_input_details()[0]
    target = runner.get_output_details()[0]
    out = np.zeros((len(windows), target["shape"][-1]), dtype=np.float32)
    for i, window in enumerate(windows):
        runner.set_tensor(source["index"], quantise(window.reshape(source["shape"]), source))
        runner.invoke()
        out[i] = dequantise(runner.get_tensor(target["index"]), target).reshape(-1)
    return out


def quantise(values: np.ndarray, detail: dict) -> np.ndarray:
    """Float values to the tensor's dtype with its scale and zero point."""
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def dequantise(values: np.ndarray, detail: dict) -> np.ndarray:
    """Tensor values back to float with its scale and zero point."""
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def invoke_ms(model_bytes: bytes, window: np.ndarray) -> dict:
    """Median and p95 invoke time in ms over TIMING_RUNS one-thread runs."""
    runner = interpreter(model_bytes)
    source = runner.get_input_details()[0]
    runner.set_tensor(source["index"], quantise(window.reshape(source["shape"]), source))
    for _ in range(TIMING_WARMUP):
        runner.invoke()
    times_ms = []
    for _ in range(TIMING_RUNS):
        start = time.perf_counter()
        runner.invoke()
        times_ms.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": float(np.median(times_ms)), "p95_ms": float(np.percentile(times_ms, 95)), "runs": TIMING_RUNS, "cpu": host_cpu()}


INT8_ISA_FLAGS = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "asimd")  # widest first


def host_cpu() -> str:
    """The CPU's model name and its widest int8 instruction set: invoke times depend on both."""
    model_name, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model_name == platform.machine():
                model_name = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    isa = next((flag for flag in INT8_ISA_FLAGS if flag in flags), "")
    return "%s (%s)" % (model_name, isa) if isa else model_name


def io_details(model_bytes: bytes) -> dict:
    """Input/output shapes and dtypes, for the card and checks."""
    runner = interpreter(model_bytes)
    source, target = runner.get_input_details()[0], runner.get_output_details()[0]
    return {
        "input_shape": [int(v) for v in source["shape"]],
        "input_dtype": np.dtype(source["dtype"]).name,
        "output_shape": [int(v) for v in target["shape"]],
        "output_dtype": np.dtype(target["dtype"]).name,
    }


def write(model_bytes: bytes, path: Path) -> int:
    """Write the flatbuffer; returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_bytes)
    log.info("wrote %s (%d bytes)", path, len(model_bytes))
    return len(model_bytes)
