"""Comparison of the NCP with baseline controllers: training, closed-loop driving and the report.

Nothing here imports rclpy. `liquid-driver-compare` (:mod:`.cli`) runs it all.
"""
