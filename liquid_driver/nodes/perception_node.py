"""ROS 2 lifecycle node that steers from camera frames with the liquid network.

Subscribes a camera image (raw `sensor_msgs/Image` or a JPEG/PNG
`CompressedImage`), runs CNN -> CfC NCP with dt from the header stamps and
publishes a Twist, TwistStamped or AckermannDriveStamped command.

Lifecycle: configure loads the model and creates the topics, activate starts
publishing, deactivate publishes a stop and goes quiet, cleanup frees the model.
With `autostart` (the default) the node configures and activates itself.
Active is not enough to drive: the node also has to be enabled, by the
`~/enable` service or by `start_enabled`, and no e-stop may be latched.

Safety: a watchdog publishes stop commands and raises an ERROR diagnostic when
no valid image arrived for `watchdog_timeout` seconds (steady clock, so it
works with `use_sim_time` too). `e_stop` (std_msgs/Bool) true latches a stop;
false clears the latch but leaves the node disabled until enabled again. A
non-finite network output becomes a stop.

Threads: image callbacks run in their own mutually exclusive callback group,
and the watchdog, the e-stop, the enable service, the parameter and lifecycle
services and the diagnostics timer in another. The executor has one thread
(see EXECUTOR_THREADS), so an e-stop waits for at most one inference (about
1-2 ms); with more threads the control group runs during inference.
`command_lock` orders everything that decides on or publishes a command.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32MultiArray
from std_srvs.srv import SetBool

from liquid_driver.data.images import ImageFormatError, message_to_rgb
from liquid_driver.inference import (
    BACKENDS,
    SPEED_MODES,
    Command,
    CommandLimits,
    CommandShaper,
    PolicyRunner,
)
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos, declare_parameter, run_node
from liquid_driver.paths import default_model_path

try:  # ackermann_msgs is a separate package that a rover may not have installed
    from ackermann_msgs.msg import AckermannDriveStamped
except ImportError:
    AckermannDriveStamped = None

OUTPUT_TYPES = ("twist", "twist_stamped", "ackermann")
IMAGE_TRANSPORTS = ("raw", "compressed")
STATUS_NAME = "perception_node: inference"
# Parameters that change the command at run time; the others need a restart.
LIMIT_PARAMETERS = ("speed_mode", "speed", "min_speed", "max_speed", "max_lateral_acceleration",
                    "wheelbase", "max_steering_angle", "max_steering_rate")
# rclpy's MultiThreadedExecutor added tens of milliseconds to each frame here
# (rclpy 9.1, Kilted wheels), stalling lock-step runs, while inference takes
# about 1-2 ms. One thread runs the callbacks in turn; the callback groups and
# command_lock stay, so raising this keeps the code correct.
EXECUTOR_THREADS = 1
LOG_THROTTLE_S = 1.0
LATENCY_LOG_PERIOD_S = 10.0
# Arrival times kept for the input rate, and stamp gaps kept to estimate the camera period.
RATE_WINDOW_FRAMES = 60
PERIOD_WINDOW_FRAMES = 30
# A stamp gap above this many camera periods counts the missing frames as dropped.
DROP_GAP_FACTOR = 1.5
# The e-stop must reach the node from any reliable publisher, `ros2 topic pub`
# included, so the subscription requests reliable volatile delivery, which every
# reliable publisher can serve.
E_STOP_QOS = COMMAND_QOS


class PerceptionNode(LifecycleNode):
    """Steer from camera frames with a trained CfC Neural Circuit Policy."""

    def __init__(self):
        super().__init__("perception_node")
        self.shutting_down = False
        self.command_lock = threading.Lock()
        self.steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self.inference_group = MutuallyExclusiveCallbackGroup()
        self.control_group = MutuallyExclusiveCallbackGroup()
        self.declare_driver_parameters()

        self.runner: PolicyRunner | None = None
        self.shaper: CommandShaper | None = None
        self.active = False
        self.enabled = False
        self.e_stop_latched = False
        self.watchdog_tripped = False
        self.last_valid_image = time.monotonic()
        self.reset_counters()

        self.cmd_pub = None
        self.image_sub = None
        self.e_stop_sub = None
        self.enable_srv = None
        self.features_pub = None
        self.neurons_pub = None
        self.saliency_pub = None
        self.watchdog_timer = None
        # Diagnostics run in every lifecycle state, so a monitor also reports an unconfigured node.
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", COMMAND_QOS)
        self.diagnostics_timer = self.create_timer(
            self.diagnostics_period, self.diagnostics_callback,
            callback_group=self.control_group, clock=self.steady_clock)
        self.add_on_set_parameters_callback(self.parameters_callback)

        if self.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError("perception_node failed to configure; see the error above")
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError("perception_node failed to activate; see the error above")

    # Parameters ---------------------------------------------------------------

    def declare_driver_parameters(self) -> None:
        self.model_path = declare_parameter(
            self, "model_path", "",
            "Model file: a .safetensors checkpoint (torch) or an exported .onnx file (onnx); "
            "empty uses the shipped checkpoint", read_only=True)
        self.backend = declare_parameter(
            self, "backend", "torch", "Inference runtime", read_only=True,
            additional_constraints=f"one of: {', '.join(BACKENDS)}")
        self.threads = declare_parameter(
            self, "threads", 1, "Intra-op threads of the inference runtime", read_only=True,
            min_value=1, max_value=64)
        self.max_dt = declare_parameter(
            self, "max_dt", 0.5,
            "A gap between image stamps above this many seconds resets the network state",
            read_only=True, min_value=0.01, max_value=60.0)
        self.image_transport = declare_parameter(
            self, "image_transport", "raw",
            "raw subscribes camera/image_raw (sensor_msgs/Image); compressed subscribes "
            "camera/image_raw/compressed (JPEG or PNG CompressedImage)", read_only=True,
            additional_constraints=f"one of: {', '.join(IMAGE_TRANSPORTS)}")
        self.image_reliable = declare_parameter(
            self, "image_reliable", False,
            "Subscribe the camera with reliable QoS instead of the best-effort sensor-data profile",
            read_only=True)
        self.image_queue_depth = declare_parameter(
            self, "image_queue_depth", 1,
            "Camera frames queued while inference runs; 1 always processes the newest frame",
            read_only=True, min_value=1, max_value=100)
        self.output_type = declare_parameter(
            self, "output_type", "twist",
            "Command message on cmd_vel: geometry_msgs Twist or TwistStamped, or "
            "ackermann_msgs AckermannDriveStamped", read_only=True,
            additional_constraints=f"one of: {', '.join(OUTPUT_TYPES)}")
        self.frame_id = declare_parameter(
            self, "frame_id", "base_link", "frame_id of stamped commands", read_only=True)
        self.autostart = declare_parameter(
            self, "autostart", True,
            "Configure and activate at start; false waits for a lifecycle manager", read_only=True)
        self.start_enabled = declare_parameter(
            self, "start_enabled", False,
            "Drive as soon as the node is active; false waits for a call to ~/enable",
            read_only=True)
        declare_parameter(
            self, "speed_mode", "fixed",
            "fixed drives at speed; curvature slows down in bends to keep the lateral "
            "acceleration under max_lateral_acceleration; model uses the model's speed output",
            additional_constraints=f"one of: {', '.join(SPEED_MODES)}")
        declare_parameter(self, "speed", 1.0, "Cruise speed in m/s", min_value=0.0, max_value=10.0)
        declare_parameter(
            self, "min_speed", 0.3, "Lowest speed of the curvature schedule in m/s",
            min_value=0.0, max_value=10.0)
        declare_parameter(
            self, "max_speed", 2.0, "Clamp on every commanded speed in m/s",
            min_value=0.0, max_value=10.0)
        declare_parameter(
            self, "max_lateral_acceleration", 1.5,
            "Lateral acceleration in m/s^2 that sets the curvature schedule's speed in bends",
            min_value=0.1, max_value=20.0)
        declare_parameter(
            self, "wheelbase", 0.26, "Distance between the axles in m (steering = "
            "atan(wheelbase * curvature))", min_value=0.01, max_value=5.0)
        declare_parameter(
            self, "max_steering_angle", 0.4, "Clamp on the front wheel angle in rad",
            min_value=0.01, max_value=1.5)
        declare_parameter(
            self, "max_steering_rate", 4.0, "Clamp on the change of the front wheel angle in rad/s",
            min_value=0.1, max_value=100.0)
        self.watchdog_timeout = declare_parameter(
            self, "watchdog_timeout", 0.25,
            "Publish stop commands when no valid image arrived for this many seconds",
            min_value=0.02, max_value=10.0)
        self.diagnostics_period = declare_parameter(
            self, "diagnostics_period", 1.0, "Period of the /diagnostics status in s",
            read_only=True, min_value=0.1, max_value=60.0)
        self.publish_debug = declare_parameter(
            self, "publish_debug", False,
            "Publish the CNN features and the NCP neuron states on ~/features and "
            "~/neuron_states", read_only=True)
        self.publish_saliency = declare_parameter(
            self, "publish_saliency", False,
            "Publish a VisualBackProp saliency overlay on ~/saliency (torch backend only)",
            read_only=True)

    def command_limits(self, overrides: dict | None = None) -> CommandLimits:
        """Build the command limits from the current parameters and optional new values."""
        values = {name: self.get_parameter(name).value for name in LIMIT_PARAMETERS}
        values.update(overrides or {})
        return CommandLimits(**values)

    def parameters_callback(self, parameters) -> SetParametersResult:
        """Validate run-time changes together with the current values; apply them if valid."""
        overrides = {p.name: p.value for p in parameters if p.name in LIMIT_PARAMETERS}
        limits = self.command_limits(overrides)
        reason = limits.validate()
        if reason is None and limits.speed_mode == "model" and not self.model_predicts_speed():
            reason = ("speed_mode='model' is invalid for this model because it predicts no "
                      "speed; use 'fixed' or 'curvature'")
        if reason is not None:
            self.get_logger().warning(f"Rejected a parameter change: {reason}")
            return SetParametersResult(successful=False, reason=reason)

        timeout = next((p.value for p in parameters if p.name == "watchdog_timeout"), None)
        with self.command_lock:
            if self.shaper is not None:
                self.shaper.limits = limits
            if timeout is not None:
                self.watchdog_timeout = timeout
                if self.watchdog_timer is not None:
                    self.start_watchdog_timer()
        return SetParametersResult(successful=True)

    def model_predicts_speed(self) -> bool:
        return self.runner is not None and self.runner.predicts_speed

    def check_startup_parameters(self) -> str | None:
        """Return why a read-only parameter is invalid, or None."""
        choices = {"backend": BACKENDS, "image_transport": IMAGE_TRANSPORTS,
                   "output_type": OUTPUT_TYPES}
        for name, valid in choices.items():
            value = getattr(self, name)
            if value not in valid:
                return f"{name}={value!r} is invalid; expected one of {', '.join(valid)}"
        if self.output_type == "ackermann" and AckermannDriveStamped is None:
            return ("output_type='ackermann' needs the ackermann_msgs package, which is not "
                    "installed; install ros-$ROS_DISTRO-ackermann-msgs or choose twist_stamped")
        return self.command_limits().validate()

    # Lifecycle transitions ----------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and create the topics, the service and the watchdog."""
        reason = self.check_startup_parameters()
        if reason is not None:
            self.get_logger().error(f"Cannot configure: {reason}")
            return TransitionCallbackReturn.FAILURE
        path = self.model_path or str(default_model_path())
        try:
            self.runner = PolicyRunner(path, max_dt=self.max_dt, threads=self.threads,
                                       backend=self.backend)
        except (OSError, ImportError, ValueError, RuntimeError) as error:
            self.get_logger().error(f"Cannot configure: failed to load model {path}: {error}")
            return TransitionCallbackReturn.FAILURE
        limits = self.command_limits()
        if limits.speed_mode == "model" and not self.runner.predicts_speed:
            self.get_logger().error(
                f"Cannot configure: speed_mode='model' but {path} predicts no speed; "
                "set speed_mode to fixed or curvature")
            self.runner = None
            return TransitionCallbackReturn.FAILURE
        if self.publish_saliency and not self.runner.supports_saliency:
            self.get_logger().warning(
                f"publish_saliency needs the torch backend; the {self.backend} backend has no "
                "saliency, so ~/saliency stays silent")
        self.shaper = CommandShaper(limits)
        self.get_logger().info(f"Loaded model {self.runner.description} from {path}")

        message_type = {"twist": Twist, "twist_stamped": TwistStamped,
                        "ackermann": AckermannDriveStamped}[self.output_type]
        self.cmd_pub = self.create_publisher(message_type, "cmd_vel", COMMAND_QOS)
        if self.image_transport == "compressed":
            image_type, image_topic = CompressedImage, "camera/image_raw/compressed"
        else:
            image_type, image_topic = Image, "camera/image_raw"
        self.image_sub = self.create_subscription(
            image_type, image_topic, self.image_callback,
            camera_qos(self.image_reliable, depth=self.image_queue_depth),
            callback_group=self.inference_group)
        self.e_stop_sub = self.create_subscription(
            Bool, "e_stop", self.e_stop_callback, E_STOP_QOS, callback_group=self.control_group)
        self.enable_srv = self.create_service(
            SetBool, "~/enable", self.enable_callback, callback_group=self.control_group)
        if self.publish_debug:
            self.features_pub = self.create_publisher(Float32MultiArray, "~/features", COMMAND_QOS)
            self.neurons_pub = self.create_publisher(
                Float32MultiArray, "~/neuron_states", COMMAND_QOS)
        if self.publish_saliency:
            self.saliency_pub = self.create_publisher(Image, "~/saliency", COMMAND_QOS)
        self.start_watchdog_timer()
        self.get_logger().info(
            f"Configured: {self.image_transport} images on {self.image_sub.topic_name}, "
            f"{self.output_type} commands on {self.cmd_pub.topic_name}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start processing frames, and drive at once only with start_enabled."""
        with self.command_lock:
            self.active = True
            self.enabled = self.start_enabled and not self.e_stop_latched
            self.restart_driving()
        state_text = "enabled" if self.enabled else "disabled until ~/enable is called"
        self.get_logger().info(f"Activated, {state_text}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Publish a stop, then ignore frames until activated again."""
        with self.command_lock:
            self.publish_stop()
            self.active = False
            self.enabled = False
        self.get_logger().info("Deactivated after publishing a stop")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model and destroy the topics, the service and the watchdog."""
        self.destroy_driving_entities()
        self.get_logger().info("Cleaned up: model unloaded")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Publish a stop if active, then free everything."""
        with self.command_lock:
            if self.active:
                self.publish_stop()
            self.active = False
        self.destroy_driving_entities()
        self.get_logger().info("Shut down")
        return TransitionCallbackReturn.SUCCESS

    def destroy_driving_entities(self) -> None:
        with self.command_lock:
            for timer in (self.watchdog_timer,):
                if timer is not None:
                    self.destroy_timer(timer)
            for subscription in (self.image_sub, self.e_stop_sub):
                if subscription is not None:
                    self.destroy_subscription(subscription)
            if self.enable_srv is not None:
                self.destroy_service(self.enable_srv)
            for publisher in (self.cmd_pub, self.features_pub, self.neurons_pub, self.saliency_pub):
                if publisher is not None:
                    self.destroy_publisher(publisher)
            self.watchdog_timer = self.image_sub = self.e_stop_sub = self.enable_srv = None
            self.cmd_pub = self.features_pub = self.neurons_pub = self.saliency_pub = None
            self.runner = None
            self.shaper = None

    # Driving state ------------------------------------------------------------

    def reset_counters(self) -> None:
        self.frames = 0
        self.rejected_frames = 0
        self.dropped_frames = 0
        self.nonfinite_outputs = 0
        self.rejection_logged: dict[str, float] = {}
        self.arrivals: deque[float] = deque(maxlen=RATE_WINDOW_FRAMES)
        self.stamp_gaps: deque[float] = deque(maxlen=PERIOD_WINDOW_FRAMES)
        self.last_latency_log = time.monotonic()

    def restart_driving(self) -> None:
        """Forget the network state and the steering history, and rearm the watchdog.

        The caller holds command_lock.
        """
        if self.runner is not None:
            self.runner.reset()
        if self.shaper is not None:
            self.shaper.reset()
        self.last_valid_image = time.monotonic()
        self.watchdog_tripped = False

    def driving(self) -> bool:
        return self.active and self.enabled and not self.e_stop_latched

    def start_watchdog_timer(self) -> None:
        if self.watchdog_timer is not None:
            self.destroy_timer(self.watchdog_timer)
        period = min(self.watchdog_timeout / 2.0, 0.05)
        self.watchdog_timer = self.create_timer(
            period, self.watchdog_callback, callback_group=self.control_group,
            clock=self.steady_clock)

    # Callbacks ----------------------------------------------------------------

    def image_callback(self, msg) -> None:
        received = time.monotonic()
        runner = self.runner
        if runner is None or not self.active:
            return
        self.arrivals.append(received)
        try:
            rgb = message_to_rgb(msg)
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            prediction = runner.predict(
                rgb, stamp, debug=self.publish_debug, saliency=self.saliency_pub is not None)
        except (ImageFormatError, ValueError, TypeError) as error:
            self.rejected_frames += 1
            self.log_rejection(error)
            return

        if prediction.reset_reason is not None:
            self.get_logger().warning(f"Reset the network state: {prediction.reset_reason}")
        else:
            self.count_dropped_frames(prediction.dt)
        self.publish_debug_topics(msg, prediction)

        with self.command_lock:
            self.answer_frame(prediction, received)

        now = time.monotonic()
        if now - self.last_latency_log > LATENCY_LOG_PERIOD_S:
            self.last_latency_log = now
            p50, p99 = runner.latency_ms()
            self.get_logger().info(
                f"{self.frames} frames, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    def answer_frame(self, prediction, received: float) -> None:
        """Publish the command for one frame; the caller holds command_lock."""
        if not self.active or self.shaper is None:
            return
        if not math.isfinite(prediction.curvature):
            self.nonfinite_outputs += 1
            self.get_logger().error(
                f"Network output is not finite ({self.nonfinite_outputs} so far); "
                "publishing a stop", throttle_duration_sec=LOG_THROTTLE_S)
            if self.enabled or self.e_stop_latched:
                self.publish_stop()
            return

        self.frames += 1
        elapsed = time.monotonic() - received
        if elapsed > self.watchdog_timeout:
            # The watchdog may already have stopped the car, and a late command must not restart it.
            self.get_logger().error(
                f"Inference took {elapsed:.3f} s, more than watchdog_timeout="
                f"{self.watchdog_timeout:.3f} s; dropping the command",
                throttle_duration_sec=LOG_THROTTLE_S)
            return
        self.last_valid_image = time.monotonic()
        if self.watchdog_tripped:
            self.watchdog_tripped = False
            self.get_logger().info("Valid images are back; watchdog cleared")

        command = self.shaper.shape(prediction.curvature, prediction.dt, prediction.speed)
        if self.e_stop_latched:
            self.publish_stop()
        elif self.enabled:
            self.publish_command(command)

    def log_rejection(self, error: Exception) -> None:
        """Log a rejected frame, at most once per LOG_THROTTLE_S for each kind of error.

        rclpy throttles per call site, which would hide a second kind of bad
        frame behind the first; the kind here is the error's text up to its
        first digit, so the same fault with other sizes counts as one kind.
        """
        text = str(error)
        kind = text[:next((i for i, c in enumerate(text) if c.isdigit()), len(text))]
        now = time.monotonic()
        if now - self.rejection_logged.get(kind, -math.inf) < LOG_THROTTLE_S:
            return
        self.rejection_logged[kind] = now
        self.get_logger().error(f"Rejected image ({self.rejected_frames} so far): {text}")

    def count_dropped_frames(self, dt: float) -> None:
        self.stamp_gaps.append(dt)
        period = float(np.median(self.stamp_gaps))
        if period > 0.0 and dt > DROP_GAP_FACTOR * period:
            self.dropped_frames += int(round(dt / period)) - 1

    def watchdog_callback(self) -> None:
        with self.command_lock:
            if self.e_stop_latched and self.active:
                self.publish_stop()
                return
            if not self.driving():
                return
            silent = time.monotonic() - self.last_valid_image
            if silent <= self.watchdog_timeout:
                return
            if not self.watchdog_tripped:
                self.watchdog_tripped = True
                self.get_logger().error(
                    f"No valid image for {silent:.2f} s (watchdog_timeout="
                    f"{self.watchdog_timeout:.2f} s); publishing stop commands")
            self.publish_stop()

    def e_stop_callback(self, msg: Bool) -> None:
        with self.command_lock:
            if msg.data and not self.e_stop_latched:
                self.e_stop_latched = True
                self.enabled = False
                if self.active:
                    self.publish_stop()
                self.get_logger().error(
                    "E-stop engaged: publishing stop commands until false is published on e_stop")
            elif not msg.data and self.e_stop_latched:
                self.e_stop_latched = False
                self.get_logger().warning("E-stop cleared; call ~/enable to drive again")

    def enable_callback(self, request: SetBool.Request, response: SetBool.Response):
        with self.command_lock:
            if not request.data:
                was_enabled = self.enabled
                self.enabled = False
                if self.active:
                    self.publish_stop()
                response.success = True
                response.message = "disabled" if was_enabled else "already disabled"
            elif self.e_stop_latched:
                response.success = False
                response.message = "e-stop is latched; publish false on e_stop first"
            elif not self.active:
                response.success = False
                response.message = "node is not active; activate it through its lifecycle first"
            else:
                if not self.enabled:
                    self.enabled = True
                    self.restart_driving()
                response.success = True
                response.message = "enabled"
        self.get_logger().info(
            f"~/enable {request.data}: {'done' if response.success else 'rejected'}, "
            f"{response.message}")
        return response

    # Publishing ---------------------------------------------------------------

    def make_command(self, command: Command):
        if self.output_type == "twist":
            msg = Twist()
            msg.linear.x = float(command.speed)
            msg.angular.z = float(command.yaw_rate)
            return msg
        if self.output_type == "twist_stamped":
            msg = TwistStamped()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.frame_id
            msg.twist.linear.x = float(command.speed)
            msg.twist.angular.z = float(command.yaw_rate)
            return msg
        msg = AckermannDriveStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        msg.drive.speed = float(command.speed)
        msg.drive.steering_angle = float(command.steering_angle)
        return msg

    def publish_command(self, command: Command) -> None:
        if self.cmd_pub is not None:
            self.cmd_pub.publish(self.make_command(command))

    def publish_stop(self) -> None:
        """Publish zero speed and straight wheels; the caller holds command_lock."""
        self.publish_command(Command(speed=0.0, curvature=0.0, steering_angle=0.0))
        if self.shaper is not None:
            self.shaper.reset()

    def publish_debug_topics(self, msg, prediction) -> None:
        if self.features_pub is not None and prediction.features is not None:
            self.features_pub.publish(Float32MultiArray(data=prediction.features.tolist()))
        if self.neurons_pub is not None and prediction.neuron_states is not None:
            self.neurons_pub.publish(Float32MultiArray(data=prediction.neuron_states.tolist()))
        if self.saliency_pub is not None and prediction.saliency is not None:
            from liquid_driver.saliency import saliency_overlay

            overlay = saliency_overlay(prediction.frame, prediction.saliency)
            image = Image()
            image.header = msg.header
            image.height, image.width = overlay.shape[:2]
            image.encoding = "rgb8"
            image.step = overlay.shape[1] * 3
            image.data = overlay.tobytes()
            self.saliency_pub.publish(image)

    def diagnostics_callback(self) -> None:
        runner = self.runner
        p50, p99 = runner.latency_ms() if runner is not None else (float("nan"),) * 2
        arrivals = list(self.arrivals)
        span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
        recent = arrivals and time.monotonic() - arrivals[-1] < 2.0 * self.watchdog_timeout + 1.0
        rate = (len(arrivals) - 1) / span if span > 0.0 and recent else 0.0

        status = DiagnosticStatus()
        status.name = STATUS_NAME
        status.hardware_id = runner.checkpoint_path.name if runner is not None else ""
        with self.command_lock:
            status.level, status.message, watchdog = self.summarise_state()
            values = {
                "enabled": str(self.enabled).lower(),
                "active": str(self.active).lower(),
                "e_stop": "latched" if self.e_stop_latched else "clear",
                "watchdog": watchdog,
            }
        values.update({
            "frames": str(self.frames),
            "rejected_frames": str(self.rejected_frames),
            "dropped_frames": str(self.dropped_frames),
            "nonfinite_outputs": str(self.nonfinite_outputs),
            "state_resets": str(runner.resets if runner is not None else 0),
            "input_rate_hz": f"{rate:.2f}",
            "latency_p50_ms": f"{p50:.3f}",
            "latency_p99_ms": f"{p99:.3f}",
            "model": runner.description if runner is not None else "",
            "backend": self.backend,
            "output_type": self.output_type,
            "watchdog_timeout_s": f"{self.watchdog_timeout:.3f}",
        })
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diagnostics_pub.publish(array)

    def summarise_state(self) -> tuple[bytes, str, str]:
        """Return (level, message, watchdog state); the caller holds command_lock."""
        if self.runner is None:
            return DiagnosticStatus.WARN, "not configured: no model loaded", "disarmed"
        if not self.active:
            return DiagnosticStatus.OK, "inactive", "disarmed"
        if self.e_stop_latched:
            return DiagnosticStatus.ERROR, "e-stop latched; publishing stops", "disarmed"
        if not self.enabled:
            return DiagnosticStatus.OK, "disabled; call ~/enable to drive", "disarmed"
        if self.watchdog_tripped:
            return (DiagnosticStatus.ERROR,
                    f"no valid image for more than {self.watchdog_timeout:.2f} s; publishing stops",
                    "tripped")
        return DiagnosticStatus.OK, "driving", "ok"

    def destroy_node(self):
        # Kilted's context shutdown destroys tracked nodes, and main() does too.
        if not self.shutting_down:
            self.shutting_down = True
            runner = self.runner
            if runner is not None:
                p50, p99 = runner.latency_ms()
                self.get_logger().info(
                    f"Shutting down after {self.frames} frames ({self.rejected_frames} "
                    f"rejected): latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        return super().destroy_node()


def main(args=None) -> None:
    run_node(PerceptionNode, args, num_threads=EXECUTOR_THREADS)


if __name__ == "__main__":
    main()
