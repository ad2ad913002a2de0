"""Tests of the ONNX and TorchScript exports and of the torch-free ONNX runtime."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from liquid_driver.model import ControllerConfig, DrivingPolicy, PolicyConfig, save_checkpoint
from liquid_driver.model.export import (
    TORCHSCRIPT_METADATA_FILE,
    eager_step,
    example_inputs,
    export_onnx,
    export_torchscript,
    main,
    verify_onnx,
)

pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from liquid_driver.model.onnx_runtime import OnnxPolicy  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
CONTROLLERS = {
    "cfc": ControllerConfig(),
    "cfc-pure": ControllerConfig(mode="pure"),
    "ltc": ControllerConfig(cell="ltc"),
    "ltc-rk4-adaptive": ControllerConfig(cell="ltc", solver="rk4", max_substep_s=0.02, max_unfolds=6),
    "cfc-mixed-memory": ControllerConfig(mixed_memory=True),
}
METADATA = {"preprocessing": {"crop_top": 0.4, "height": 48, "width": 128}, "training": {"epochs": 1}}


def _policy(controller):
    torch.manual_seed(0)
    return DrivingPolicy(PolicyConfig(controller=controller)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default CfC policy and its ONNX file."""
    policy = _policy(ControllerConfig())
    path = export_onnx(policy, tmp_path_factory.mktemp("onnx") / "policy.onnx", METADATA)
    return policy, path


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_onnxruntime_matches_eager(name, tmp_path):
    policy = _policy(CONTROLLERS[name])
    path = export_onnx(policy, tmp_path / "policy.onnx", METADATA)
    assert verify_onnx(policy, path) < TOLERANCE


# torch 2.13 deprecates TorchScript in favour of torch.export, but still loads it.
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", ["cfc", "ltc"])
def test_torchscript_matches_eager(name, tmp_path):
    policy = _policy(CONTROLLERS[name])
    path = export_torchscript(policy, tmp_path / "policy.pt", METADATA)
    extra = {TORCHSCRIPT_METADATA_FILE: ""}
    module = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra[TORCHSCRIPT_METADATA_FILE])["preprocessing"] == METADATA["preprocessing"]
    inputs = example_inputs(policy, batch_size=2)
    expected_curvature, expected_state = eager_step(policy, inputs)
    with torch.no_grad():
        curvature, state = module(*inputs)
    np.testing.assert_allclose(curvature.numpy(), expected_curvature, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(state.numpy(), expected_state, atol=TOLERANCE, rtol=0)


def test_exported_step_matches_policy_step(exported):
    """The exported graph computes what policy.step computes (kernels included)."""
    policy, path = exported
    runtime = OnnxPolicy(path)
    torch_state = policy.initial_state(1)
    onnx_state = runtime.initial_state()
    for index in range(5):
        image = torch.rand(1, 3, *policy.input_size, generator=torch.Generator().manual_seed(index))
        dt = 0.03 + 0.01 * index
        with torch.inference_mode():
            expected, torch_state = policy.step(image, torch_state, dt)
        curvature, onnx_state = runtime.step(image.numpy(), onnx_state, dt)
        assert abs(curvature - float(expected)) < TOLERANCE
        np.testing.assert_allclose(onnx_state, torch_state.numpy(), atol=TOLERANCE, rtol=0)


def test_onnx_metadata(exported):
    policy, path = exported
    runtime = OnnxPolicy(path)
    assert runtime.preprocessing == METADATA["preprocessing"]
    assert runtime.metadata["training"] == METADATA["training"]
    assert runtime.metadata["policy_config"] == policy.config.to_dict()
    assert runtime.metadata["output_units"] == "curvature_1_per_m"
    assert runtime.image_size == policy.input_size
    assert runtime.state_size == policy.state_size
    assert runtime.initial_state().shape == (1, policy.state_size)


@pytest.mark.parametrize(
    "image, state, dt, error, match",
    [
        (np.zeros((1, 3, 48, 128), np.uint8), None, 0.05, TypeError, "divided by 255"),
        (np.zeros((1, 3, 48, 100), np.float32), None, 0.05, ValueError, "Crop and resize"),
        (np.zeros((3, 48, 128), np.float32), None, 0.05, ValueError, "expected"),
        (np.zeros((1, 3, 48, 128), np.float32), np.zeros((1, 5), np.float32), 0.05, ValueError, "state"),
        (np.zeros((1, 3, 48, 128), np.float32), None, -0.1, ValueError, "finite and >= 0"),
        (np.zeros((1, 3, 48, 128), np.float32), None, float("nan"), ValueError, "finite and >= 0"),
    ],
)
def test_onnx_runtime_invalid_inputs_raise(exported, image, state, dt, error, match):
    runtime = OnnxPolicy(exported[1])
    with pytest.raises(error, match=match):
        runtime.step(image, runtime.initial_state() if state is None else state, dt)


def test_onnx_runtime_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        OnnxPolicy(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=str(garbage)):
        OnnxPolicy(garbage)


def test_onnx_runtime_rejects_missing_metadata(exported, tmp_path):
    import onnx

    model = onnx.load(str(exported[1]))
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="no 'liquid_driver' metadata"):
        OnnxPolicy(path)


def test_onnx_runtime_runs_without_torch(exported):
    """Import and run OnnxPolicy in a fresh interpreter where importing torch fails."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any "import torch" now raises ImportError
        import numpy as np
        from liquid_driver.model.onnx_runtime import OnnxPolicy
        policy = OnnxPolicy({str(exported[1])!r})
        state = policy.initial_state()
        image = np.full((1, 3) + policy.image_size, 0.5, dtype=np.float32)
        curvature, state = policy.step(image, state, 0.05)
        assert isinstance(curvature, float) and np.isfinite(curvature)
        assert sys.modules["torch"] is None
        assert not any(name.startswith("torch.") for name in sys.modules)
        print("ok", curvature)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_export_cli(tmp_path):
    checkpoint = tmp_path / "policy.safetensors"
    policy = _policy(ControllerConfig(cell="ltc"))
    save_checkpoint(checkpoint, policy, METADATA)
    onnx_path = tmp_path / "out" / "policy.onnx"
    script_path = tmp_path / "out" / "policy.pt"
    assert main([str(checkpoint), "--onnx", str(onnx_path), "--torchscript", str(script_path)]) == 0
    assert OnnxPolicy(onnx_path).preprocessing == METADATA["preprocessing"]
    assert script_path.stat().st_size > 0


def test_export_cli_bad_checkpoint(tmp_path, caplog):
    missing = tmp_path / "absent.safetensors"
    assert main([str(missing), "--onnx", str(tmp_path / "policy.onnx")]) == 1
    assert str(missing) in caplog.text


def test_export_cli_needs_an_output(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "policy.safetensors")])
