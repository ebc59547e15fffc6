"""How a delegate's supported ops become partitions, as the TFLite runtime forms them.

TFLite (``GraphPartitionHelper`` over ``PartitionGraphIntoIndependentNodeSubsets``, tensorflow/lite/graph_info.cc)
splits the graph into alternating subsets of supported and unsupported nodes: a subset grows with every node of its
kind whose inputs are already computed, so supported ops on independent branches join one partition even when an
unsupported op sits between them in execution order. :func:`graph_partitions` does the same: alternately take the
dependency-closed set of ready supported (then unsupported) ops, starting with the kind of the first op.

The delegate then keeps at most ``max_partitions`` of the supported subsets, largest first, skipping those with fewer
than ``min_nodes`` ops (``GetFirstNLargestPartitions``); the rest run on the CPU.

The Edge TPU compiler works differently: it maps ops in execution order up to the first one it cannot map and leaves
that op and everything after it on the CPU (:func:`prefix_partition`).

    >>> graph_partitions([[], [0], [1]], [True, False, True])
    [(True, [0]), (False, [1]), (True, [2])]
    >>> graph_partitions([[], [], [0, 1]], [True, False, True])   # op 1 does not depend on op 0
    [(True, [0]), (False, [1]), (True, [2])]
    >>> graph_partitions([[], [], [0], [1]], [True, False, True, True])   # op 2 only needs op 0: same subset
    [(True, [0, 2]), (False, [1]), (True, [3])]
"""
from __future__ import annotations

from typing import Sequence


def dependencies(ops_inputs: Sequence[Sequence[int]], ops_outputs: Sequence[Sequence[int]]) -> list[list[int]]:
    """For every op, the indices of the ops that produce its inputs."""
    producer = {t: k for k, outs in enumerate(ops_outputs) for t in outs}
    return [sorted({producer[t] for t in ins if t in producer}) for ins in ops_inputs]


def graph_partitions(deps: Sequence[Sequence[int]], supported: Sequence[bool]) -> list[tuple[bool, list[int]]]:
    """Alternating (supported?, op indices) subsets covering every op once, in dependency order."""
    n = len(supported)
    done = [False] * n
    left = n
    out: list[tuple[bool, list[int]]] = []
    kind = bool(supported[0]) if n else True
    while left:
        subset: list[int] = []
        grew = True
        while grew:
            grew = False
            for k in range(n):
                if not done[k] and supported[k] == kind and all(done[d] for d in deps[k]):
                    done[k] = True
                    subset.append(k)
                    left -= 1
                    grew = True
        if subset:
            out.append((kind, sorted(subset)))
        kind = not kind
    return out


def select(parts: Sequence[tuple[bool, list[int]]], *, max_partitions: int | None,
           min_nodes: int = 1) -> list[list[int]]:
    """The supported subsets a delegate actually takes: the largest first, at most ``max_partitions``."""
    candidates = [ops for ok, ops in parts if ok and len(ops) >= min_nodes]
    candidates.sort(key=lambda ops: (-len(ops), ops[0]))
    if max_partitions:
        candidates = candidates[:max_partitions]
    return sorted(candidates, key=lambda ops: ops[0])


def prefix_partition(supported: Sequence[bool]) -> list[list[int]]:
    """Edge TPU: the ops before the first unsupported one, as one partition (none if op 0 is unsupported)."""
    first_bad = next((k for k, ok in enumerate(supported) if not ok), len(supported))
    return [list(range(first_bad))] if first_bad else []
