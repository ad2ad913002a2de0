"""Tests of checkpoint saving and loading, including every kind of bad file."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save as save_safetensors

from liquid_driver.model import (
    FORMAT_VERSION,
    CheckpointError,
    ControllerConfig,
    DrivingPolicy,
    PolicyConfig,
    load_checkpoint,
    save_checkpoint,
)
from liquid_driver.model.checkpoint import METADATA_KEY, weights_digest

HEIGHT, WIDTH = 48, 128

CONTROLLERS = {
    "cfc-auto_ncp": ControllerConfig(),
    "cfc-pure": ControllerConfig(mode="pure", seed=3),
    "ltc": ControllerConfig(cell="ltc", ode_unfolds=3),
    "random": ControllerConfig(wiring="random", units=12, sparsity=0.4),
    "ltc-rk4-adaptive": ControllerConfig(cell="ltc", solver="rk4", max_substep_s=0.02, max_unfolds=5),
    "cfc-mixed-memory": ControllerConfig(mixed_memory=True),
}


def _policy(controller=None):
    torch.manual_seed(0)
    return DrivingPolicy(PolicyConfig(controller=controller or ControllerConfig()))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A valid checkpoint file and its raw parts, for crafting broken variants."""
    path = tmp_path_factory.mktemp("checkpoint") / "policy.safetensors"
    policy = _policy()
    save_checkpoint(path, policy, {"training": {"epochs": 2}})
    data = path.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    document = json.loads(header["__metadata__"][METADATA_KEY])
    tensors = {name: tensor.clone() for name, tensor in policy.state_dict().items()}
    return path, data, document, tensors


def _write_checkpoint(path, tensors, document, fix_digest=True):
    """Write a safetensors file with the given tensors and liquid_driver metadata."""
    document = dict(document)
    if fix_digest:
        document["weights_sha256"] = weights_digest(tensors)
    path.write_bytes(save_safetensors(tensors, metadata={METADATA_KEY: json.dumps(document)}))
    return path


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_round_trip_identical_outputs(name, tmp_path):
    policy = _policy(CONTROLLERS[name]).eval()
    path = tmp_path / "policy.safetensors"
    preprocessing = {"crop_top": 0.4, "size": [HEIGHT, WIDTH]}
    training = {"epochs": 3, "val_loss": 0.012}
    save_checkpoint(path, policy, {"preprocessing": preprocessing, "training": training, "notes": "run 1"})
    loaded, metadata = load_checkpoint(path)

    images = torch.rand(2, 4, 3, HEIGHT, WIDTH)
    dt = torch.rand(2, 4) * 0.1
    with torch.no_grad():
        expected, expected_state = policy(images, dt)
        actual, actual_state = loaded(images, dt)
    assert torch.equal(actual, expected)
    assert torch.equal(actual_state, expected_state)
    assert not loaded.training
    assert loaded.wiring == policy.wiring
    assert loaded.config == policy.config
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["output_units"] == "curvature_1_per_m"
    assert metadata["preprocessing"] == preprocessing
    assert metadata["training"] == training
    assert metadata["notes"] == "run 1"
    assert metadata["policy_config"] == policy.config.to_dict()
    assert metadata["wiring"] == policy.wiring.to_dict()


def test_load_keeps_stored_wiring(tmp_path, saved):
    _, _, document, tensors = saved
    # Flip the polarity of one synapse: the loader must use the stored matrix rather
    # than re-drawing the wiring from the seed in the config.
    document = json.loads(json.dumps(document))
    source, destination = next(
        (i, j) for i, row in enumerate(document["wiring"]["adjacency"]) for j, value in enumerate(row) if value
    )
    document["wiring"]["adjacency"][source][destination] *= -1
    path = _write_checkpoint(tmp_path / "edited.safetensors", tensors, document)
    loaded, _ = load_checkpoint(path)
    assert loaded.wiring.adjacency[source, destination] == document["wiring"]["adjacency"][source][destination]


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "policy.safetensors"
    save_checkpoint(path, _policy())
    first = path.read_bytes()
    policy = _policy()
    with torch.no_grad():
        policy.controller.bias += 1.0
    save_checkpoint(path, policy)
    assert path.read_bytes() != first
    assert [entry.name for entry in tmp_path.iterdir()] == ["policy.safetensors"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_failed_save_leaves_no_file(tmp_path):
    path = tmp_path / "policy.safetensors"
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, _policy(), {"training": {"optimizer": object()}})
    assert list(tmp_path.iterdir()) == []


def test_reserved_metadata_key_raises(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "p.safetensors", _policy(), {"wiring": {}})


