"""Token-level radix tree: the prefix index that mirrors one replica's KV cache.

After ``insert(ns, (1, 2, 3, 4))`` then ``insert(ns, (1, 2, 5))`` the tree is::

    root(ns)                       depth 0
     └─ [1 2]        stamp 2       depth 0..2   (split when (1, 2, 5) diverged at depth 2)
         ├─ [3 4]    stamp 1       depth 2..4
         └─ [5]      stamp 2       depth 2..3

Three choices keep it fast and exact:

- An edge is a *view* ``seq[start:end]`` into the token tuple that created it, and because a
  node's path is a prefix of that tuple, ``start`` and ``end`` are depths. Splitting an edge is
  O(1), and comparing an edge with a query is one C-level tuple-slice comparison, so insert and
  match run in time linear in the matched length.
- Every insert takes a new ``stamp`` (a counter, not a clock) and stamps the whole path it
  touches, splitting the last edge where the path ends so that all tokens of one node share one
  stamp. Matching does not touch stamps: routers probe every replica's tree and must not
  refresh what they only looked at.
- LRU eviction trims the least recently stamped *leaf* token by token until the tree fits its
  budget (a heap with lazy invalidation). Because stamps grow toward the root, this removes the
  least recently used tokens that no cached sequence still extends: exactly what a token-level
  LRU over a prefix-closed set does (``tests/scheduler/test_radix.py`` checks this against a
  brute-force set of prefixes). Nodes are never merged back, so stamps stay per node.

A node is *reused* once a later insert passes through it; the others' tokens are
``cold_tokens`` (a unique question, a prompt's unique tail): routers count them as room,
since evicting them loses no prefix that a second job has used.

Caches are namespaced (model, LoRA adapter / cache salt): each namespace has its own root, and
all namespaces share the one token budget, as they share one engine's KV pool.

A ``TreeListener`` hears about every structural change; ``scheduler.prefix_queue`` uses it to
keep waiting jobs at their exact match depth without re-matching them.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

Namespace = Hashable


@dataclass(slots=True, eq=False)
class Node:
    """One edge of the tree, ``seq[start:end]``; ``end`` is the depth at the node's end."""

    seq: tuple[int, ...]
    start: int
    end: int
    parent: Node | None
    stamp: int
    children: dict[int, Node] = field(default_factory=dict)
    alive: bool = True
    reused: bool = False  # a later insert passed through it

    @property
    def is_root(self) -> bool:
        return self.parent is None


class TreeListener(Protocol):
    """Structural changes, reported in the order they happen."""

    def extended(self, node: Node, child: Node) -> None:
        """``child`` was added under ``node`` (at depth ``node.end``)."""

    def split(self, top: Node, bottom: Node) -> None:
        """An edge was cut at depth ``top.end``; ``bottom`` (the old object) hangs under ``top``."""

    def trimmed(self, node: Node) -> None:
        """A leaf lost tokens at its tail; its new end is ``node.end`` (> ``node.start``)."""

    def removed(self, node: Node, parent: Node) -> None:
        """A leaf was evicted entirely; paths through it now end at ``parent.end``."""


