"""--gpus parsing and the CPU fallback."""
import logging

import mxnet as mx
import pytest

from util import device


def test_no_gpu_falls_back_to_cpu_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(device, 'num_gpus', lambda: 0)
    monkeypatch.setattr(device, '_WARNED', set())
    with caplog.at_level(logging.WARNING):
        assert device.get_contexts('0') == [mx.cpu()]
        assert device.get_contexts('0') == [mx.cpu()]   # asked again in the same run: said once
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_no_gpu_gives_one_cpu_context_per_listed_device(monkeypatch):
    # the batch is then split as on the GPUs (two executors for 0,1)
    monkeypatch.setattr(device, 'num_gpus', lambda: 0)
    assert device.get_contexts('0,1') == [mx.cpu(0), mx.cpu(1)]
    assert device.get_contexts('2,5,7') == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]


def test_one_context_per_device(monkeypatch):
    monkeypatch.setattr(device, 'num_gpus', lambda: 4)
    assert device.get_contexts('0,1') == [mx.gpu(0), mx.gpu(1)]
    with pytest.raises(ValueError, match='only 4 GPU'):
        device.get_contexts('0,7')


def test_cpu_spellings_and_bad_text():
    assert device.get_contexts('') == [mx.cpu()]
    assert device.get_contexts('cpu') == [mx.cpu()]
    with pytest.raises(ValueError, match='comma list'):
        device.get_contexts('zero')
