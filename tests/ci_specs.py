"""A small spec the CI tests share: own block of 4 keys directly, every earlier block through its summary (proved)."""

BLOCKS4 = """\
pattern blocks4:
    causal
    direct: j // 4 == i // 4
    partition block[r in 0 .. cdiv(L, 4)]:
        member: j // 4 == r
        select: r < i // 4
        summary: max
"""
