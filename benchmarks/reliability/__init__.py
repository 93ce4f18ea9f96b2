"""Reliability checks measured side by side: how the system ends when it is handed what it must refuse.

Sections (run all, or name some), from the repository root:

    python -m benchmarks.reliability                 # every section
    python -m benchmarks.reliability bad_inputs      # one section
    python benchmarks/reliability frames faults      # the same, the folder run as a script

* ``bad_inputs`` (``inputs.py``): every bad command line of ``tests/deploy/test_bad_input.py`` (arguments, configs,
  gains files, output folders, run folders, checkpoints): how it ended (exit code, first stderr line), whether its
  folder changed, and the count of tracebacks (goal 0) and of cases that did not end as they must (exit 2,
  one line ``bsemu <command>: error: ...``, nothing written).
* ``frames`` (``frames.py``, ``live.py``, ``hub.py``): frames at a live node. Random, truncated, malformed, oversize,
  spoofed, replayed and flood frames (and raw TCP garbage) at a live ``RingNode`` in its own process, without and
  with CURVE, and at the air port's ``Hub``, on 127.0.0.1: per attack the frames sent, how they ended (rejected and
  by which class, delivered, connection dropped, handshake refused, raised), the node's RSS growth while it does
  not read, and whether it still delivered a good message afterwards; load average before and after.
* ``faults`` (``faults.py``): a BS or link actor's process SIGKILLed (``run.max_restarts`` 0 and 1), the driver
  SIGKILLed, the driver interrupted (SIGINT), each in the middle of a small ``bsemu train`` / ``bsemu zo`` run: how
  it ended (exit code, its line), whether the run continued (the printed ``--resume``, or the restart) completed,
  equal to the same run uninterrupted (metrics rows and parameters, logical time), and whether actor processes were
  left running.
* ``loss`` (``loss.py``): messages lost vs logged at 0 / 5 / 10 / 20 % loss, for zeroth-order d messages
  (``algo.drop_prob``) and the execution phase's round-robin vectors (``links.loss``): sent, received, dropped,
  sent = received + dropped.

Kept light: a spawned child process imports this package to reach ``live._target``.
"""
