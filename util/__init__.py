"""Shared helpers of CBST-MX: network symbols, checkpoint I/O, images, devices."""
