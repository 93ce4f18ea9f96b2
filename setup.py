"""Build of the optional C accelerator of the protocol codec (metadata lives in pyproject.toml).

Without a C compiler the install still succeeds and protocol.codec runs its pure-Python codec.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("protocol._ccodec", ["protocol/_ccodec.c"], optional=True, extra_compile_args=["-O2"])])
