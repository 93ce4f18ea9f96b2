"""Build of the optional C accelerators (metadata lives in pyproject.toml): the protocol codec and the
execution phase's one-slot policy mean.

Without a C compiler the install still succeeds: protocol.codec runs its pure-Python codec and
bs_agent.trpo.lean its numpy forward.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("protocol._ccodec", ["protocol/_ccodec.c"], optional=True, extra_compile_args=["-O2"]),
    Extension("bs_agent.trpo._cpolicy", ["bs_agent/trpo/_cpolicy.c"], optional=True, extra_compile_args=["-O3"]),
])
