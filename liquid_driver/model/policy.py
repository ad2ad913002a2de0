"""Driving policy: camera image -> CNN -> controller -> path curvature in 1/m.

The controller is a liquid cell (CfC or LTC) on a wiring, or one of the baselines
of :mod:`.baselines` (an LSTM or a feedforward MLP) for comparisons.

Example::

    policy = DrivingPolicy(PolicyConfig())
    state = policy.initial_state(batch_size=1)
    curvature, state = policy.step(image, state, dt=0.05)  # image (1, 3, 48, 128) in [0, 1]
    curvature_seq, state = policy(images, dt)  # images (B, T, 3, 48, 128), dt (B, T) s
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .base import DEFAULT_TIME_SCALE_S, ParameterCount, TimeStep, WiredCell, check_input
from .baselines import FeedforwardController, LSTMController
from .cfc import ACTIVATIONS, MODES, CfCCell
from .cnn import ConvHead, ConvHeadConfig
from .ltc import SOLVERS, LTCCell
from .wiring import NCP, WIRING_KINDS, AutoNCP, FullyConnected, Random, Wiring

logger = logging.getLogger(__name__)

# Liquid cells run on a wiring; the baselines do not have one.
LIQUID_CELLS = ("cfc", "ltc")
BASELINE_CELLS = ("lstm", "feedforward")
CELL_TYPES = LIQUID_CELLS + BASELINE_CELLS
# Units of the policy output, stored in checkpoints so consumers can check them.
OUTPUT_UNITS = "curvature_1_per_m"
_NCP_SIZE_FIELDS = (
    "inter_neurons",
    "command_neurons",
    "sensory_fanout",
    "inter_fanout",
    "recurrent_command_synapses",
    "motor_fanin",
)


@dataclass
class ControllerConfig:
    """Settings of the controller: cell, wiring and output scaling.

    The wiring fields apply to the liquid cells only. An "lstm" uses ``units`` as its
    hidden size, a "feedforward" controller uses ``hidden_layers``.
    """

    cell: str = "cfc"  # "cfc", "ltc", or the baselines "lstm" and "feedforward"
    mode: str = "default"  # CfC mode: "default", "no_gate" or "pure" (the LTC ignores it)
    units: int = 19  # neurons: AutoNCP splits 19 into 12 inter, 6 command, 1 motor
    output_size: int = 1  # motor neurons, of which the first is the curvature
    wiring: str = "auto_ncp"  # "auto_ncp", "ncp", "fully_connected" or "random"
    sparsity: float = 0.5  # fraction of possible synapses left out (auto_ncp, random)
    seed: int = 22  # seed of the wiring draw
    # Layer sizes of an explicit "ncp" wiring (units = inter + command + output_size).
    inter_neurons: int | None = None
    command_neurons: int | None = None
    sensory_fanout: int | None = None
    inter_fanout: int | None = None
    recurrent_command_synapses: int | None = None
    motor_fanin: int | None = None
    # Make synapse weights follow the wiring's polarity (see cfc.py and ltc.py).
    enforce_polarity: bool = True
    # CfC only: each neuron reads its own previous state.
    self_connections: bool = True
    # CfC dense backbone, only allowed with wiring="fully_connected" and
    # enforce_polarity=False. The default of 0 layers keeps the wiring exact.
    backbone_units: int = 64
    backbone_layers: int = 0
    backbone_activation: str = "lecun_tanh"
    backbone_dropout: float = 0.0
    ode_unfolds: int = 6  # LTC solver substeps per step (when max_substep_s is None)
    solver: str = "semi_implicit"  # LTC solver: "semi_implicit", "euler" or "rk4"
    # LTC: maximum solver substep in seconds, None for a fixed ode_unfolds. When set,
    # each step takes ceil(dt / max_substep_s) substeps, at most max_unfolds.
    max_substep_s: float | None = None
    max_unfolds: int = 32
    # Add an LSTM gate ahead of the liquid cell, which doubles the state size.
    mixed_memory: bool = False
    # Seconds per unit of cell time. 0.05 s is one frame at 20 Hz.
    time_scale_s: float = DEFAULT_TIME_SCALE_S
    # Curvature in 1/m per unit of motor output. The CfC output lies in (-1, 1), so
    # 2.0 covers the typical +-1.5 1/m of a 1:10 car without saturating the tanh.
    output_scale: float = 2.0
    # Hidden layer widths of the "feedforward" baseline, as in PilotNet's dense layers.
    hidden_layers: tuple[int, ...] = (100, 50, 10)

    @property
    def is_liquid(self) -> bool:
        """Whether the cell is a wired liquid cell (CfC or LTC) rather than a baseline."""
        return self.cell in LIQUID_CELLS

    def __post_init__(self) -> None:
        if self.cell not in CELL_TYPES:
            raise ValueError(f"cell={self.cell!r} is invalid. Valid cells: {CELL_TYPES}")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is invalid. Valid modes: {MODES}")
        if self.wiring not in WIRING_KINDS:
            raise ValueError(f"wiring={self.wiring!r} is invalid. Valid kinds: {sorted(WIRING_KINDS)}")
        if self.backbone_activation not in ACTIVATIONS:
            raise ValueError(
                f"backbone_activation={self.backbone_activation!r} is invalid. "
                f"valid: {sorted(ACTIVATIONS)}"
            )
        if self.solver not in SOLVERS:
            raise ValueError(f"solver={self.solver!r} is invalid. Valid solvers: {SOLVERS}")
        if not self.output_scale > 0.0:
            raise ValueError(f"output_scale={self.output_scale} is invalid: use a positive 1/m value")
        self.hidden_layers = tuple(int(width) for width in self.hidden_layers)
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise ValueError(f"units={self.units!r} is invalid: use an int >= 1")
        if self.wiring == "ncp":
            missing = [name for name in _NCP_SIZE_FIELDS if getattr(self, name) is None]
            if missing:
                raise ValueError(f'wiring="ncp" needs {missing}. Set them or use wiring="auto_ncp".')
            total = self.inter_neurons + self.command_neurons + self.output_size  # type: ignore[operator]
            if total != self.units:
                raise ValueError(
                    f"units={self.units} does not match inter_neurons + command_neurons + "
                    f"output_size = {total}. Set units={total}."
                )

    def build_wiring(self, input_size: int) -> Wiring:
        """Create and build the wiring described by this config."""
        wiring: Wiring
        if self.wiring == "auto_ncp":
            wiring = AutoNCP(self.units, self.output_size, self.sparsity, self.seed)
        elif self.wiring == "ncp":
            sizes = {name: getattr(self, name) for name in _NCP_SIZE_FIELDS}
            wiring = NCP(motor_neurons=self.output_size, seed=self.seed, **sizes)
        elif self.wiring == "fully_connected":
            wiring = FullyConnected(self.units, self.output_size, self.seed)
        else:
            wiring = Random(self.units, self.output_size, self.sparsity, self.seed)
        wiring.build(input_size)
        return wiring

    def build_baseline(self, input_size: int) -> LSTMController | FeedforwardController:
        """Create the LSTM or feedforward controller for ``input_size`` features."""
        if self.cell == "lstm":
            return LSTMController(input_size, self.units, self.output_size, self.time_scale_s)
        if self.cell == "feedforward":
            return FeedforwardController(input_size, self.hidden_layers, self.output_size, self.time_scale_s)
        raise ValueError(f"cell={self.cell!r} is a liquid cell; build it with build_cell(wiring)")

    def build_cell(self, wiring: Wiring) -> WiredCell:
        """Create the CfC or LTC cell on a built wiring."""
        if wiring.units != self.units or wiring.output_size != self.output_size:
            raise ValueError(
                f"wiring has {wiring.units} units and {wiring.output_size} outputs but the "
                f"config asks for {self.units} and {self.output_size}"
            )
        if self.cell == "ltc":
            return LTCCell(
                wiring,
                ode_unfolds=self.ode_unfolds,
                solver=self.solver,
                max_substep_s=self.max_substep_s,
                max_unfolds=self.max_unfolds,
                enforce_polarity=self.enforce_polarity,
                time_scale_s=self.time_scale_s,
                mixed_memory=self.mixed_memory,
            )
        return CfCCell(
            wiring,
            mode=self.mode,
            enforce_polarity=self.enforce_polarity,
            self_connections=self.self_connections,
            backbone_units=self.backbone_units,
            backbone_layers=self.backbone_layers,
            backbone_activation=self.backbone_activation,
            backbone_dropout=self.backbone_dropout,
            time_scale_s=self.time_scale_s,
            mixed_memory=self.mixed_memory,
        )


@dataclass
class PolicyConfig:
    """Settings of :class:`DrivingPolicy`: the CNN and the liquid controller."""

    cnn: ConvHeadConfig = field(default_factory=ConvHeadConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyConfig:
        """Rebuild a config from :meth:`to_dict` output, raising ValueError on unknown keys."""
        if not isinstance(data, dict):
            raise TypeError(f"policy config must be a dict, got {type(data).__name__}")
        unknown = set(data) - {"cnn", "controller"}
        if unknown:
            raise ValueError(f"unknown policy config keys {sorted(unknown)}. Valid: cnn, controller")
        return cls(
            cnn=_dataclass_from_dict(ConvHeadConfig, data.get("cnn", {})),
            controller=_dataclass_from_dict(ControllerConfig, data.get("controller", {})),
        )


def _dataclass_from_dict(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__} data must be a dict, got {type(data).__name__}")
    names = {item.name for item in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}. Valid: {sorted(names)}")
    return cls(**data)


class DrivingPolicy(nn.Module):
    """CNN plus controller that maps camera images to path curvature in 1/m.

    Args:
        config: CNN and controller settings.
        wiring: A built wiring to use instead of drawing one from ``config`` (checkpoint
            loading passes the stored wiring). Its input size must equal
            ``config.cnn.feature_size``. Baseline controllers take none.
    """

    def __init__(self, config: PolicyConfig | None = None, wiring: Wiring | None = None) -> None:
        super().__init__()
        self.config = PolicyConfig() if config is None else config
        controller = self.config.controller
        features = self.config.cnn.feature_size
        self.cnn = ConvHead(self.config.cnn)
        self.controller: WiredCell | LSTMController | FeedforwardController
        if not controller.is_liquid:
            if wiring is not None:
                raise ValueError(f"cell={controller.cell!r} has no wiring, but a wiring was passed")
            self.controller = controller.build_baseline(features)
        else:
            if wiring is None:
                wiring = controller.build_wiring(features)
            elif wiring.input_size != features:
                raise ValueError(
                    f"wiring input_size={wiring.input_size} does not match cnn.feature_size={features}"
                )
            self.controller = controller.build_cell(wiring)
        self.output_scale = controller.output_scale

    @property
    def input_size(self) -> tuple[int, int]:
        """Expected image size (height, width) in pixels."""
        return self.cnn.input_size

    @property
    def wiring(self) -> Wiring | None:
        """The controller's synapse wiring, or None for a baseline controller."""
        return self.controller.wiring

    @property
    def state_size(self) -> int:
        """Columns of the controller state: units, or 2 * units with mixed memory."""
        return self.controller.state_size

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Return the controller's resting state, zeros of shape (batch_size, state_size)."""
        return self.controller.initial_state(batch_size, device=device)

    def reset_state(self, state: torch.Tensor, done: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``state`` with the rows where ``done`` (batch,) is True at rest, or all rows."""
        return self.controller.reset_state(state, done)

    def _check_images(self, images: Any, dims: int) -> torch.Tensor:
        if isinstance(images, torch.Tensor) and not images.is_floating_point():
            raise TypeError(
                f"images have dtype {images.dtype}. Pass floats in [0, 1], for example "
                "uint8 images divided by 255"
            )
        check_input("images", images, dims)
        height, width = self.input_size
        if tuple(images.shape[-3:]) != (3, height, width):
            raise ValueError(
                f"images have shape {tuple(images.shape)}, expected (..., 3, {height}, {width}). "
                "Crop and resize the camera image to the model input size first."
            )
        return images

    def step(
        self, image: torch.Tensor, state: torch.Tensor, dt: TimeStep
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Process one camera frame per batch entry.

        With gradients disabled the controller runs a compiled kernel where possible
        (see :mod:`liquid_driver.model.fast`).

        Args:
            image: Images (batch, 3, height, width), floats in [0, 1].
            state: Controller state (batch, state_size).
            dt: Seconds since the previous frame: a float or a tensor of shape (batch,).

        Returns:
            ``(curvature, new_state)``: curvature (batch, 1) in 1/m and the new state.
        """
        self._check_images(image, 4)
        features = self.cnn(image)  # (batch, feature_size)
        output, state = self.controller.step(features, state, dt)
        return output[:, :1] * self.output_scale, state

    def forward(
        self, images: torch.Tensor, dt: TimeStep, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Process sequences of frames, running the CNN on all frames at once.

        Args:
            images: Images (batch, time, 3, height, width), floats in [0, 1].
            dt: Seconds before each frame: a float or a tensor of shape (batch, time).
            state: Initial controller state (batch, state_size), or None for zeros.

        Returns:
            ``(curvature, final_state)``: curvature (batch, time, 1) in 1/m and the state
            after the last frame.
        """
        self._check_images(images, 5)
        batch_size, steps = images.shape[:2]
        frames = images.reshape(batch_size * steps, *images.shape[2:])  # (batch * time, 3, H, W)
        features = self.cnn(frames)  # (batch * time, feature_size)
        features = features.reshape(batch_size, steps, -1)  # (batch, time, feature_size)
        outputs, state = self.controller(features, dt, state)
        return outputs[..., :1] * self.output_scale, state

    def count_parameters(self) -> dict[str, ParameterCount]:
        """Count parameters of the CNN, the controller and both, masked weights excluded."""
        cnn_total = sum(parameter.numel() for parameter in self.cnn.parameters())
        cnn = ParameterCount(cnn_total, cnn_total, 0, 0)
        controller = self.controller.count_parameters()
        return {"cnn": cnn, "controller": controller, "total": cnn + controller}
