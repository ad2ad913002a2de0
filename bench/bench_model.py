"""Benchmark the driving policy on one CPU thread against ncps and nn.LSTM in one run.

Measures, with ``torch.set_num_threads(1)`` and batch 1 unless stated:

* one streaming controller step (CfC and LTC on AutoNCP(19, 1) with 32 sensory inputs)
  for liquid_driver (compiled kernels, and its PyTorch reference path) and ncps 1.0.1;
* a 16-step forward and backward pass of the controller alone for batch 32, against
  ncps and an ``nn.LSTM`` with the same hidden size (19);
* the whole perception step: CNN at 48 x 128 px plus the controller, p50 and p99, in
  PyTorch and, when onnxruntime is installed, through the exported ONNX model;
* parameter counts (masked weights excluded) and per-sample ``dt`` consistency.

Run::

    .venv/bin/python bench/bench_model.py                  # about 2 minutes
    .venv/bin/python bench/bench_model.py --calls 500 --json out/bench_model.json

Latencies are p50 / p99 over ``--calls`` calls after a warm-up. They depend on the CPU
and on other load, so compare numbers from the same run only. The last block printed is
a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from liquid_driver.model import AutoNCP, CfCCell, DrivingPolicy, LTCCell, PolicyConfig
from liquid_driver.model import fast

try:
    import ncps
    from importlib.metadata import version as package_version
    from ncps import torch as ncps_torch
    from ncps import wirings as ncps_wirings
except ImportError:  # ncps is an optional comparison only
    ncps = None

INPUT_SIZE = 32  # sensory features from the CNN
UNITS = 19
HEIGHT, WIDTH = 48, 128
DT_S = 0.05  # 20 Hz camera
TRAIN_BATCH, TRAIN_STEPS = 32, 16
WARMUP_CALLS = 200


def time_calls(function: Callable[[], Any], calls: int) -> dict[str, float]:
    """Return p50 and p99 latency in microseconds of ``function`` over ``calls`` calls."""
    for _ in range(min(WARMUP_CALLS, calls)):
        function()
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        function()
        samples.append((time.perf_counter_ns() - start) / 1e3)
    samples.sort()
    return {
        "p50_us": statistics.median(samples),
        "p99_us": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
    }


def streaming_step(cell: torch.nn.Module, calls: int) -> dict[str, float]:
    """Time ``cell.step`` with batch 1 and a float dt, as the perception node calls it."""
    x = torch.randn(1, INPUT_SIZE)
    state = cell.initial_state(1)

    def run() -> None:
        nonlocal state
        _, state = cell.step(x, state, DT_S)

    with torch.inference_mode():
        return time_calls(run, calls)


def ncps_streaming_step(cell: torch.nn.Module, calls: int) -> dict[str, float]:
    """Time an ncps cell's ``forward(input, hx, ts)`` with batch 1."""
    x = torch.randn(1, INPUT_SIZE)
    state = torch.zeros(1, UNITS)

    def run() -> None:
        nonlocal state
        _, state = cell(x, state, DT_S)

    with torch.inference_mode():
        return time_calls(run, calls)


def perception_step(policy: DrivingPolicy, calls: int) -> dict[str, float]:
    """Time one camera frame through CNN and controller, batch 1."""
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    state = policy.initial_state(1)

    def run() -> None:
        nonlocal state
        _, state = policy.step(image, state, DT_S)

    with torch.inference_mode():
        return time_calls(run, calls)


def onnx_perception_step(policy: DrivingPolicy, calls: int) -> dict[str, float] | None:
    """Time the exported ONNX perception step in onnxruntime (1 thread), or None."""
    try:
        from liquid_driver.model.export import export_onnx
        from liquid_driver.model.onnx_runtime import OnnxPolicy
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as directory:
        path = export_onnx(policy, Path(directory) / "policy.onnx")
        runtime = OnnxPolicy(path, threads=1)
    image = np.random.default_rng(0).random((1, 3, HEIGHT, WIDTH), dtype=np.float32)
    state = runtime.initial_state()

    def run() -> None:
        nonlocal state
        _, state = runtime.step(image, state, DT_S)

    return time_calls(run, calls)


