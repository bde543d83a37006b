"""Prepare the datasets' files: lists, GTA-5 resize, SYNTHIA label conversion.

A thin entry point; the work is in :mod:`issegm.storage.preparation`.
"""
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from issegm.storage.preparation import main  # noqa: E402

__all__ = ['main']

if __name__ == '__main__':
    sys.exit(main())
