"""util.memory: the machine's memory and the one-line refusal of a need above it."""
import pytest

from util import memory


def test_physical_memory_is_known_here_and_a_larger_need_is_one_line(monkeypatch):
    have = memory.physical_memory()
    assert have is None or have > 10 ** 7
    monkeypatch.setattr(memory, 'physical_memory', lambda: 2 * 10 ** 9)
    memory.require_memory(2 * 10 ** 9, 'x', 'y')
    with pytest.raises(ValueError) as err:
        memory.require_memory(3 * 10 ** 9, '--shape 9,9: maps', 'lower --shape')
    assert str(err.value) == '--shape 9,9: maps need about 3.0 GB, more than the 2.0 GB of this machine; lower --shape'