def training_step(forward: Callable[[], torch.Tensor], parameters: list[torch.Tensor], repeats: int) -> dict[str, float]:
    """Return the median and minimum ms of forward + backward over ``repeats`` runs."""
    durations = []
    for index in range(repeats + 3):
        start = time.perf_counter()
        loss = forward().square().mean()
        loss.backward()
        for parameter in parameters:
            parameter.grad = None
        if index >= 3:  # the first runs warm up allocators, caches and kernels
            durations.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(durations), "min_ms": min(durations)}


def ncps_effective_parameters(model: torch.nn.Module) -> int:
    """Count trainable ncps parameters, leaving out the ff1/ff2 entries its masks zero."""
    total = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    for module in model.modules():
        mask = getattr(module, "sparsity_mask", None)
        if mask is None:
            continue
        masked_out = mask.numel() - int(torch.count_nonzero(mask))
        heads = sum(1 for name in ("ff1", "ff2") if hasattr(module, name))
        total -= heads * masked_out
    return total


def ncps_ltc_effective_parameters(model: torch.nn.Module) -> int:
    """Count trainable ncps LTC parameters, leaving out synapse entries its masks zero."""
    cell = model.rnn_cell
    total = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    neuron_masked = int((cell.sparsity_mask == 0).sum())
    sensory_masked = int((cell.sensory_sparsity_mask == 0).sum())
    # w, mu, sigma and erev per synapse, for neuron and sensory synapses.
    return total - 4 * (neuron_masked + sensory_masked)


def ncps_dt_consistency() -> dict[str, str]:
    """Compare batched per-sample timespans with single-sample runs in ncps CfC."""
    results = {}
    for label, units in (("ncps CfC (dense, 19 units)", UNITS), ("ncps CfC (AutoNCP 19)", None)):
        torch.manual_seed(0)
        wiring = ncps_wirings.AutoNCP(UNITS, 1) if units is None else units
        model = ncps_torch.CfC(INPUT_SIZE, wiring, batch_first=True)
        for batch_size in (4, 19):
            x = torch.randn(batch_size, 3, INPUT_SIZE)
            timespans = torch.rand(batch_size, 3) + 0.5
            key = f"{label}, batch {batch_size}"
            try:
                with torch.no_grad():
                    batched, _ = model(x, timespans=timespans)
                    single = torch.cat(
                        [model(x[i : i + 1], timespans=timespans[i : i + 1])[0] for i in range(batch_size)]
                    )
                error = float((batched - single).abs().max())
                results[key] = f"max |batched - single| = {error:.3g}"
            except RuntimeError as error:
                results[key] = f"raises {type(error).__name__}: {str(error).splitlines()[0][:80]}"
    return results


def our_dt_consistency() -> dict[str, str]:
    """Compare batched per-sample dt with single-sample runs in our CfC on AutoNCP(19, 1)."""
    results = {}
    torch.manual_seed(0)
    cell = CfCCell(AutoNCP(UNITS, 1), INPUT_SIZE)
    for batch_size in (4, 12, 19):
        x = torch.randn(batch_size, 3, INPUT_SIZE)
        dt = (torch.rand(batch_size, 3) + 0.5) * DT_S
        with torch.no_grad():
            batched, _ = cell(x, dt)
            single = torch.cat([cell(x[i : i + 1], dt[i : i + 1])[0] for i in range(batch_size)])
        error = float((batched - single).abs().max())
        results[f"liquid_driver CfC (AutoNCP 19), batch {batch_size}"] = f"max |batched - single| = {error:.3g}"
    return results


