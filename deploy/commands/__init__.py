"""The sub-commands of `bsemu`, one module each (see :mod:`deploy.cli`)."""