def test_loading_runs_no_pickle(saved, monkeypatch):
    path = saved[0]

    def forbidden(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    policy, _ = load_checkpoint(path)
    assert isinstance(policy, DrivingPolicy)


def _bad_files(tmp_path, saved):
    """Yield (case, path, expected message fragment) for each kind of bad checkpoint."""
    _, data, document, tensors = saved

    yield "missing", tmp_path / "absent.safetensors", "not found"

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    yield "empty", empty, "too short"

    for fraction in (0.005, 0.5, 0.99):
        truncated = tmp_path / f"truncated_{fraction}.safetensors"
        truncated.write_bytes(data[: int(len(data) * fraction)])
        yield f"truncated {fraction}", truncated, "truncated"

    pickled = tmp_path / "pickled.pt"
    torch.save({"weight": torch.zeros(2)}, pickled)
    yield "torch.save file", pickled, "not a safetensors file|truncated"

    text = tmp_path / "notes.safetensors"
    text.write_text("hello, this is not a checkpoint at all\n" * 10)
    yield "text", text, "not a safetensors file|truncated"

    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(save_safetensors({"weight": torch.zeros(3)}))
    yield "no metadata", plain, "not a liquid_driver checkpoint"

    corrupt_json = tmp_path / "corrupt_json.safetensors"
    corrupt_json.write_bytes(save_safetensors(tensors, metadata={METADATA_KEY: "{not json"}))
    yield "corrupt metadata", corrupt_json, "corrupt"

    yield "future version", _write_checkpoint(
        tmp_path / "future.safetensors", tensors, {**document, "format_version": FORMAT_VERSION + 1}
    ), "format version 2"

    yield "no version", _write_checkpoint(
        tmp_path / "unversioned.safetensors", tensors, {k: v for k, v in document.items() if k != "format_version"}
    ), "format version None"

    yield "missing section", _write_checkpoint(
        tmp_path / "no_training.safetensors", tensors, {k: v for k, v in document.items() if k != "training"}
    ), "missing"

    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    flipped_path = tmp_path / "flipped.safetensors"
    flipped_path.write_bytes(bytes(flipped))
    yield "flipped weight byte", flipped_path, "checksum"

    missing = dict(tensors)
    missing.pop("controller.bias")
    yield "missing tensor", _write_checkpoint(tmp_path / "missing.safetensors", missing, document), "missing tensors"

    extra = {**tensors, "controller.extra": torch.zeros(2)}
    yield "unexpected tensor", _write_checkpoint(tmp_path / "extra.safetensors", extra, document), "unexpected tensors"

    reshaped = {**tensors, "controller.bias": torch.zeros(4, 20)}
    yield "shape mismatch", _write_checkpoint(tmp_path / "shape.safetensors", reshaped, document), "shape mismatch"

    nan = {**tensors, "controller.bias": torch.full_like(tensors["controller.bias"], float("nan"))}
    yield "nan weights", _write_checkpoint(tmp_path / "nan.safetensors", nan, document), "NaN"

    bad_config = json.loads(json.dumps(document))
    bad_config["policy_config"]["controller"]["cell"] = "gru"
    yield "bad config", _write_checkpoint(tmp_path / "config.safetensors", tensors, bad_config), "invalid policy_config"

    bad_wiring = json.loads(json.dumps(document))
    bad_wiring["wiring"]["adjacency"] = [[5]]
    yield "bad wiring", _write_checkpoint(tmp_path / "wiring.safetensors", tensors, bad_wiring), "invalid policy_config or wiring"


def test_bad_checkpoints_raise_with_file_name(tmp_path, saved):
    cases = list(_bad_files(tmp_path, saved))
    assert len(cases) >= 18
    for case, path, fragment in cases:
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert str(path) in message, case
        assert any(part in message for part in fragment.split("|")), f"{case}: {message}"


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


# Controller settings added after format version 1 was first written. Files from before
# lack them, and loading must fill in defaults that reproduce the old behaviour.
_LATER_CONTROLLER_KEYS = ("solver", "max_substep_s", "max_unfolds", "mixed_memory")


def test_version_one_file_without_new_keys_loads(tmp_path, saved):
    _, _, document, tensors = saved
    document = json.loads(json.dumps(document))
    for key in _LATER_CONTROLLER_KEYS:
        document["policy_config"]["controller"].pop(key)
    path = _write_checkpoint(tmp_path / "old.safetensors", tensors, document)
    loaded, metadata = load_checkpoint(path)
    assert metadata["format_version"] == 1
    assert loaded.controller.state_size == loaded.wiring.units
    reference = _policy().eval()
    images = torch.rand(1, 3, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, 0.05)[0], reference(images, 0.05)[0])
