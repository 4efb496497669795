"""Unit constants: the one place where the program says what a GiB, a GB/s or a TFLOP/s is.

Names follow the schema convention: ``_gib`` is 2**30 bytes, ``_gb`` 1e9 bytes, ``_gb_s`` and
``_tb_s`` decimal bytes per second, ``_tflops`` 1e12 FLOP/s. Cost-model internals work in bytes,
FLOP, seconds; results are converted to ms and GiB at the edge with these constants.
"""

from __future__ import annotations

GIB = 2**30
"""Bytes in one GiB (catalog ``hbm_gib``, reported ``*_gib``)."""
GB = 1e9
"""Bytes in one GB (vendors' "GB", link ``_gb_s``)."""
TB = 1e12
"""Bytes in one TB (``hbm_tb_s``)."""
TFLOP = 1e12
"""FLOP in one TFLOP (``dense_tflops``)."""
MS_PER_S = 1e3
US_PER_S = 1e6
S_PER_US = 1e-6
S_PER_MS = 1e-3
