"""`liquid-driver-saliency`: where a trained policy looks, and how far noise moves it.

Runs a checkpoint over the camera frames of one rosbag2 bag in order, clean
and with Gaussian pixel noise of each requested variance, and computes a
VisualBackProp saliency mask per frame. Each noisy mask is compared with the
clean mask of the same frame by Pearson correlation (1: the attention did not
move). Writes into the output folder:

* saliency_sheet.png: evenly spaced frames (columns) clean and per noise level (rows);
* neuron_traces.png: the clean pass's neuron states by layer, and the curvature output;
* similarity.csv: one row per frame and noise variance;
* summary.json: model, bag, frame count and mean/std similarity per noise variance;
* frames/frame_NNNNNN.png with --save-frames: each frame's overlays, clean on top.

Examples:

    liquid-driver-saliency data/demos/oval_seed1
    liquid-driver-saliency BAG --model runs/try2/model.safetensors --noise 0.05 0.1 --every 2

Exit status: 0 on success, 2 on a usage error (missing bag, invalid model file).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from liquid_driver.help_format import DefaultsHelpFormatter

__all__ = ["build_parser", "main"]

logger = logging.getLogger("liquid_driver.saliency")

_EXIT_USAGE = 2
# Upscaling of the model input in the per-frame PNGs; 48x128 pixels are too small to read.
_FRAME_SCALE = 4
CSV_COLUMNS = ("frame", "stamp_s", "noise_variance", "similarity", "curvature_clean", "curvature_noisy")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of `liquid-driver-saliency`."""
    from liquid_driver.interpret import DEFAULT_MAX_FRAMES, DEFAULT_NOISE_VARIANCES

    parser = argparse.ArgumentParser(
        prog="liquid-driver-saliency",
        description="Compute VisualBackProp saliency of a checkpoint over a bag's camera frames, "
        "clean and with pixel noise, and how much the saliency moves under noise.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("bag", metavar="BAG", help="rosbag2 directory (MCAP or sqlite3)")
    parser.add_argument("--model", help="safetensors checkpoint (default: the shipped model)")
    parser.add_argument("--topic", help="image topic (default: the bag's only image topic, or "
                        "/camera/image_raw among several)")
    parser.add_argument("--noise", nargs="+", type=float, default=list(DEFAULT_NOISE_VARIANCES),
                        metavar="VARIANCE",
                        help="Gaussian pixel-noise variances, pixels scaled to [0, 1]; 0 repeats "
                        "the clean pass")
    parser.add_argument("--every", type=int, default=1,
                        help="use every N-th frame; the network then sees N times the frame period as dt")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES,
                        help="frames to process from the start of the bag")
    parser.add_argument("--frames-in-sheet", type=int, default=8,
                        help="columns of saliency_sheet.png, evenly spaced over the frames")
    parser.add_argument("--out", default="out/saliency", help="output folder")
    parser.add_argument("--save-frames", action="store_true",
                        help="also write one PNG per frame into OUT/frames/, clean on top and "
                        "each noise level below")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pixel-noise generators")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("every", "max_frames", "frames_in_sheet", "threads"):
        value = getattr(args, name)
        if value < 1:
            parser.error(f"invalid --{name.replace('_', '-')} {value}; expected an int >= 1")
    for variance in args.noise:
        if not 0.0 <= variance <= 1.0:
            parser.error(f"invalid --noise variance {variance}; expected a value in [0, 1]")


def _write_csv(result, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for noisy in result.noisy:
            for position in range(len(result)):
                writer.writerow([
                    int(result.frame_indices[position]),
                    f"{result.stamps[position]:.6f}",
                    f"{noisy.variance:g}",
                    f"{noisy.similarity[position]:.6f}",
                    f"{result.curvature[position]:.6f}",
                    f"{noisy.curvature[position]:.6f}",
                ])


def _write_frames(result, folder: Path) -> int:
    """Write one PNG per frame: the clean overlay on top, each noisy overlay below it."""
    import cv2
    import numpy as np

    from liquid_driver.saliency import saliency_overlay

    folder.mkdir(parents=True, exist_ok=True)
    stale = sorted(folder.glob("frame_*.png"))
    for path in stale:
        path.unlink()
    if stale:
        logger.info("Removed %d frame PNGs of an earlier run from %s", len(stale), folder)

    for position in range(len(result)):
        rows = [("clean", result.frames[position], result.masks[position])]
        rows += [(f"noise {noisy.variance:g}, r = {noisy.similarity[position]:.2f}",
                  noisy.frames[position], noisy.masks[position]) for noisy in result.noisy]
        tiles = []
        for label, frame, mask in rows:
            overlay = saliency_overlay(frame, mask)
            tile = cv2.resize(overlay, None, fx=_FRAME_SCALE, fy=_FRAME_SCALE, interpolation=cv2.INTER_NEAREST)
            tile = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
            cv2.putText(tile, label, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
            tiles.append(tile)
        path = folder / f"frame_{int(result.frame_indices[position]):06d}.png"
        if not cv2.imwrite(str(path), np.vstack(tiles)):
            raise OSError(f"OpenCV failed to write {path}; check that the folder is writable")
    return len(result)


def _run(args: argparse.Namespace, command: str) -> int:
    # Imported here so that `--help` returns without loading torch.
    from liquid_driver.interpret import bag_saliency, plot_neuron_traces, plot_saliency_sheet
    from liquid_driver.paths import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        logger.error("Model file %s not found; pass --model PATH", model)
        return _EXIT_USAGE
    if not Path(args.bag).exists():
        logger.error("Bag %s not found; pass a rosbag2 directory", args.bag)
        return _EXIT_USAGE

    started = time.monotonic()
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            result = bag_saliency(
                model, args.bag, args.noise, topic=args.topic, every=args.every,
                max_frames=args.max_frames, seed=args.seed, threads=args.threads, progress=None)
    except (FileNotFoundError, ValueError) as error:
        # ValueError covers CheckpointError, DatasetError and ImageFormatError.
        logger.error("%s", error)
        return _EXIT_USAGE
    seconds = time.monotonic() - started

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet = plot_saliency_sheet(result, out / "saliency_sheet.png", frames=args.frames_in_sheet)
    traces = plot_neuron_traces(
        result.neuron_states, result.stamps - result.stamps[0], result.wiring,
        out / "neuron_traces.png", curvature=result.curvature,
        title=f"{model.name} on {Path(result.bag).name}: clean pass")
    _write_csv(result, out / "similarity.csv")
    if args.save_frames:
        written = _write_frames(result, out / "frames")
        logger.info("Wrote %d frame PNGs into %s", written, out / "frames")

    summary = result.summary()
    summary.update({
        "command": command,
        "every": args.every,
        "max_frames": args.max_frames,
        "seed": args.seed,
        "seconds": round(seconds, 3),
    })
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    print(f"{len(result)} frames of {result.bag} ({result.topic}) in {seconds:.1f} s")
    for noise in summary["noise"]:
        print(f"noise variance {noise['variance']:g}: saliency similarity "
              f"{noise['mean_similarity']:.3f} +- {noise['std_similarity']:.3f}, "
              f"mean |curvature change| {noise['mean_abs_curvature_difference']:.3f} 1/m")
    print(f"Wrote {sheet}, {traces}, {out / 'similarity.csv'}, {out / 'summary.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `liquid-driver-saliency`; return the process exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _check_args(parser, args)
    return _run(args, shlex.join(["liquid-driver-saliency", *arguments]))


if __name__ == "__main__":
    sys.exit(main())
