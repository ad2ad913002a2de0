"""Choice of MuJoCo's offscreen OpenGL backend.

MuJoCo's Python bindings read ``MUJOCO_GL`` once, when ``mujoco`` is first
imported, and PyOpenGL fixes its platform at the same time, so the backend
cannot change inside a running process. :func:`select_backend` therefore
probes each candidate in a short-lived subprocess that renders one tiny frame,
and sets ``MUJOCO_GL`` to the first that works before this package imports
``mujoco``. An explicit ``MUJOCO_GL`` is always kept.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Dict, Optional, Tuple

logger = logging.getLogger(__name__)

MUJOCO_GL_ENV = "MUJOCO_GL"
CANDIDATE_BACKENDS: Tuple[str, ...] = ("egl", "osmesa")
PROBE_TIMEOUT_S = 60.0
DEBIAN_PACKAGES = {"egl": "libegl1 libgl1-mesa-dri", "osmesa": "libosmesa6"}

_PROBE_SCRIPT = (
    "import mujoco\n"
    "model = mujoco.MjModel.from_xml_string('<mujoco/>')\n"
    "renderer = mujoco.Renderer(model, 8, 8)\n"
    "renderer.render()\n"
    "renderer.close()\n"
)

# Probe failures by backend, kept for the error raised when rendering fails.
_probe_errors: Dict[str, str] = {}


class RenderingUnavailableError(RuntimeError):
    """Raised when no offscreen OpenGL backend can render."""


def probe_backend(backend: str, timeout_s: float = PROBE_TIMEOUT_S) -> Optional[str]:
    """Render one tiny frame with ``backend`` in a subprocess.

    Returns:
        None if the backend works, else the last line of its error output.
    """
    env = dict(os.environ)
    env[MUJOCO_GL_ENV] = backend
    env.pop("PYOPENGL_PLATFORM", None)  # MuJoCo sets it to match MUJOCO_GL.
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"probe timed out after {timeout_s:.0f} s"
    except OSError as error:
        return f"probe could not start: {error}"
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"probe exited with status {result.returncode}"


def select_backend() -> str:
    """Set ``MUJOCO_GL`` to a working backend unless it is already set.

    Must run before ``mujoco`` is imported for the choice to take effect.

    Returns:
        The backend in force after the call.
    """
    chosen = os.environ.get(MUJOCO_GL_ENV)
    if chosen:
        return chosen
    if "mujoco" in sys.modules:
        logger.warning(
            "mujoco was imported before liquid_driver.sim with %s unset, so MuJoCo picked its "
            "default backend; set %s=egl (or osmesa) before starting Python",
            MUJOCO_GL_ENV,
            MUJOCO_GL_ENV,
        )
        return ""
    for backend in CANDIDATE_BACKENDS:
        error = probe_backend(backend)
        if error is None:
            os.environ[MUJOCO_GL_ENV] = backend
            logger.info("%s unset; using the %s backend", MUJOCO_GL_ENV, backend)
            return backend
        _probe_errors[backend] = error
        logger.info("OpenGL backend %s failed its probe: %s", backend, error)
    # Nothing renders. Keep EGL so physics still works and the first render
    # raises RenderingUnavailableError with the collected probe errors.
    os.environ[MUJOCO_GL_ENV] = CANDIDATE_BACKENDS[0]
    return CANDIDATE_BACKENDS[0]


def rendering_unavailable_message(error: BaseException) -> str:
    """Return the error text for a renderer that failed to start."""
    details = "; ".join(f"{name}: {text}" for name, text in _probe_errors.items())
    install = " or ".join(f"'apt-get install {DEBIAN_PACKAGES[name]}'" for name in CANDIDATE_BACKENDS)
    return (
        f"MuJoCo offscreen rendering failed with {MUJOCO_GL_ENV}="
        f"{os.environ.get(MUJOCO_GL_ENV, '')!r}: {error}. Neither EGL nor OSMesa rendered a "
        f"test frame{' (' + details + ')' if details else ''}. Install {install}, then set "
        f"{MUJOCO_GL_ENV}=egl or {MUJOCO_GL_ENV}=osmesa."
    )
