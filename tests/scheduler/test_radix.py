"""The radix tree against a brute-force oracle: a set of cached prefixes with LRU stamps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fairgate.scheduler.radix import RadixTree

SETTINGS = settings(max_examples=300, deadline=None, database=None)


class PrefixSetLRU:
    """The naive reference: every cached prefix of every namespace, each with the stamp of the
    last insert that covered it. Eviction drops the least recently stamped prefix that no other
    cached prefix extends, one token at a time. A prefix is reused once an insert covers it
    while it is cached; the others are cold."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.stamps: dict[tuple[object, tuple[int, ...]], int] = {}
        self.reused: set[tuple[object, tuple[int, ...]]] = set()
        self.tick = 0

    def cold(self) -> int:
        return len(self.stamps) - len(self.reused)

    def match(self, ns: object, tokens: tuple[int, ...]) -> int:
        depth = 0
        while depth < len(tokens) and (ns, tokens[: depth + 1]) in self.stamps:
            depth += 1
        return depth

    def insert(self, ns: object, tokens: tuple[int, ...]) -> int:
        matched = self.match(ns, tokens)
        self.tick += 1
        for depth in range(1, len(tokens) + 1):
            if (ns, tokens[:depth]) in self.stamps:
                self.reused.add((ns, tokens[:depth]))
            self.stamps[(ns, tokens[:depth])] = self.tick
        while len(self.stamps) > self.budget:
            extended = {(ns_, p[:-1]) for ns_, p in self.stamps}
            leaves = [key for key in self.stamps if key not in extended]
            stamps = [self.stamps[key] for key in leaves]
            assert stamps.count(min(stamps)) == 1  # the LRU leaf is unique
            lru = min(leaves, key=self.stamps.__getitem__)
            del self.stamps[lru]
            self.reused.discard(lru)
        return matched


def cached_prefixes(tree: RadixTree) -> set[tuple[object, tuple[int, ...]]]:
    out = set()
    for ns in tree.namespaces():
        for leaf in tree.leaves(ns):
            out.update((ns, leaf[:d]) for d in range(1, len(leaf) + 1))
    return out


tokens = st.lists(st.integers(0, 2), max_size=10).map(tuple)
namespaces = st.sampled_from(["m/a", "m/b"])
ops = st.lists(st.tuples(st.sampled_from(["insert", "match"]), namespaces, tokens), max_size=40)


@SETTINGS
@given(budget=st.integers(0, 30), ops=ops)
def test_tree_matches_the_prefix_set_oracle(budget, ops):
    tree, oracle = RadixTree(budget), PrefixSetLRU(budget)
    for op, ns, seq in ops:
        if op == "insert":
            assert tree.insert(ns, seq) == oracle.insert(ns, seq)
            assert tree.tokens == len(oracle.stamps) <= budget
            assert cached_prefixes(tree) == set(oracle.stamps)
            assert tree.cold_tokens == oracle.cold()
        else:
            assert tree.match(ns, seq) == oracle.match(ns, seq)


@SETTINGS
@given(seqs=st.lists(tokens, max_size=20), queries=st.lists(tokens, max_size=10))
def test_without_eviction_match_is_the_longest_common_prefix_with_any_insert(seqs, queries):
    tree = RadixTree(10_000)
    for seq in seqs:
        tree.insert("ns", seq)

    def lcp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    for query in queries + seqs:
        assert tree.match("ns", query) == max((lcp(query, s) for s in seqs), default=0)
    distinct = {s[:d] for s in seqs for d in range(1, len(s) + 1)}
    assert tree.tokens == len(distinct)


def test_docstring_example():
    tree = RadixTree(100)
    assert tree.insert("ns", (1, 2, 3, 4)) == 0
    assert tree.insert("ns", (1, 2, 5)) == 2
    assert sorted(tree.leaves("ns")) == [(1, 2, 3, 4), (1, 2, 5)]
    assert tree.tokens == 5
    assert tree.match("ns", (1, 2, 3, 9)) == 3
    assert tree.match("other", (1, 2, 3)) == 0


def test_lru_evicts_the_least_recently_inserted_tail_first():
    tree = RadixTree(6)
    tree.insert("ns", (1, 2, 3, 4))  # stamp 1
    tree.insert("ns", (1, 2, 5, 6))  # stamp 2; tokens: 1 2 3 4 5 6 = 6
    tree.insert("ns", (1, 2, 3))  # touch (1, 2, 3): now only (4,) and (5, 6) are cold
    tree.insert("ns", (7,))  # one over budget: the coldest leaf token, 4, goes
    assert sorted(tree.leaves("ns")) == [(1, 2, 3), (1, 2, 5, 6), (7,)]
    tree.insert("ns", (8, 9))  # two more: (5, 6) is now the coldest leaf
    assert sorted(tree.leaves("ns")) == [(1, 2, 3), (7,), (8, 9)]


def test_matching_does_not_refresh_lru():
    tree = RadixTree(4)
    tree.insert("ns", (1, 2))
    tree.insert("ns", (3, 4))
    for _ in range(5):
        assert tree.match("ns", (1, 2)) == 2  # a router probing is not a use
    tree.insert("ns", (5,))
    assert tree.match("ns", (1, 2)) == 1


def test_namespaces_share_the_budget_but_not_prefixes():
    tree = RadixTree(5)
    tree.insert(("m", "lora-a"), (1, 2, 3))
    assert tree.match(("m", "lora-b"), (1, 2, 3)) == 0
    tree.insert(("m", "lora-b"), (1, 2, 3))
    assert tree.tokens == 5
    assert tree.match(("m", "lora-a"), (1, 2, 3)) == 2


def test_zero_budget_caches_nothing_and_long_prompts_keep_their_head():
    assert RadixTree(0).insert("ns", (1, 2, 3)) == 0
    tree = RadixTree(3)
    tree.insert("ns", tuple(range(10)))
    assert tree.match("ns", tuple(range(10))) == 3
    tree.set_budget(1)
    assert tree.tokens == 1


def test_long_sequences_stay_fast():
    tree = RadixTree(1_000_000)
    base = tuple(range(4000))
    for i in range(200):
        tree.insert("ns", base + (i,) * 100)
    assert tree.match("ns", base + (5,) * 100) == 4100
    assert tree.tokens == 4000 + 200 * 100
