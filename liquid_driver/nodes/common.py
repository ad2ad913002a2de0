"""Helpers shared by the liquid_driver nodes: parameters, QoS profiles and main()."""

from __future__ import annotations

from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


def declare_parameter(
    node: Node,
    name: str,
    default,
    description: str,
    *,
    read_only: bool = False,
    min_value: float | int | None = None,
    max_value: float | int | None = None,
    additional_constraints: str = "",
):
    """Declare a parameter with a descriptor and return its current value.

    A numeric range needs both bounds; ROS 2 then rejects values outside it with
    a reason that names the range. `additional_constraints` describes in words
    what a set-parameters callback checks on top, such as the valid strings.
    """
    descriptor = ParameterDescriptor(
        description=description, read_only=read_only,
        additional_constraints=additional_constraints)
    if min_value is not None and max_value is not None:
        if isinstance(default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(min_value), to_value=float(max_value), step=0.0)
            ]
        elif isinstance(default, int) and not isinstance(default, bool):
            descriptor.integer_range = [
                IntegerRange(from_value=int(min_value), to_value=int(max_value), step=1)
            ]
    return node.declare_parameter(name, default, descriptor).value


def camera_qos(reliable: bool, depth: int = 5) -> QoSProfile:
    """Build the QoS profile for camera frames.

    Best effort with a short queue is the sensor-data convention: a late frame is
    worth less than the next one. Reliable is for recording and lock-step runs,
    where every frame must arrive.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


# Commands and metrics are small and each one matters, so they go reliably.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


def run_node(node_factory: Callable[[], Node], args=None, num_threads: int = 1) -> None:
    """Initialise rclpy, spin the node until shutdown, then clean up.

    Ctrl-C and an external shutdown both end the spin quietly; the node's
    `destroy_node` runs in every case so files and simulators are closed.
    With `num_threads` above 1 a multi-threaded executor runs callbacks of
    different callback groups at the same time.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        if num_threads > 1:
            executor = MultiThreadedExecutor(num_threads=num_threads)
        else:
            executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A signal shuts the context down while a callback may be publishing;
        # the publish then fails, which is part of stopping, not an error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