class RadixTree:
    def __init__(self, budget: int, listener: TreeListener | None = None) -> None:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.budget = budget
        self.listener = listener
        self._roots: dict[Namespace, Node] = {}
        self._tokens = 0
        self._nodes = 0
        self._tick = 0
        self._uid = 0
        self._heap: list[tuple[int, int, Node]] = []
        self._cold = 0  # tokens no insert has passed through since the one that added them

    # -- queries (read-only) ---------------------------------------------------------------
    @property
    def tokens(self) -> int:
        """Cached tokens, over all namespaces; never above ``budget`` after an insert."""
        return self._tokens

    @property
    def cold_tokens(self) -> int:
        """Cached tokens that only the job which brought them has used (a unique question, a
        conversation's latest turn): no other cached prefix is lost when they are evicted."""
        return self._cold

    def match(self, ns: Namespace, tokens: tuple[int, ...]) -> int:
        """Length of the longest cached prefix of ``tokens``."""
        root = self._roots.get(ns)
        if root is None:
            return 0
        return self.walk(root, tokens)[1]

    def locate(self, ns: Namespace, tokens: tuple[int, ...]) -> tuple[Node, int]:
        """Where ``tokens`` stop matching: ``(node, depth)`` with ``node.start < depth <= node.end``
        (or the namespace root and depth 0). Creates the namespace's root if needed."""
        return self.walk(self._root(ns), tokens)

    def walk(self, node: Node, tokens: tuple[int, ...]) -> tuple[Node, int]:
        """Continue matching ``tokens`` from the end of ``node`` (whose path they already match)."""
        depth = node.end
        n = len(tokens)
        while depth < n:
            child = node.children.get(tokens[depth])
            if child is None:
                break
            stop = min(child.end, n)
            if child.seq[depth:stop] == tokens[depth:stop]:
                if stop < child.end:
                    return child, stop
                node, depth = child, stop
            else:
                return child, _mismatch(child.seq, tokens, depth + 1, stop)
        return node, depth

    def leaves(self, ns: Namespace) -> Iterator[tuple[int, ...]]:
        """Every maximal cached sequence of ``ns`` (the tree's content is their prefixes)."""
        root = self._roots.get(ns)
        stack = [root] if root is not None else []
        while stack:
            node = stack.pop()
            if not node.children and not node.is_root:
                yield node.seq[: node.end]
            stack.extend(node.children.values())

    def namespaces(self) -> list[Namespace]:
        return list(self._roots)

    # -- updates ---------------------------------------------------------------------------
    def insert(self, ns: Namespace, tokens: tuple[int, ...]) -> int:
        """Cache ``tokens`` as the most recently used sequence; evict to the budget.

        Returns how many leading tokens were already cached before the insert.
        """
        self._tick += 1
        tick = self._tick
        node = self._root(ns)
        depth = 0
        matched: int | None = None
        n = len(tokens)
        while depth < n:
            child = node.children.get(tokens[depth])
            if child is None:
                matched = depth
                leaf = self._new_node(tokens, depth, n, node, tick)
                node.children[tokens[depth]] = leaf
                self._tokens += n - depth
                self._cold += n - depth
                self._push(leaf)
                if self.listener is not None:
                    self.listener.extended(node, leaf)
                node, depth = leaf, n
                break
            stop = min(child.end, n)
            if child.seq[depth:stop] == tokens[depth:stop]:
                cut = stop
            else:
                cut = _mismatch(child.seq, tokens, depth + 1, stop)
            if cut < child.end:
                child = self._split(child, cut)
            if not child.reused:
                child.reused = True
                self._cold -= child.end - child.start
            child.stamp = tick
            node, depth = child, cut
        if matched is None:
            matched = n
        if not node.children and not node.is_root:
            self._push(node)
        self._evict()
        return matched

    def set_budget(self, budget: int) -> None:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.budget = budget
        self._evict()

    # -- internals -------------------------------------------------------------------------
    def _root(self, ns: Namespace) -> Node:
        root = self._roots.get(ns)
        if root is None:
            root = Node((), 0, 0, None, 0)
            self._roots[ns] = root
        return root

    def _new_node(
        self, seq: tuple[int, ...], start: int, end: int, parent: Node, stamp: int
    ) -> Node:
        self._nodes += 1
        return Node(seq, start, end, parent, stamp)

    def _split(self, node: Node, at: int) -> Node:
        parent = node.parent
        if parent is None:  # pragma: no cover - roots have no edge to split
            raise RuntimeError("cannot split a root")
        top = self._new_node(node.seq, node.start, at, parent, node.stamp)
        top.reused = node.reused
        parent.children[node.seq[node.start]] = top
        node.start = at
        node.parent = top
        top.children[node.seq[at]] = node
        if self.listener is not None:
            self.listener.split(top, node)
        return top

    def _push(self, node: Node) -> None:
        self._uid += 1
        heapq.heappush(self._heap, (node.stamp, self._uid, node))

    def _evict(self) -> None:
        heap = self._heap
        while self._tokens > self.budget:
            stamp, uid, node = heapq.heappop(heap)
            if not node.alive or node.children or node.stamp != stamp:
                continue  # stale entry: the node was touched, extended or removed since
            parent = node.parent
            if parent is None:  # pragma: no cover - roots are never pushed
                continue
            excess = self._tokens - self.budget
            length = node.end - node.start
            if excess >= length:
                del parent.children[node.seq[node.start]]
                node.alive = False
                self._nodes -= 1
                self._tokens -= length
                self._cold -= 0 if node.reused else length
                if self.listener is not None:
                    self.listener.removed(node, parent)
                if not parent.children and not parent.is_root:
                    self._push(parent)
            else:
                node.end -= excess
                self._tokens -= excess
                self._cold -= 0 if node.reused else excess
                heapq.heappush(heap, (stamp, uid, node))
                if self.listener is not None:
                    self.listener.trimmed(node)
        if len(heap) > 4 * self._nodes + 1024:
            self._compact()

    def _compact(self) -> None:
        """Drop stale heap entries: rebuild from the live leaves."""
        self._heap = []
        for root in self._roots.values():
            stack = list(root.children.values())
            while stack:
                node = stack.pop()
                if node.children:
                    stack.extend(node.children.values())
                else:
                    self._uid += 1
                    self._heap.append((node.stamp, self._uid, node))
        heapq.heapify(self._heap)


def _mismatch(seq: tuple[int, ...], tokens: tuple[int, ...], lo: int, hi: int) -> int:
    """First depth in [lo, hi) where ``seq`` and ``tokens`` differ; the caller knows they do.

    Bisects with slice comparisons, which run in C: n/2 + n/4 + ... token compares, so still
    linear in the matched length, with O(log n) Python steps instead of n.
    """
    while hi - lo > 8:
        mid = (lo + hi) // 2
        if seq[lo:mid] == tokens[lo:mid]:
            lo = mid
        else:
            hi = mid
    for i in range(lo, hi):
        if seq[i] != tokens[i]:
            return i
    return hi
