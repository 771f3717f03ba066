"""The ROS 2 shell: the lifecycle node and its parts; the only subpackage importing rclpy."""
