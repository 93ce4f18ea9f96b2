"""radio: the physics and the classical solvers of bsemu.

Convention used throughout the project (documented once, here):

* link ``l = b * K + k`` is user ``k`` of base station ``b`` (``B`` cells, ``K`` users per cell,
  ``L = B * K`` links). In the N-link model of paper 2 every link is its own "cell" (``K = 1``).
* ``G[..., l, j]`` is the linear **power gain** from the BS serving link ``j`` to the user of link ``l``.
  Hence ``G[..., l, j] == G[..., l, l]`` whenever ``j`` is served by the same BS as ``l``
  (intra-cell interference travels over the user's own downlink), exactly as in the sum-rate of
  paper 1, Sec. II.
* Arrays are batched over a leading ``slots`` axis: ``G`` is ``[n, L, L]``, powers ``p`` are ``[n, L]``
  in watts, noise ``noise_w`` is a scalar in watts, rates are in bit/s/Hz unless a name says Mbps.
* Randomness comes from explicit ``numpy.random.Generator`` objects; nothing here touches global RNG.
"""
