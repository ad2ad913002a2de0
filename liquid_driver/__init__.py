"""Lane keeping from a forward camera with a liquid neural network.

The packages below this one never import rclpy, so the model, data, training and
simulator code runs without ROS 2: `model` (CNN and CfC Neural Circuit Policy),
`sim` (embedded MuJoCo simulator and expert driver), `data` (images, rosbag2
files, datasets), `train` (trainer) and `inference` (frame-by-frame driving).
Only `nodes` and `tools` talk to ROS 2.
"""

__version__ = "0.1.0"