def machine_description() -> str:
    """Return the CPU model, core count and library versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, 1 thread used; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def run(calls: int, repeats: int) -> dict[str, Any]:
    """Run every measurement and return the results as a dict."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results: dict[str, Any] = {
        "machine": machine_description(),
        "command": "python " + " ".join(sys.argv),
        "ncps_version": package_version("ncps") if ncps else None,
        "kernels": fast.load_kernels() is not None,
    }

    policy = DrivingPolicy(PolicyConfig()).eval()
    cfc_cell = policy.controller
    ltc_cell = LTCCell(AutoNCP(UNITS, 1), INPUT_SIZE).eval()
    lstm = torch.nn.LSTM(INPUT_SIZE, UNITS, batch_first=True)
    parameters: dict[str, dict[str, int]] = {
        "cnn": vars(policy.count_parameters()["cnn"]),
        "cfc": vars(cfc_cell.count_parameters()),
        "ltc": vars(ltc_cell.count_parameters()),
        "lstm": {"total": sum(p.numel() for p in lstm.parameters()), "effective": sum(p.numel() for p in lstm.parameters())},
    }

    latency = {
        "cfc_step": streaming_step(cfc_cell, calls),
        "ltc_step": streaming_step(ltc_cell, calls),
    }
    cfc_cell.fast_path = ltc_cell.fast_path = False
    latency["cfc_step_pytorch"] = streaming_step(cfc_cell, calls)
    latency["ltc_step_pytorch"] = streaming_step(ltc_cell, calls)
    cfc_cell.fast_path = ltc_cell.fast_path = True
    latency["perception_step"] = perception_step(policy, calls)
    onnx_latency = onnx_perception_step(policy, calls)
    if onnx_latency is not None:
        latency["perception_step_onnxruntime"] = onnx_latency

    training: dict[str, dict[str, float]] = {}
    features = torch.randn(TRAIN_BATCH, TRAIN_STEPS, INPUT_SIZE)
    dt = torch.full((TRAIN_BATCH, TRAIN_STEPS), DT_S)
    cfc_cell.train()
    ltc_cell.train()
    training["cfc_fwd_bwd"] = training_step(lambda: cfc_cell(features, dt)[0], list(cfc_cell.parameters()), repeats)
    cfc_cell.fast_path = False
    training["cfc_fwd_bwd_pytorch"] = training_step(lambda: cfc_cell(features, dt)[0], list(cfc_cell.parameters()), repeats)
    cfc_cell.fast_path = True
    training["ltc_fwd_bwd"] = training_step(lambda: ltc_cell(features, dt)[0], list(ltc_cell.parameters()), repeats)
    ltc_cell.fast_path = False
    training["ltc_fwd_bwd_pytorch"] = training_step(lambda: ltc_cell(features, dt)[0], list(ltc_cell.parameters()), repeats)
    ltc_cell.fast_path = True
    training["lstm_fwd_bwd"] = training_step(lambda: lstm(features)[0], list(lstm.parameters()), repeats)
    cfc_cell.eval()
    ltc_cell.eval()

    correctness = our_dt_consistency()
    if ncps is not None:
        torch.manual_seed(0)
        ncps_cfc = ncps_torch.CfC(INPUT_SIZE, ncps_wirings.AutoNCP(UNITS, 1), batch_first=True)
        ncps_ltc = ncps_torch.LTC(INPUT_SIZE, ncps_wirings.AutoNCP(UNITS, 1), batch_first=True)
        parameters["ncps_cfc"] = {
            "total": sum(p.numel() for p in ncps_cfc.parameters() if p.requires_grad),
            "effective": ncps_effective_parameters(ncps_cfc),
        }
        parameters["ncps_ltc"] = {
            "total": sum(p.numel() for p in ncps_ltc.parameters() if p.requires_grad),
            "effective": ncps_ltc_effective_parameters(ncps_ltc),
        }
        latency["ncps_cfc_step"] = ncps_streaming_step(ncps_cfc.rnn_cell.eval(), calls)
        latency["ncps_ltc_step"] = ncps_streaming_step(ncps_ltc.rnn_cell.eval(), calls)
        # ncps raises for per-sample timespans at batch 32 (see dt_consistency), so its
        # training step runs with its default elapsed time of 1.
        training["ncps_cfc_fwd_bwd"] = training_step(
            lambda: ncps_cfc(features)[0], list(ncps_cfc.parameters()), repeats
        )
        training["ncps_ltc_fwd_bwd"] = training_step(
            lambda: ncps_ltc(features)[0], list(ncps_ltc.parameters()), repeats
        )
        correctness.update(ncps_dt_consistency())
    results["parameters"] = parameters
    results["latency"] = latency
    results["training"] = training
    results["dt_consistency"] = correctness
    return results


def _ratio(numerator: dict[str, float] | None, denominator: dict[str, float] | None, key: str) -> str:
    if numerator is None or denominator is None:
        return ""
    return f"{numerator[key] / denominator[key]:.1f}x"


CELL_NAMES = {"cfc": "CfC", "ltc": "LTC"}


