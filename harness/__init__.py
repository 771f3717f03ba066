"""Drive the fastsam node from Python: launch it as a subprocess, talk to it, run the demo.

For the demo (``make demo``), the benchmark (``bench/``) and the integration tests, run from the checkout.
It is not part of the installed package (CMake installs ``fastsam_ros/`` only, ``setup.py`` packages only
``fastsam_ros``), and importing or constructing anything here changes nothing in the process.
"""
