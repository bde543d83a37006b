"""Start a job on MXNet's parameter server: python -m issegm.launch -n W [-s S] -- CMD.

A thin entry point; the work is in :mod:`issegm.cluster.launcher`.
"""
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.cluster.launcher import main  # noqa: E402

__all__ = ['main']

if __name__ == '__main__':
    sys.exit(main())
