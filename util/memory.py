"""The machine's memory, for refusing in seconds a size that cannot fit (instead of a MemoryError hours in)."""
import os

__all__ = ['physical_memory', 'require_memory', 'gigabytes']


def physical_memory():
    """Bytes of physical memory (``os.sysconf``), or None where the system does not say.

    Returns
    -------
    int or None
    """
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):
        return None


def gigabytes(nbytes):
    """``nbytes`` as text in GB with one decimal."""
    return '%.1f GB' % (nbytes / 1e9)


def require_memory(nbytes, what, fix):
    """Raise ``ValueError`` (one line) when ``nbytes`` exceed the machine's physical memory.

    Parameters
    ----------
    nbytes : int
        The estimated need.
    what : str
        What needs it, e.g. ``--shape 100000,100000: 19 maps of 100000x100000``.
    fix : str
        How to lower the need, e.g. ``lower --shape``.
    """
    have = physical_memory()
    if have is not None and nbytes > have:
        raise ValueError('%s need about %s, more than the %s of this machine; %s'
                         % (what, gigabytes(nbytes), gigabytes(have), fix))
