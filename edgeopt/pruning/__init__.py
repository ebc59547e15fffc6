"""Structured pruning: remove whole channels so that the network really shrinks (``prune.structured``).

- :mod:`.graph`: the channel dependency graph (units and groups, in the manner of Torch-Pruning's groups).
- :mod:`.select`: importance (L1, L2, BatchNorm scale) and widths for a channel-ratio or MACs target;
  :mod:`.taylor`: first-order Taylor importance on training batches.
- :mod:`.surgery`: the smaller model with sliced weights; ``zero_removed`` is its numerical reference.
- :mod:`.run`: pruning in steps with fine-tuning through the shared trainer; :mod:`.stage`: the stage.

The package is ``pruning`` because ``edgeopt.prune`` is the public function.
"""