def markdown_table(results: dict[str, Any]) -> str:
    """Return the headline numbers as a Markdown section for docs/benchmarks.md."""
    latency = results["latency"]
    training = results["training"]
    parameters = results["parameters"]

    def count(name: str) -> str:
        value = parameters.get(name)
        return "" if value is None else f"{value['effective']} / {value['total']}"

    lines = [
        f"Command: `{results['command']}`",
        "",
        f"Machine: {results['machine']}; ncps {results['ncps_version']}; kernels "
        f"{'on' if results['kernels'] else 'off (numba missing)'}.",
        "",
        "| measurement | liquid_driver | ncps | speed-up vs ncps | parameters (effective / total), ours; ncps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cell in ("cfc", "ltc"):
        ours = latency[f"{cell}_step"]
        reference = latency.get(f"ncps_{cell}_step")
        reference_text = "" if reference is None else f"{reference['p50_us']:.1f} / {reference['p99_us']:.1f}"
        lines.append(
            f"| {CELL_NAMES[cell]} streaming step, batch 1, p50 / p99 (us) | {ours['p50_us']:.1f} / "
            f"{ours['p99_us']:.1f} | {reference_text} | {_ratio(reference, ours, 'p50_us')} | "
            f"{count(cell)}; {count('ncps_' + cell)} |"
        )
    for cell in ("cfc", "ltc"):
        ours = training[f"{cell}_fwd_bwd"]
        reference = training.get(f"ncps_{cell}_fwd_bwd")
        reference_text = "" if reference is None else f"{reference['median_ms']:.2f}"
        lines.append(
            f"| {CELL_NAMES[cell]} forward + backward, batch {TRAIN_BATCH} x {TRAIN_STEPS} steps, median (ms) | "
            f"{ours['median_ms']:.2f} | {reference_text} | {_ratio(reference, ours, 'median_ms')} | "
            f"{count(cell)}; {count('ncps_' + cell)} |"
        )
    lines += [
        "",
        "| other measurement | value |",
        "| --- | --- |",
        f"| nn.LSTM(32, 19) forward + backward, same shapes, median (ms) | {training['lstm_fwd_bwd']['median_ms']:.2f} "
        f"(CfC / LSTM = {_ratio(training['cfc_fwd_bwd'], training['lstm_fwd_bwd'], 'median_ms')}; "
        f"{parameters['lstm']['total']} parameters) |",
        f"| CfC / LTC forward + backward on PyTorch operators only, median (ms) | "
        f"{training['cfc_fwd_bwd_pytorch']['median_ms']:.2f} / {training['ltc_fwd_bwd_pytorch']['median_ms']:.2f} |",
        f"| CfC / LTC streaming step on PyTorch operators only, p50 (us) | "
        f"{latency['cfc_step_pytorch']['p50_us']:.1f} / {latency['ltc_step_pytorch']['p50_us']:.1f} |",
        f"| Perception step (CNN 48 x 128 + CfC), PyTorch, p50 / p99 (us) | "
        f"{latency['perception_step']['p50_us']:.0f} / {latency['perception_step']['p99_us']:.0f} "
        f"({parameters['cnn']['total']} CNN parameters) |",
    ]
    onnx = latency.get("perception_step_onnxruntime")
    if onnx is not None:
        lines.append(
            f"| Perception step, exported ONNX in onnxruntime, p50 / p99 (us) | "
            f"{onnx['p50_us']:.0f} / {onnx['p99_us']:.0f} |"
        )
    return "\n".join(lines)


def print_results(results: dict[str, Any]) -> None:
    """Print every measurement, then the Markdown table."""
    print(f"machine: {results['machine']}; ncps: {results['ncps_version']}; kernels: {results['kernels']}")
    print("\nbatch-1 latency (us)                     p50       p99")
    for name, value in results["latency"].items():
        print(f"  {name:<34} {value['p50_us']:>8.1f}  {value['p99_us']:>8.1f}")
    print(f"\nforward + backward, batch {TRAIN_BATCH} x {TRAIN_STEPS} steps (ms)   median       min")
    for name, value in results["training"].items():
        print(f"  {name:<40} {value['median_ms']:>8.2f}  {value['min_ms']:>8.2f}")
    print("\nparameters                      total  effective")
    for name, value in results["parameters"].items():
        print(f"  {name:<26} {value['total']:>9}  {value['effective']:>9}")
    print("\nper-sample dt, batched vs one sample at a time")
    for name, value in results["dt_consistency"].items():
        print(f"  {name:<48} {value}")
    print("\n--- Markdown for docs/benchmarks.md ---\n")
    print(markdown_table(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per latency measurement")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per training-step measurement")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    results = run(args.calls, args.repeats)
    print_results(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
