"""The onnxruntime deployment path runs with PyTorch absent, as on a small rover."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from liquid_driver.paths import default_model_path

pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")

# Runs in a fresh interpreter where `import torch` raises ImportError.
TORCH_FREE_SCRIPT = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None

    import numpy as np
    from liquid_driver.inference import PolicyRunner
    import liquid_driver.nodes.perception_node  # noqa: F401

    runner = PolicyRunner(sys.argv[1], backend="onnx")
    frame = np.full((120, 160, 3), 90, dtype=np.uint8)
    for i in range(3):
        prediction = runner.predict(frame, 0.05 * i)
    assert "torch" not in {name.split(".")[0] for name, module in sys.modules.items() if module}
    print(f"curvature={prediction.curvature:.6f}")
""")


def test_onnx_backend_runs_without_torch(tmp_path):
    from liquid_driver.model.export import main as export_main

    onnx_path = tmp_path / "lane_keeper.onnx"
    assert export_main([str(default_model_path()), "--onnx", str(onnx_path)]) in (0, None)

    result = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_SCRIPT, str(onnx_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "curvature=" in result.stdout
