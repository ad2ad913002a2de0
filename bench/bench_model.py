"""Benchmark the driving policy on one CPU thread, and compare it with ncps when installed.

Measures, with ``torch.set_num_threads(1)``:

* the controller streaming step alone (batch 1, CfC and LTC on AutoNCP(19, 1));
* the whole perception step: CNN at 48 x 128 px plus the controller (batch 1);
* a 16-step forward and backward pass for batch 32 (whole policy and controller alone);
* parameter counts, masked weights excluded;
* correctness checks against ncps 1.0.1: per-sample ``dt`` for several batch sizes,
  and how many controller weights ncps leaves unmasked.

Run::

    .venv/bin/python bench/bench_model.py                # about 1-2 minutes
    .venv/bin/python bench/bench_model.py --calls 500 --json out/bench_model.json

Latencies are p50 / p99 over ``--calls`` calls after a warm-up. They depend on the CPU
and on other load, so compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from liquid_driver.model import AutoNCP, CfCCell, DrivingPolicy, LTCCell, PolicyConfig

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


def ncps_perception_step(policy: DrivingPolicy, cell: torch.nn.Module, calls: int) -> dict[str, float]:
    """Time our CNN followed by an ncps cell, batch 1."""
    image = torch.rand(1, 3, HEIGHT, WIDTH)
    state = torch.zeros(1, UNITS)

    def run() -> None:
        nonlocal state
        _, state = cell(policy.cnn(image), state, DT_S)

    with torch.inference_mode():
        return time_calls(run, calls)


def training_step(forward: Callable[[], torch.Tensor], parameters: list[torch.Tensor], repeats: int) -> dict[str, float]:
    """Return the median and minimum ms of forward + backward over ``repeats`` runs."""
    durations = []
    for index in range(repeats + 2):
        start = time.perf_counter()
        loss = forward().square().mean()
        loss.backward()
        for parameter in parameters:
            parameter.grad = None
        if index >= 2:  # the first two runs warm up allocators and caches
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
    for batch_size in (4, 19):
        x = torch.randn(batch_size, 3, INPUT_SIZE)
        dt = (torch.rand(batch_size, 3) + 0.5) * DT_S
        with torch.no_grad():
            batched, _ = cell(x, dt)
            single = torch.cat([cell(x[i : i + 1], dt[i : i + 1])[0] for i in range(batch_size)])
        error = float((batched - single).abs().max())
        results[f"liquid_driver CfC (AutoNCP 19), batch {batch_size}"] = f"max |batched - single| = {error:.3g}"
    return results


def run(calls: int, repeats: int) -> dict[str, Any]:
    """Run every measurement and return the results as a dict."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "ncps_version": package_version("ncps") if ncps else None,
    }

    policy = DrivingPolicy(PolicyConfig()).eval()
    ltc_cell = LTCCell(AutoNCP(UNITS, 1), INPUT_SIZE).eval()
    counts = policy.count_parameters()
    results["parameters"] = {name: vars(count) for name, count in counts.items()}
    results["parameters"]["ltc_controller"] = vars(ltc_cell.count_parameters())

    latency = {
        "cfc_step": streaming_step(policy.controller, calls),
        "ltc_step": streaming_step(ltc_cell, calls),
        "perception_step": perception_step(policy, calls),
    }
    training = {}
    images = torch.rand(TRAIN_BATCH, TRAIN_STEPS, 3, HEIGHT, WIDTH)
    features = torch.randn(TRAIN_BATCH, TRAIN_STEPS, INPUT_SIZE)
    dt = torch.full((TRAIN_BATCH, TRAIN_STEPS), DT_S)
    policy.train()
    training["policy_fwd_bwd"] = training_step(lambda: policy(images, dt)[0], list(policy.parameters()), repeats)
    controller = policy.controller
    training["cfc_fwd_bwd"] = training_step(lambda: controller(features, dt)[0], list(controller.parameters()), repeats)
    ltc_cell.train()
    training["ltc_fwd_bwd"] = training_step(lambda: ltc_cell(features, dt)[0], list(ltc_cell.parameters()), repeats)
    policy.eval()

    correctness = our_dt_consistency()
    if ncps is not None:
        torch.manual_seed(0)
        ncps_cfc = ncps_torch.CfC(INPUT_SIZE, ncps_wirings.AutoNCP(UNITS, 1), batch_first=True)
        ncps_ltc = ncps_torch.LTC(INPUT_SIZE, ncps_wirings.AutoNCP(UNITS, 1), batch_first=True)
        results["parameters"]["ncps_cfc_controller"] = {
            "total": sum(p.numel() for p in ncps_cfc.parameters() if p.requires_grad),
            "effective": ncps_effective_parameters(ncps_cfc),
        }
        latency["ncps_cfc_step"] = ncps_streaming_step(ncps_cfc.rnn_cell.eval(), calls)
        latency["ncps_ltc_step"] = ncps_streaming_step(ncps_ltc.rnn_cell.eval(), calls)
        latency["ncps_perception_step"] = ncps_perception_step(policy, ncps_cfc.rnn_cell, calls)
        # ncps raises for per-sample timespans at batch 32 (see correctness), so its
        # training step runs with its default elapsed time of 1.
        training["ncps_cfc_fwd_bwd"] = training_step(
            lambda: ncps_cfc(features)[0], list(ncps_cfc.parameters()), repeats
        )
        training["ncps_ltc_fwd_bwd"] = training_step(
            lambda: ncps_ltc(features)[0], list(ncps_ltc.parameters()), repeats
        )
        correctness.update(ncps_dt_consistency())
    results["latency"] = latency
    results["training"] = training
    results["dt_consistency"] = correctness
    return results


def print_results(results: dict[str, Any]) -> None:
    """Print the results as aligned tables."""
    print(f"machine: {results['machine']}; ncps: {results['ncps_version']}")
    print("\nbatch-1 latency (us)              p50       p99")
    for name, value in results["latency"].items():
        print(f"  {name:<28} {value['p50_us']:>8.1f}  {value['p99_us']:>8.1f}")
    print(f"\nforward + backward, batch {TRAIN_BATCH} x {TRAIN_STEPS} steps (ms)   median       min")
    for name, value in results["training"].items():
        print(f"  {name:<40} {value['median_ms']:>8.1f}  {value['min_ms']:>8.1f}")
    print("\nparameters                      total  effective")
    for name, value in results["parameters"].items():
        print(f"  {name:<26} {value['total']:>9}  {value['effective']:>9}")
    print("\nper-sample dt, batched vs one sample at a time")
    for name, value in results["dt_consistency"].items():
        print(f"  {name:<44} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per latency measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per training-step measurement")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    results = run(args.calls, args.repeats)
    print_results(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
