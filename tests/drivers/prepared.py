"""Named prepared statements through pgroute from Python drivers (run by tests/tests/proxy/prepared.rs).

psycopg 3 with prepare_threshold=0 prepares every statement server-side; asyncpg names every statement
(__asyncpg_stmt_N__) and keeps a statement cache. Several clients share a pool smaller than their number
and run in transaction mode, so every statement keeps landing on backend connections that lack it.
Usage: prepared.py HOST PORT; prints "ok" and exits 0, or raises.
"""

import asyncio
import sys

import asyncpg
import psycopg

HOST, PORT = sys.argv[1], int(sys.argv[2])
DSN = f"host={HOST} port={PORT} user=postgres dbname=postgres"


def psycopg_clients(clients: int, rounds: int) -> None:
    conns = [psycopg.connect(DSN, autocommit=True, prepare_threshold=0) for _ in range(clients)]
    for r in range(rounds):
        for i, conn in enumerate(conns):
            got = conn.execute("SELECT %s::int * 2 + %s::int", (r, i)).fetchone()[0]
            assert got == r * 2 + i, (got, r, i)
            with conn.transaction():
                n = conn.execute("SELECT count(*) FROM generate_series(1, %s)", (i + 1,)).fetchone()[0]
                assert n == i + 1, n
    for conn in conns:
        conn.close()


async def asyncpg_clients(clients: int, rounds: int) -> None:
    conns = [await asyncpg.connect(host=HOST, port=PORT, user="postgres", database="postgres")
             for _ in range(clients)]
    for r in range(rounds):
        for i, conn in enumerate(conns):
            assert await conn.fetchval("SELECT $1::int + $2::int", r, i) == r + i
            stmt = await conn.prepare("SELECT $1::text || '-' || $2::text")
            assert await stmt.fetchval(str(r), str(i)) == f"{r}-{i}"
            async with conn.transaction():
                assert await conn.fetchval("SELECT $1::int * 3", i) == i * 3
    # asyncpg's reset between pool uses: must work through the proxy too.
    for conn in conns:
        await conn.reset()
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()


psycopg_clients(clients=6, rounds=20)
asyncio.run(asyncpg_clients(clients=6, rounds=20))
print("ok")
