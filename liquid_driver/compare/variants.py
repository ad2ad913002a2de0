"""The controllers compared with the NCP, all behind the same CNN head.

The list follows the lane-keeping comparison of Lechner et al., "Neural circuit
policies enabling auditable autonomy", Nature Machine Intelligence 2, 2020. It
sets the NCP with 19 neurons against networks that each drop one of its parts:
the wiring (fully connected or randomly wired liquid cells of the same size),
the liquid cell (an LSTM) or any recurrence (a feedforward head in the style of
PilotNet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liquid_driver.model import ControllerConfig, ConvHeadConfig, PolicyConfig
from liquid_driver.model.wiring import AutoNCP

__all__ = ["REFERENCE", "VARIANTS", "Variant", "matched_random_sparsity", "variant_by_name"]

# Neurons of the NCP and of the liquid cells compared with it.
NCP_UNITS = 19
# Hidden size of the LSTM baseline.
LSTM_UNITS = 64


@dataclass(frozen=True)
class Variant:
    """One controller of the comparison."""

    name: str  # id used in folders, CSV files and plot names
    label: str  # name in tables
    controller: dict[str, Any] = field(default_factory=dict)  # ControllerConfig fields

    @property
    def is_liquid(self) -> bool:
        """Whether the controller is a wired CfC or LTC cell."""
        return self.controller.get("cell", "cfc") in ("cfc", "ltc")

    def policy_config(self, seed: int, cnn: ConvHeadConfig | None = None) -> PolicyConfig:
        """Return the policy of this variant for training seed ``seed``.

        Each training seed draws its own wiring (seed 22 + ``seed``; 22 is the wiring
        seed of the shipped model), so the spread over seeds includes the wiring draw.
        """
        cnn = cnn or ConvHeadConfig()
        settings = dict(self.controller)
        if settings.get("wiring") == "random" and "sparsity" not in settings:
            settings["sparsity"] = matched_random_sparsity(cnn.feature_size)
        controller = ControllerConfig(seed=22 + seed, **settings)
        return PolicyConfig(cnn=cnn, controller=controller)


def matched_random_sparsity(feature_size: int, units: int = NCP_UNITS) -> float:
    """Return the sparsity at which a random wiring has as many synapses as the AutoNCP, on average.

    A random wiring keeps each of the ``units**2 + feature_size * units`` possible
    synapses with probability ``1 - sparsity``. Matching the NCP's count keeps the
    comparison about where the synapses are, not how many there are.
    """
    ncp = AutoNCP(units, 1, ControllerConfig.sparsity, 22)
    ncp.build(feature_size)
    possible = units * units + feature_size * units
    return 1.0 - (ncp.synapse_count + ncp.sensory_synapse_count) / possible


VARIANTS = (
    Variant("ncp_cfc", f"NCP CfC ({NCP_UNITS})", {"cell": "cfc", "wiring": "auto_ncp", "units": NCP_UNITS}),
    Variant("ncp_ltc", f"NCP LTC ({NCP_UNITS})", {"cell": "ltc", "wiring": "auto_ncp", "units": NCP_UNITS}),
    Variant("fc_cfc", f"Fully connected CfC ({NCP_UNITS})",
            {"cell": "cfc", "wiring": "fully_connected", "units": NCP_UNITS}),
    Variant("random_cfc", f"Randomly wired CfC ({NCP_UNITS})",
            {"cell": "cfc", "wiring": "random", "units": NCP_UNITS}),
    Variant("lstm", f"LSTM ({LSTM_UNITS})", {"cell": "lstm", "units": LSTM_UNITS}),
    Variant("feedforward", "Feedforward (PilotNet-style)", {"cell": "feedforward"}),
)
# The model whose claims the comparison tests.
REFERENCE = "ncp_cfc"


def variant_by_name(name: str) -> Variant:
    """Return the variant called ``name``, raising ValueError with the valid names."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise ValueError(f"invalid model variant {name!r}; expected one of {[v.name for v in VARIANTS]}")
