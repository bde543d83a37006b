#!/usr/bin/env bash
# Put the headless OpenCV binary back into cv2 after an install of the project.
# gluoncv requires opencv-python (the GUI build, whose cv2 needs the system's
# libGL.so.1); the project requires opencv-python-headless at the same release
# (setup.py). Both write the package cv2 and pip installs opencv-python last:
# reinstalling the headless one leaves cv2 importable without libGL.
#   bash scripts/headless_cv2.sh .venv/bin/python
set -euo pipefail
py=$1
headless=$("$py" -c 'from importlib.metadata import version; print(version("opencv-python-headless"))')
"$py" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$headless"
