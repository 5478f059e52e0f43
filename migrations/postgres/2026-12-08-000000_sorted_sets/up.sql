-- Sorted sets. A member's row is found by (collection, member) for ZSCORE and ZADD, and the
-- index on (collection, score, member) gives the order for ranges by score and by lex.
-- Ranks: kv_zset_block splits a large sorted set's order into blocks of 256 to 512
-- members (a block: the position (score, member) it starts at and how many members it holds),
-- so a rank is the sizes of the blocks before a member's block plus a count within it. A
-- sorted set of at most 512 members has no block rows (it is one block).
CREATE TABLE kv_zset (
    coll   BIGINT NOT NULL,
    member TEXT COLLATE "C" NOT NULL,
    score  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (coll, member)
);
CREATE INDEX kv_zset_order ON kv_zset (coll, score, member);

CREATE TABLE kv_zset_block (
    coll   BIGINT NOT NULL,
    score  DOUBLE PRECISION NOT NULL,
    member TEXT COLLATE "C" NOT NULL,
    size   BIGINT NOT NULL,
    PRIMARY KEY (coll, score, member)
);
