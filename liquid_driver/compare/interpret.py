"""Interpretability part of the comparison: saliency under noise, neuron traces and wiring plots.

All of it runs on a held-out recording: the pure-pursuit expert drives a
layout and look that the demonstrations never showed, and its camera frames
are written to a rosbag2 bag. Every trained model then runs over that bag with
`liquid_driver.interpret.bag_saliency`, clean and under pixel noise, and the
Pearson correlation between its clean and noisy VisualBackProp masks measures
how far its attention moves under noise.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from liquid_driver.compare.report import Summary
from liquid_driver.compare.run import CompareSettings, ModelRecord
from liquid_driver.compare.variants import REFERENCE, variant_by_name

__all__ = ["explain_models", "record_expert_bag"]

logger = logging.getLogger(__name__)

# Held-out drive for the saliency: 15 s at 20 Hz on the first held-out layout.
SALIENCY_FRAMES = 300
SALIENCY_NOISE = (0.1, 0.2, 0.3)
# Variants whose neuron states are traced over a closed-loop lap.
TRACED_VARIANTS = ("ncp_cfc", "ncp_ltc", "lstm")
CAMERA_PERIOD_S = 0.05


def record_expert_bag(path: Path, layout: str, seed: int, frames: int, lighting: str = "default") -> Path:
    """Record ``frames`` camera frames of the expert driving ``layout`` into a new MCAP bag at ``path``.

    The bag has /camera/image_raw (rgb8 Image) and /cmd_vel (Twist), stamped in
    simulated time at 20 Hz, as the recorder node writes them.
    """
    from liquid_driver.data.bag import BagWriter, serialize
    from liquid_driver.data.synthetic import image_message, twist_message
    from liquid_driver.sim import Simulator
    from liquid_driver.sim.expert import ExpertDriver

    simulator = Simulator.from_layout(layout, seed=seed, lighting=lighting)
    expert = ExpertDriver(simulator.track)
    try:
        with BagWriter(path) as bag:
            bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
            bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
            for index in range(frames):
                stamp = (index + 1) * CAMERA_PERIOD_S
                stamp_ns = int(round(stamp * 1e9))
                image = image_message(simulator.render(), stamp)
                bag.write("/camera/image_raw", stamp_ns, serialize(image, "sensor_msgs/msg/Image"))
                x, y, yaw = simulator.pose
                speed = simulator.velocity[0]
                command = expert.command(x, y, yaw, speed)
                twist = twist_message(command.speed, command.yaw_rate)
                bag.write("/cmd_vel", stamp_ns + 1_000_000, serialize(twist, "geometry_msgs/msg/Twist"))
                simulator.set_command(command.speed, command.steering)
                simulator.step(CAMERA_PERIOD_S)
    except BaseException:
        # A shorter recording would change the saliency figures, so an interrupted one is removed.
        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        simulator.close()
    logger.info("Recorded %d expert frames of %s (visual seed %d) into %s", frames, layout, seed, path)
    return path


def _held_out_bag(settings: CompareSettings, frames: int) -> tuple[Path, str]:
    layout = (settings.held_out_layouts or settings.train_layouts)[0]
    name = f"{layout.replace(':', '_')}_seed{settings.visual_seed}_{frames}frames"
    path = Path(settings.out) / "interpret" / name
    if not (path / "metadata.yaml").is_file():
        # A bag without metadata.yaml is what a killed run leaves behind, so it is recorded again.
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        record_expert_bag(path, layout, settings.visual_seed, frames)
    return path, layout


def _first_trained(records: Sequence[ModelRecord], variant: str) -> ModelRecord | None:
    for record in records:
        if record.variant == variant and record.training is not None and record.checkpoint.is_file():
            return record
    return None


def _plot_saliency_grid(examples: dict[str, Any], frame_index: int, path: Path) -> Path:
    """Draw one row per variant: the clean input, then its saliency mask clean and at each noise level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(examples)
    first = examples[names[0]]
    columns = 2 + len(first.noisy)
    figure, axes = plt.subplots(len(names), columns, figsize=(2.4 * columns, 1.15 * len(names) + 0.6),
                                squeeze=False)
    for row, name in enumerate(names):
        result = examples[name]
        masks = [("saliency, clean", result.masks[frame_index])]
        masks += [(f"noise {noisy.variance:g}", noisy.masks[frame_index]) for noisy in result.noisy]
        axes[row][0].imshow(result.frames[frame_index])
        for column, (title, mask) in enumerate(masks, start=1):
            axes[row][column].imshow(mask, cmap="inferno", vmin=0.0, vmax=1.0)
            if row == 0:
                axes[row][column].set_title(title, fontsize="small")
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row][0].set_ylabel(variant_by_name(name).label, fontsize="x-small", rotation=0, ha="right",
                                va="center")
    axes[0][0].set_title("model input", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_similarity(similarity: dict[str, dict[float, Summary]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.0))
    for name, by_noise in similarity.items():
        variances = sorted(by_noise)
        means = [by_noise[v].mean for v in variances]
        spreads = [by_noise[v].std for v in variances]
        width = 2.5 if name == REFERENCE else 1.2
        axis.errorbar(variances, means, yerr=spreads, label=variant_by_name(name).label, marker="o",
                      markersize=3, capsize=3, linewidth=width)
    axis.set_xlabel("pixel-noise variance")
    axis.set_ylabel("saliency similarity (Pearson r)")
    axis.set_title("Attention under noise: clean against noisy VisualBackProp masks", fontsize="medium")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def explain_models(
    records: Sequence[ModelRecord],
    settings: CompareSettings,
    folder: Path,
    relative: str,
    frames: int = SALIENCY_FRAMES,
) -> list[str]:
    """Compute saliency similarity for every model, trace and plot the first seed's models.

    Args:
        records: The comparison's models; those without a trained checkpoint are skipped.
        settings: The comparison's settings (held-out layout, visual seed).
        folder: Where the PNG files go.
        relative: ``folder`` relative to the report, for its image links.
        frames: Length of the held-out recording, in frames at 20 Hz.

    Returns:
        The Markdown lines of the report's interpretability section.
    """
    from liquid_driver.interpret import bag_saliency, drive_traces, plot_neuron_traces
    from liquid_driver.model import load_checkpoint
    from liquid_driver.model.plot import plot_wiring

    trained = [record for record in records if record.training is not None and record.checkpoint.is_file()]
    if not trained:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    bag, layout = _held_out_bag(settings, frames)

    similarity: dict[str, dict[float, Summary]] = {}
    examples: dict[str, Any] = {}
    for record in trained:
        result = bag_saliency(record.checkpoint, bag, SALIENCY_NOISE, max_frames=frames)
        by_noise = similarity.setdefault(record.variant, {v: Summary([]) for v in SALIENCY_NOISE})
        for noisy in result.noisy:
            by_noise[noisy.variance].values.append(noisy.mean_similarity)
        if record.variant not in examples:
            examples[record.variant] = result
        logger.info("%s seed %d saliency similarity: %s", record.variant, record.seed,
                    ", ".join(f"{n.variance:g}: {n.mean_similarity:.3f}" for n in result.noisy))

    reference = examples.get(REFERENCE) or next(iter(examples.values()))
    # The frame where the reference model steers hardest, so the masks show a curve.
    frame_index = int(np.nanargmax(np.abs(reference.curvature)))
    _plot_saliency_grid(examples, frame_index, folder / "saliency.png")
    _plot_similarity(similarity, folder / "saliency_similarity.png")

    lines = [
        "## Interpretability",
        "",
        f"A held-out recording of {frames} frames ({layout}, visual seed {settings.visual_seed}, "
        "driven by the pure-pursuit expert) runs through every model, clean and with pixel noise. "
        "VisualBackProp masks show which pixels the convolutions respond to. The similarity is the Pearson "
        "correlation between a frame's clean and noisy mask, averaged over the frames: 1 means the "
        "attention did not move. `liquid-driver-saliency BAG --model MODEL` computes the same for any bag.",
        "",
        f"![saliency]({relative}/saliency.png)",
        "",
        "| Model | " + " | ".join(f"similarity at noise {v:g}" for v in SALIENCY_NOISE) + " |",
        "|" + " --- |" * (1 + len(SALIENCY_NOISE)),
    ]
    for name, by_noise in similarity.items():
        lines.append(f"| {variant_by_name(name).label} | "
                     + " | ".join(by_noise[v].text(3) for v in SALIENCY_NOISE) + " |")
    lines += ["", f"![saliency similarity]({relative}/saliency_similarity.png)", ""]

    traced = []
    for name in TRACED_VARIANTS:
        record = _first_trained(records, name)
        if record is None:
            continue
        times, states, curvature, run = drive_traces(record.checkpoint, layout=layout, seed=settings.visual_seed,
                                                     laps=min(settings.laps, 1.0))
        policy, _ = load_checkpoint(record.checkpoint)
        path = folder / f"traces_{name}.png"
        plot_neuron_traces(states, times, policy.wiring, path, curvature=curvature,
                           title=f"{variant_by_name(name).label}, seed {record.seed}: {layout}, "
                           f"{run.interventions} interventions")
        traced.append((name, path, states.shape[1]))
    if traced:
        lines += [
            "### Neuron states over a closed-loop lap",
            "",
            f"Each plot shows every state variable of the controller over {min(settings.laps, 1.0):g} lap of "
            "the held-out layout, "
            "grouped by layer for the NCPs, with the curvature it commands at the bottom. The NCP's command "
            "neurons can be read one by one, while the LSTM spreads its state over "
            f"{2 * variant_by_name('lstm').controller.get('units', 64)} variables.",
            "",
        ]
        for name, path, size in traced:
            lines += [f"{variant_by_name(name).label}, {size} state variables:", "",
                      f"![neuron traces of {name}]({relative}/{path.name})", ""]

    wiring_lines = []
    for record in (_first_trained(records, name) for name in similarity):
        if record is None or not variant_by_name(record.variant).is_liquid:
            continue
        policy, _ = load_checkpoint(record.checkpoint)
        path = folder / f"wiring_{record.variant}.png"
        plot_wiring(policy.controller, path, title=f"{variant_by_name(record.variant).label}, seed {record.seed}")
        wiring_lines += [f"![wiring of {record.variant}]({relative}/{path.name})", ""]
    if wiring_lines:
        lines += [
            "### Learned wirings",
            "",
            "Green synapses are excitatory, red ones inhibitory, and line width is the learned strength. "
            "The polarities come from the trained weights (see `liquid_driver.model.plot`).",
            "",
            *wiring_lines,
        ]
    return lines

