"""Start and stop the package's nodes as separate processes, without ROS 2 launch.

The demo, the demonstration collector and the tests use this where `ros2
launch` is not installed. Each node runs with this interpreter (`sys.executable`),
which matters for the ROS 2 PyPI wheels: they set the library path by
re-executing the virtual environment's own Python at start-up.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0


def format_parameter(value) -> str:
    """Format a Python value as a `--ros-args -p name:=value` literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_parameter(item) for item in value) + "]"
    if isinstance(value, str):
        # Quoted so YAML keeps numbers-as-text and empty strings as strings.
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class NodeProcess:
    """One node of this package running in its own process.

    Args:
        node: module name under liquid_driver.nodes, e.g. "sim_node".
        parameters: ROS parameters passed with `-p name:=value`.
        log_path: file that receives the node's stdout and stderr.
        env: extra environment variables.
    """

    def __init__(self, node: str, parameters: dict | None = None, log_path: Path | None = None,
                 env: dict | None = None):
        self.node = node
        command = [sys.executable, "-m", f"liquid_driver.nodes.{node}", "--ros-args"]
        for name, value in (parameters or {}).items():
            command += ["-p", f"{name}:={format_parameter(value)}"]
        self.command = command
        self.log_path = Path(log_path) if log_path else None
        environment = dict(os.environ)
        environment.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        environment["PYTHONUNBUFFERED"] = "1"
        environment.update(env or {})
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "wb")
            output = self._log_file
        else:
            self._log_file = None
            output = None
        logger.debug("starting %s", " ".join(command))
        self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                        env=environment)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Wait up to timeout seconds for the process to exit; return its code or None."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Send SIGINT (as Ctrl-C would), then SIGKILL if it has not exited within timeout s."""
        if self.running():
            self.process.send_signal(signal.SIGINT)
            if self.wait(timeout) is None:
                logger.warning("%s did not exit %.0f s after SIGINT; killing it", self.node, timeout)
                self.process.kill()
                self.process.wait()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode

    def log_text(self) -> str:
        """Return what the node has written so far (empty without a log file)."""
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""


def wait_until(condition, timeout: float, period: float = 0.05, description: str = "condition"):
    """Poll condition() until it is truthy; raise TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(period)
    raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {description}")
