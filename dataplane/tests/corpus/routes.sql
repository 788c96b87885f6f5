-- pgroute routing corpus: real-world PostgreSQL statements, each with the route
-- the proxy must choose for it under the default configuration.
--
-- Format
--   * An entry starts with a line of exactly "-- expect: primary" or
--     "-- expect: replica", optionally followed by two spaces and a short note.
--   * The statement is every following line up to the next "-- expect:" line
--     or the end of the file, trimmed. It may span lines and contain "--" and
--     "/* */" comments, semicolons (several statements) and $$ bodies.
--   * This header (the comment lines before the first "-- expect:") is ignored.
--     There are no group headers below: any comment after an "-- expect:" line
--     is part of that entry's statement text.
--
-- Rules (default configuration)
--   replica: only statements known to be read-only and safe on a hot standby:
--     SELECT, VALUES, TABLE, read-only WITH (incl. RECURSIVE), SHOW <setting>,
--     EXPLAIN [ANALYZE] of a read, COPY t / COPY (SELECT ...) TO STDOUT, calls
--     to functions not in the write list (built-ins and user-defined), and
--     multi-statement strings made only of such reads.
--   primary: everything else, in particular: a locking clause (FOR UPDATE,
--     FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE) anywhere in the tree;
--     SELECT ... INTO; data-modifying CTEs; a call anywhere to a function that
--     writes, locks or depends on session/primary state (nextval, setval,
--     currval, lastval, pg_advisory_* / pg_try_advisory_* locks and unlocks,
--     txid_current, pg_current_xact_id, pg_current_wal_lsn,
--     pg_current_wal_insert_lsn, pg_switch_wal, pg_create_restore_point,
--     pg_notify, set_config, lo_create, lo_import, lo_export, lo_unlink,
--     lo_open, lowrite, lo_put, lo_from_bytea, lo_truncate, pg_cancel_backend,
--     pg_terminate_backend, pg_reload_conf, pg_stat_reset,
--     pg_create_physical_replication_slot, pg_drop_replication_slot,
--     pg_promote; exact name match, any case, schema-qualified or not); all
--     DML and DDL; DO and CALL; transaction control and session statements;
--     SHOW transaction_read_only and SHOW in_hot_standby; EXPLAIN of a write
--     (EXPLAIN takes the route of the statement it explains); COPY FROM and
--     COPY to a server file or program; multi-statement strings containing
--     any primary statement; anything that is not valid SQL (note "invalid").
--   A leading /* pgroute: route=replica */ or /* pgroute: route=primary */
--   comment forces that route, whatever the statement is.
--   A read-only transaction start (BEGIN READ ONLY, START TRANSACTION READ
--   ONLY) may run on a replica, and its whole transaction with it.
--   Reads that sqlparser (the PostgreSQL dialect of sqlparser 0.63) cannot
--   parse go to the primary like any unparsable text: BETWEEN SYMMETRIC,
--   ROWS FROM, SEARCH / CYCLE, FOR READ ONLY, TABLE with clauses. Their
--   notes say so; they move to "replica" if the parser learns them.
--
-- Every statement is valid PostgreSQL 15 syntax except those noted "invalid".
-- expect: replica  pgbench select-only
SELECT abalance FROM pgbench_accounts WHERE aid = $1;
-- expect: primary  pgbench tpcb-like
UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;
-- expect: primary  pgbench tpcb-like
UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2;
-- expect: primary  pgbench tpcb-like
UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2;
-- expect: primary  pgbench tpcb-like
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);
-- expect: primary  pgbench transaction start
BEGIN;
-- expect: primary  END is COMMIT
END;
-- expect: primary  pgbench vacuum before run
vacuum pgbench_branches
-- expect: primary  pgbench init
truncate pgbench_history
-- expect: primary  pgbench init
create table pgbench_history(tid int,bid int,aid int,delta int,mtime timestamp,filler char(22))
-- expect: primary  pgbench init data load
copy pgbench_accounts from stdin with (freeze on)
-- expect: primary  pgbench init
alter table pgbench_branches add primary key (bid)
-- expect: replica  pgbench init check
select count(*) from pgbench_branches
-- expect: replica
SELECT 1
-- expect: replica
select 1;
-- expect: replica
SELECT version()
-- expect: replica  SQLAlchemy connect
select pg_catalog.version()
-- expect: replica  SQLAlchemy connect
select current_schema()
-- expect: replica  SQLAlchemy connect
show standard_conforming_strings
-- expect: replica
SHOW search_path
-- expect: replica
SHOW work_mem;
-- expect: replica
SHOW ALL
-- expect: replica
show TimeZone
-- expect: replica
SHOW server_version_num
-- expect: replica  not transaction_read_only
SHOW default_transaction_read_only
-- expect: primary  differs on a replica
SHOW transaction_read_only
-- expect: primary  differs on a replica
SHOW in_hot_standby
-- expect: primary  parameter names are case-insensitive
show Transaction_Read_Only;
-- expect: replica  Django get()
SELECT "auth_user"."id", "auth_user"."password", "auth_user"."last_login", "auth_user"."is_superuser", "auth_user"."username", "auth_user"."first_name", "auth_user"."last_name", "auth_user"."email", "auth_user"."is_staff", "auth_user"."is_active", "auth_user"."date_joined" FROM "auth_user" WHERE "auth_user"."username" = 'alice' LIMIT 21
-- expect: replica  Django session load
SELECT "django_session"."session_key", "django_session"."session_data", "django_session"."expire_date" FROM "django_session" WHERE ("django_session"."expire_date" > '2024-05-01T12:00:00+00:00'::timestamptz AND "django_session"."session_key" = 'q1w2e3r4t5y6') LIMIT 21
-- expect: replica  Django exists()
SELECT 1 AS "a" FROM "blog_post" WHERE "blog_post"."slug" = 'hello-world' LIMIT 1
-- expect: replica  Django count()
SELECT COUNT(*) AS "__count" FROM "blog_post" WHERE "blog_post"."published"
-- expect: replica  Django introspection
SELECT
    c.relname,
    CASE
        WHEN c.relispartition THEN 'p'
        WHEN c.relkind IN ('m', 'v') THEN 'v'
        ELSE 't'
    END,
    obj_description(c.oid, 'pg_class')
FROM pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('f', 'm', 'p', 'r', 'v')
    AND n.nspname NOT IN ('pg_catalog', 'pg_toast')
    AND pg_catalog.pg_table_is_visible(c.oid)
-- expect: replica  Django test database check
SELECT 1 FROM pg_catalog.pg_database WHERE datname = 'test_app'
-- expect: primary  Django insert
INSERT INTO "blog_post" ("title", "slug", "body", "published", "created_at") VALUES ('Hello', 'hello', 'Body text', true, '2024-05-01T12:00:00+00:00'::timestamptz) RETURNING "blog_post"."id"
-- expect: primary  Django bulk_create
INSERT INTO "blog_tag" ("name") VALUES ('postgres'), ('rust'), ('proxy') RETURNING "blog_tag"."id"
-- expect: primary  Django update on login
UPDATE "auth_user" SET "last_login" = '2024-05-01T12:00:00+00:00'::timestamptz WHERE "auth_user"."id" = 1
-- expect: primary  Django clearsessions
DELETE FROM "django_session" WHERE "django_session"."expire_date" < '2024-05-01T12:00:00+00:00'::timestamptz
-- expect: primary  Django sqlsequencereset
SELECT setval(pg_get_serial_sequence('"blog_post"','id'), coalesce(max("id"), 1), max("id") IS NOT null) FROM "blog_post";
-- expect: primary  Django migration
CREATE TABLE "blog_post" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, "title" varchar(200) NOT NULL, "slug" varchar(50) NOT NULL UNIQUE, "body" text NOT NULL, "published" boolean NOT NULL, "created_at" timestamp with time zone NOT NULL)
-- expect: primary  Django migration
CREATE INDEX "blog_post_slug_b95473f2_like" ON "blog_post" ("slug" varchar_pattern_ops)
-- expect: primary  Django migration
ALTER TABLE "blog_comment" ADD CONSTRAINT "blog_comment_post_id_580e96ef_fk_blog_post_id" FOREIGN KEY ("post_id") REFERENCES "blog_post" ("id") DEFERRABLE INITIALLY DEFERRED
-- expect: primary  Django test teardown
DROP DATABASE IF EXISTS "test_app"
-- expect: replica  Rails find with trailing marginalia comment
SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2 /*application:Shop,controller:users,action:show*/
-- expect: replica  Rails query log tags prepended
/*action='index',application='Shop',controller='orders'*/ SELECT "orders".* FROM "orders" WHERE "orders"."user_id" = $1 ORDER BY "orders"."created_at" DESC LIMIT $2
-- expect: replica  Rails
SELECT "schema_migrations"."version" FROM "schema_migrations" ORDER BY "schema_migrations"."version" ASC
-- expect: replica  Rails
SELECT "ar_internal_metadata"."value" FROM "ar_internal_metadata" WHERE "ar_internal_metadata"."key" = $1 LIMIT $2
-- expect: replica  Rails where(id: [...])
SELECT "products"."id", "products"."name" FROM "products" WHERE "products"."category_id" IN ($1, $2, $3) AND "products"."deleted_at" IS NULL
-- expect: replica  Rails exists?
SELECT 1 AS one FROM "users" WHERE "users"."email" = $1 LIMIT $2
-- expect: replica  Rails count
SELECT COUNT(*) FROM "comments" WHERE "comments"."post_id" = $1
-- expect: replica  Rails column introspection
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod,
       c.collname, col_description(a.attrelid, a.attnum) AS comment
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
  LEFT JOIN pg_type t ON a.atttypid = t.oid
  LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
 WHERE a.attrelid = '"users"'::regclass
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
-- expect: primary  Rails create
INSERT INTO "users" ("email", "created_at", "updated_at") VALUES ($1, $2, $3) RETURNING "id"
-- expect: primary  Rails upsert_all
INSERT INTO "products" ("sku","name","updated_at") VALUES ('A1', 'Widget', CURRENT_TIMESTAMP) ON CONFLICT ("sku") DO UPDATE SET updated_at=(CASE WHEN ("products"."name" IS NOT DISTINCT FROM excluded."name") THEN "products".updated_at ELSE CURRENT_TIMESTAMP END),"name"=excluded."name" RETURNING "id"
-- expect: primary  Rails update
UPDATE "orders" SET "status" = $1, "updated_at" = $2 WHERE "orders"."id" = $3
-- expect: primary  Rails counter cache
UPDATE "posts" SET "comments_count" = COALESCE("comments_count", 0) + $1 WHERE "posts"."id" = $2
-- expect: primary  Rails destroy
DELETE FROM "carts" WHERE "carts"."id" = $1
-- expect: primary  Rails transaction savepoint
SAVEPOINT active_record_1
-- expect: primary
RELEASE SAVEPOINT active_record_1
-- expect: primary
ROLLBACK TO SAVEPOINT active_record_1
-- expect: primary  Rails migration advisory lock
SELECT pg_try_advisory_lock(1438287385624806135)
-- expect: primary  Rails migration advisory unlock
SELECT pg_advisory_unlock(1438287385624806135)
-- expect: primary  Rails migration
INSERT INTO "schema_migrations" (version) VALUES ('20240501120000')
-- expect: primary  Rails migration
CREATE TABLE "users" ("id" bigserial primary key, "email" character varying NOT NULL, "created_at" timestamp(6) NOT NULL, "updated_at" timestamp(6) NOT NULL)
-- expect: primary  Rails
CREATE TABLE IF NOT EXISTS "schema_migrations" ("version" character varying NOT NULL PRIMARY KEY)
-- expect: replica  Hibernate 5
select user0_.id as id1_0_, user0_.email as email2_0_, user0_.created_at as created_3_0_ from users user0_ where user0_.id=$1
-- expect: replica  Hibernate 6 join fetch
select o1_0.id,i1_0.order_id,i1_0.id,i1_0.sku,i1_0.quantity from orders o1_0 left join order_items i1_0 on o1_0.id=i1_0.order_id where o1_0.id=$1
-- expect: replica  Hibernate count
select count(*) from products p1_0 where p1_0.price>$1
-- expect: primary  Hibernate sequence, space before paren
select nextval ('hibernate_sequence')
-- expect: primary  Hibernate 6 sequence
select nextval('users_seq')
-- expect: primary  Hibernate insert
insert into app_user (email,created_at,id) values ($1,$2,$3)
-- expect: primary  Hibernate optimistic update
update app_user set email=$1,version=$2 where id=$3 and version=$4
-- expect: primary  Hibernate PESSIMISTIC_WRITE
select u1_0.id,u1_0.email from app_user u1_0 where u1_0.id=$1 for update
-- expect: primary  Hibernate PESSIMISTIC_WRITE newer dialect
select u1_0.id,u1_0.email from app_user u1_0 where u1_0.id=$1 for no key update of u1_0
-- expect: primary  Hibernate PESSIMISTIC_READ
select u1_0.id from app_user u1_0 where u1_0.id=$1 for share
-- expect: primary  JDBC connection setup
SET extra_float_digits = 3
-- expect: primary  JDBC connection setup
SET application_name = 'PostgreSQL JDBC Driver'
-- expect: replica  SQLAlchemy ORM query
SELECT users.id AS users_id, users.name AS users_name, users.fullname AS users_fullname
FROM users
WHERE users.name = 'ed'
 LIMIT 1
-- expect: replica  SQLAlchemy exists()
SELECT EXISTS (SELECT 1
FROM users
WHERE users.id = 5) AS anon_1
-- expect: replica  SQLAlchemy has_table
SELECT pg_catalog.pg_class.relname
FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace
WHERE pg_catalog.pg_class.relname = 'users' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'
-- expect: primary  SQLAlchemy insert
INSERT INTO users (name, fullname) VALUES ('ed', 'Ed Jones') RETURNING users.id
-- expect: primary  SQLAlchemy with_for_update(skip_locked=True)
SELECT jobs.id, jobs.payload
FROM jobs
WHERE jobs.status = 'pending' ORDER BY jobs.id
 LIMIT 10 FOR UPDATE SKIP LOCKED
-- expect: replica  Prisma findMany
SELECT "public"."User"."id", "public"."User"."email", "public"."User"."name" FROM "public"."User" WHERE ("public"."User"."email" = $1 AND 1=1) LIMIT $2 OFFSET $3
-- expect: replica  Prisma relation load
SELECT "public"."Post"."id", "public"."Post"."title", "public"."Post"."authorId" FROM "public"."Post" WHERE "public"."Post"."authorId" IN ($1,$2,$3) OFFSET $4
-- expect: primary  Prisma create
INSERT INTO "public"."User" ("email","name") VALUES ($1,$2) RETURNING "public"."User"."id", "public"."User"."email", "public"."User"."name"
-- expect: primary  Prisma update
UPDATE "public"."User" SET "name" = $1 WHERE ("public"."User"."id" = $2 AND 1=1) RETURNING "public"."User"."id"
-- expect: primary  Prisma deleteMany
DELETE FROM "public"."Session" WHERE "public"."Session"."expires" < $1
-- expect: replica  psql \d lookup
SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(users)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;
-- expect: replica  psql \dt
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;
-- expect: replica  pgx type lookup
select t.oid, t.typname from pg_type t where t.oid = $1
-- expect: replica
SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' ORDER BY ordinal_position
-- expect: replica  monitoring
SELECT pid, usename, application_name, state, now() - xact_start AS xact_age, left(query, 80) AS query
FROM pg_stat_activity
WHERE state <> 'idle' AND pid <> pg_backend_pid()
ORDER BY xact_age DESC NULLS LAST
-- expect: replica  monitoring: replication lag on a standby
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END AS replication_lag_seconds
-- expect: replica
SELECT pg_is_in_recovery()
-- expect: replica
SELECT pg_last_wal_replay_lsn()
-- expect: replica
select pg_size_pretty(pg_database_size(current_database()))
-- expect: replica  biggest tables
SELECT relname, pg_size_pretty(pg_total_relation_size(relid)) AS total
FROM pg_catalog.pg_statio_user_tables
ORDER BY pg_total_relation_size(relid) DESC
LIMIT 10;
-- expect: replica  blocked sessions
SELECT pid, pg_blocking_pids(pid) AS blocked_by, wait_event_type, query
FROM pg_stat_activity
WHERE cardinality(pg_blocking_pids(pid)) > 0
-- expect: replica  reading advisory locks is not taking one
SELECT locktype, classid, objid, pid, granted FROM pg_locks WHERE locktype = 'advisory'
-- expect: replica
SELECT query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20
-- expect: replica
SELECT datname, numbackends, xact_commit, xact_rollback, blks_hit FROM pg_stat_database
-- expect: replica
SELECT slot_name, slot_type, active, restart_lsn FROM pg_replication_slots
-- expect: replica
SELECT relname, seq_scan, idx_scan FROM pg_stat_user_tables WHERE seq_scan > coalesce(idx_scan, 0) ORDER BY seq_scan DESC
-- expect: replica
SELECT setting, unit FROM pg_settings WHERE name = 'max_connections'
-- expect: replica
SELECT current_user, session_user, current_database(), inet_server_addr(), inet_server_port()
-- expect: replica  window functions
SELECT customer_id, order_id, total,
       row_number() OVER (PARTITION BY customer_id ORDER BY created_at DESC) AS rn,
       sum(total) OVER (PARTITION BY customer_id) AS customer_total
FROM orders
WHERE created_at >= date_trunc('month', now()) - interval '3 months'
-- expect: replica  named window with frame
SELECT day, revenue, avg(revenue) OVER w AS moving_avg_7d
FROM daily_revenue
WINDOW w AS (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW)
ORDER BY day
-- expect: replica
SELECT ts, price, lag(price) OVER (ORDER BY ts) AS prev, lead(price, 2) OVER (ORDER BY ts) AS next2,
       first_value(price) OVER (PARTITION BY symbol ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS open
FROM ticks
-- expect: replica
SELECT player, rank() OVER (ORDER BY score DESC), dense_rank() OVER (ORDER BY score DESC), ntile(4) OVER (ORDER BY score) FROM results
-- expect: replica  pagination with total
SELECT count(*) OVER () AS total_count, id, title FROM items ORDER BY id LIMIT 25 OFFSET 50
-- expect: replica  GROUP BY / HAVING
SELECT c.country, count(*) AS customers, sum(o.total) AS revenue
FROM customers c JOIN orders o ON o.customer_id = c.id
GROUP BY c.country
HAVING sum(o.total) > 10000
ORDER BY revenue DESC
-- expect: replica  DISTINCT ON
SELECT DISTINCT ON (customer_id) customer_id, id, created_at
FROM orders
ORDER BY customer_id, created_at DESC
-- expect: replica
SELECT region, product, sum(amount) FROM sales GROUP BY ROLLUP (region, product) ORDER BY 1, 2
-- expect: replica
SELECT brand, size, grouping(brand, size), sum(sales) FROM items_sold GROUP BY GROUPING SETS ((brand), (size), ())
-- expect: replica
SELECT brand, size, sum(sales) FROM items_sold GROUP BY CUBE (brand, size)
-- expect: replica  aggregate FILTER
SELECT date_trunc('day', created_at) AS day,
       count(*) FILTER (WHERE status = 'paid') AS paid,
       count(*) FILTER (WHERE status = 'refunded') AS refunded
FROM payments GROUP BY 1 ORDER BY 1
-- expect: replica  ordered-set aggregates
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99
FROM request_log WHERE ts > now() - interval '1 hour'
-- expect: replica
SELECT id, 'user' AS kind FROM users WHERE email ILIKE $1
UNION ALL
SELECT id, 'admin' FROM admins WHERE email ILIKE $1
ORDER BY id
-- expect: replica
SELECT user_id FROM logins_2023 INTERSECT SELECT user_id FROM logins_2024 EXCEPT SELECT user_id FROM banned_users
-- expect: replica  starts with a parenthesis
(SELECT id FROM a ORDER BY id LIMIT 5) UNION (SELECT id FROM b ORDER BY id LIMIT 5)
-- expect: replica  LATERAL
SELECT u.id, recent.*
FROM users u
CROSS JOIN LATERAL (
  SELECT o.id AS order_id, o.total FROM orders o WHERE o.user_id = u.id ORDER BY o.created_at DESC LIMIT 3
) recent
-- expect: replica
SELECT d.name, e.last_hire FROM departments d LEFT JOIN LATERAL (SELECT max(hired_at) AS last_hire FROM employees WHERE department_id = d.id) e ON true
-- expect: replica
SELECT name, score FROM leaderboard ORDER BY score DESC FETCH FIRST 10 ROWS WITH TIES
-- expect: replica
SELECT * FROM articles ORDER BY published_at DESC OFFSET 20 ROWS FETCH NEXT 10 ROWS ONLY
-- expect: replica  JSON operators
SELECT id, payload->>'event' AS event, payload #>> '{user,id}' AS user_id FROM events WHERE payload @> '{"type": "click"}'::jsonb AND payload ? 'session'
-- expect: replica
SELECT jsonb_build_object('id', u.id, 'roles', coalesce(jsonb_agg(r.name) FILTER (WHERE r.name IS NOT NULL), '[]'::jsonb)) AS doc
FROM users u LEFT JOIN user_roles r ON r.user_id = u.id GROUP BY u.id
-- expect: replica
SELECT jsonb_path_query(doc, '$.items[*] ? (@.price > 10)') FROM catalog
-- expect: replica
SELECT row_to_json(t) FROM (SELECT id, name FROM users LIMIT 5) t
-- expect: replica
SELECT json_agg(x ORDER BY x.id) FROM items x
-- expect: replica  arrays
SELECT id FROM posts WHERE tags && ARRAY['postgres', 'rust']::text[] AND array_length(tags, 1) > 1
-- expect: replica
SELECT t.elem, t.idx FROM unnest(ARRAY['a','b','c']) WITH ORDINALITY AS t(elem, idx)
-- expect: replica
SELECT id, name FROM products WHERE id = ANY($1::int[])
-- expect: replica
SELECT (ARRAY[1,2,3,4])[2:3], ARRAY(SELECT id FROM users WHERE is_admin), '{1,2,3}'::int[] @> '{2}'::int[]
-- expect: replica
SELECT author_id, array_agg(id ORDER BY id) AS post_ids FROM posts GROUP BY author_id
-- expect: replica  CASE and casts
SELECT id,
       CASE WHEN balance < 0 THEN 'overdrawn' WHEN balance = 0 THEN 'empty' ELSE 'ok' END AS status,
       balance::numeric(12,2), CAST(created_at AS date)
FROM accounts
-- expect: replica  EXISTS / NOT EXISTS
SELECT c.id FROM customers c
WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.total > 100)
  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.customer_id = c.id)
-- expect: replica
SELECT * FROM employees WHERE department_id IN (SELECT id FROM departments WHERE location = 'Berlin')
-- expect: replica  scalar subquery
SELECT p.name, (SELECT count(*) FROM reviews r WHERE r.product_id = p.id) AS review_count FROM products p
-- expect: replica
SELECT d::date AS day, count(o.id)
FROM generate_series(date '2024-01-01', date '2024-01-31', interval '1 day') d
LEFT JOIN orders o ON o.created_at::date = d::date
GROUP BY d ORDER BY d
-- expect: replica
SELECT to_char(created_at, 'YYYY-MM') AS month, string_agg(DISTINCT country, ', ' ORDER BY country) FROM signups GROUP BY 1
-- expect: replica  full-text search
SELECT id, ts_rank(search_vector, query) AS rank
FROM documents, to_tsquery('english', 'postgres & replication') query
WHERE search_vector @@ query
ORDER BY rank DESC LIMIT 20
-- expect: replica
SELECT * FROM users WHERE email ~* '^[a-z0-9._%-]+@example\.com$'
-- expect: replica
SELECT * FROM users WHERE last_name = 'O''Brien'
-- expect: replica
SELECT EXTRACT(year FROM created_at) AS y, COUNT(DISTINCT user_id) FROM sessions GROUP BY 1
-- expect: primary  read, but sqlparser cannot parse BETWEEN SYMMETRIC: unparsable goes to the primary
SELECT date_trunc('hour', ts) AS h, avg(v) FROM metrics WHERE ts BETWEEN SYMMETRIC $1 AND $2 GROUP BY h ORDER BY h
-- expect: replica
SELECT * FROM t1 NATURAL FULL OUTER JOIN t2
-- expect: replica
SELECT a.id FROM a JOIN b USING (id) WHERE b.x IS DISTINCT FROM a.x
-- expect: primary  read, but sqlparser cannot parse ROWS FROM
SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY['a', 'b'])) AS x(n, s)
-- expect: replica
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'public'
-- expect: replica
SELECT now() AT TIME ZONE 'UTC', CURRENT_TIMESTAMP, CURRENT_DATE, LOCALTIME
-- expect: replica
SELECT 'a' || 'b' AS s, 2 ^ 10 AS p, 7 % 3 AS m, ROW(1, 'x') = ROW(1, 'x') AS r
-- expect: replica
SELECT '2024-01-01'::date + 30, '1 day'::interval * 3, '{"a":1}'::json, U&'d\0061t\+000061'
-- expect: replica
SELECT gen_random_uuid(), md5(random()::text)
-- expect: replica
SELECT xmin, ctid, * FROM accounts WHERE id = 1
-- expect: replica
SELECT * FROM ONLY measurements WHERE logdate >= '2024-01-01'
-- expect: replica
SELECT * FROM events TABLESAMPLE SYSTEM (1) REPEATABLE (42)
-- expect: replica
SELECT has_table_privilege('app_ro', 'public.orders', 'SELECT'), to_regclass('public.orders') IS NOT NULL AS exists
-- expect: replica  regression-test style ORDER BY USING
SELECT onek.unique1, onek.stringu1 FROM onek WHERE onek.unique1 < 20 ORDER BY unique1 USING >
-- expect: replica  regression-test style
SELECT ten, sum(four), count(*) FROM tenk1 GROUP BY ten HAVING count(*) > 1 ORDER BY ten
-- expect: replica
SELECT * FROM generate_series(1, 10) AS s(i) WHERE i % 2 = 0
-- expect: replica
SELECT id FROM sessions WHERE expires_at < now() LIMIT ALL
-- expect: replica
SELECT coalesce(nullif(trim(nickname), ''), name), pg_catalog.lower(email) FROM users
-- expect: replica
sElEcT CoUnT(*) fRoM Users wHeRe Active
-- expect: replica  leading line comment
-- report: top customers by revenue
SELECT customer_id, sum(total) FROM orders GROUP BY customer_id ORDER BY 2 DESC LIMIT 10
-- expect: replica  leading block comment (not a hint)
/* dashboard: weekly active users */ SELECT count(DISTINCT user_id) FROM events WHERE ts > now() - interval '7 days'
-- expect: replica  leading comments and indentation
-- fetched by the dashboard every minute
/* owner: data team */

    SELECT count(*)
      FROM sessions
     WHERE NOT expired
-- expect: replica
SELECT pg_sleep(0.5)
-- expect: replica
SELECT current_setting('server_version_num')::int
-- expect: replica  user-defined function
SELECT my_schema.compute_score(42)
-- expect: replica  user-defined set-returning function
SELECT * FROM reporting.monthly_summary($1, $2)
-- expect: replica  not txid_current (exact name match)
SELECT txid_current_snapshot()
-- expect: replica  not nextval (exact name match)
SELECT my_nextval_report()
-- expect: replica  column named nextval, not a call
SELECT nextval FROM sequence_report WHERE seqname = 'orders_id_seq'
-- expect: replica  table named updates
SELECT * FROM updates
-- expect: replica  table name contains delete
WITH d AS (SELECT * FROM delete_log WHERE created_at > now() - interval '1 day') SELECT count(*) FROM d
-- expect: replica  column named for
SELECT "for" FROM t
-- expect: replica  keyword-named quoted identifiers
SELECT "update", "delete", "insert" FROM "grant"
-- expect: replica  alias looks like a locking clause
SELECT 1 AS "FOR UPDATE"
-- expect: replica  string literal
SELECT 'FOR UPDATE' AS note FROM t
-- expect: replica  string literal
SELECT id FROM audit_log WHERE message = 'nextval(''orders_id_seq'') failed'
-- expect: replica  string literal
SELECT '; DELETE FROM users' AS injected
-- expect: replica
SELECT * FROM orders WHERE note LIKE '%for update%'
-- expect: replica  SUBSTRING ... FOR
SELECT substring('PostgreSQL' FROM 1 FOR 4), overlay('Txxxxas' placing 'hom' from 2 for 4)
-- expect: replica  locking clause only in a line comment
SELECT id, status FROM jobs WHERE status = 'queued' -- FOR UPDATE SKIP LOCKED removed, see #123
ORDER BY id LIMIT 10
-- expect: replica  locking clause only in a block comment
SELECT id FROM jobs /* FOR UPDATE */ WHERE id = 1
-- expect: replica  nested block comments hide the DELETE
SELECT /* outer /* inner */ still a comment; DELETE FROM t */ 1
-- expect: replica  dollar-quoted string
SELECT $$SELECT nextval('s'); DELETE FROM t$$ AS snippet
-- expect: replica  tagged dollar quote
SELECT $tag$ ; DELETE FROM t; $tag$ AS body
-- expect: replica  E-string with escaped quote
SELECT E'\'; DELETE FROM t; --' AS s
-- expect: replica  quoted identifier with embedded quote and semicolon
SELECT 1 AS "a""; DELETE FROM t"
-- expect: primary  FOR READ ONLY takes no lock, but sqlparser cannot parse it
SELECT * FROM t FOR READ ONLY
-- expect: replica
VALUES (1, 'one'), (2, 'two'), (3, 'three')
-- expect: replica
values (3), (1), (2) ORDER BY 1 LIMIT 2
-- expect: replica
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, label) JOIN items i ON i.id = v.id
-- expect: replica
TABLE users
-- expect: primary  read, but beyond the TABLE fast path and sqlparser cannot parse TABLE
TABLE public.countries ORDER BY 1 LIMIT 5
-- expect: replica  read-only CTE
WITH recent AS (
  SELECT * FROM orders WHERE created_at > now() - interval '7 days'
)
SELECT customer_id, count(*) FROM recent GROUP BY customer_id
-- expect: replica  WITH RECURSIVE
WITH RECURSIVE subordinates AS (
  SELECT id, manager_id, name, 1 AS depth FROM employees WHERE id = $1
  UNION ALL
  SELECT e.id, e.manager_id, e.name, s.depth + 1
  FROM employees e JOIN subordinates s ON e.manager_id = s.id
)
SELECT * FROM subordinates ORDER BY depth, name
-- expect: replica
WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM t WHERE n < 100) SELECT sum(n) FROM t
-- expect: primary  read, but sqlparser cannot parse SEARCH / CYCLE
WITH RECURSIVE search_graph(id, link, data, depth) AS (
    SELECT g.id, g.link, g.data, 0 FROM graph g
  UNION ALL
    SELECT g.id, g.link, g.data, sg.depth + 1 FROM graph g, search_graph sg WHERE g.id = sg.link
) SEARCH DEPTH FIRST BY id SET ordercol
  CYCLE id SET is_cycle USING path
SELECT * FROM search_graph ORDER BY ordercol
-- expect: replica
WITH w AS MATERIALIZED (SELECT * FROM big_table WHERE flag), v AS NOT MATERIALIZED (SELECT 1 AS one) SELECT * FROM w, v WHERE w.id = 42
-- expect: replica
EXPLAIN SELECT * FROM orders WHERE customer_id = 42
-- expect: replica
EXPLAIN ANALYZE SELECT count(*) FROM orders
-- expect: replica
EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.country = 'DE'
-- expect: replica
explain (costs off) with x as (select 1) select * from x
-- expect: replica
EXPLAIN VERBOSE VALUES (1), (2)
-- expect: replica
COPY users TO STDOUT
-- expect: replica
COPY (SELECT id, email FROM users WHERE active) TO STDOUT WITH (FORMAT csv, HEADER true)
-- expect: replica
COPY public.orders (id, total) TO STDOUT (FORMAT binary)
-- expect: replica  pg_dump style
COPY public.accounts (id, name, balance) TO stdout;
-- expect: replica  old COPY option syntax
copy (select * from events where ts > now() - interval '1 day') to stdout with csv header
-- expect: replica  multi-statement reads
SELECT 1; SELECT 2
-- expect: replica  multi-statement reads
SHOW search_path; SELECT current_user;
-- expect: replica  multi-statement reads
SELECT now(); SELECT pg_is_in_recovery()
-- expect: replica  semicolons inside literals
SELECT ';' AS semi; SELECT 'a;b' AS "x;y"
-- expect: replica  empty statements
SELECT 1;;
-- expect: replica  trailing comment
SELECT 1; -- done
-- expect: replica  pgbench-style lookup
SELECT tbalance FROM pgbench_tellers WHERE tid = $1
-- expect: replica  Django prefetch_related
SELECT "blog_comment"."id", "blog_comment"."post_id", "blog_comment"."body" FROM "blog_comment" WHERE "blog_comment"."post_id" IN (1, 2, 3) ORDER BY "blog_comment"."created_at" DESC
-- expect: replica  Django select_related
SELECT "blog_post"."id", "blog_post"."title", "auth_user"."id", "auth_user"."username" FROM "blog_post" INNER JOIN "auth_user" ON ("blog_post"."author_id" = "auth_user"."id") WHERE "blog_post"."published" ORDER BY "blog_post"."created_at" DESC LIMIT 10
-- expect: replica  Django aggregate
SELECT "shop_order"."customer_id", SUM("shop_order"."total") AS "total__sum" FROM "shop_order" GROUP BY "shop_order"."customer_id"
-- expect: replica  Django migrate
SELECT "django_migrations"."id", "django_migrations"."app", "django_migrations"."name", "django_migrations"."applied" FROM "django_migrations"
-- expect: replica  Django content types
SELECT "django_content_type"."id", "django_content_type"."app_label", "django_content_type"."model" FROM "django_content_type" WHERE ("django_content_type"."app_label" = 'blog' AND "django_content_type"."model" = 'post') LIMIT 21
-- expect: replica  Django icontains
SELECT "blog_post"."id", "blog_post"."title" FROM "blog_post" WHERE UPPER("blog_post"."title"::text) LIKE UPPER('%postgres%') ORDER BY "blog_post"."id" ASC
-- expect: replica  Rails has_many load
SELECT "line_items".* FROM "line_items" WHERE "line_items"."order_id" = $1
-- expect: replica  Rails find_each batch
SELECT "users".* FROM "users" WHERE "users"."id" > $1 ORDER BY "users"."id" ASC LIMIT $2
-- expect: replica  Rails connection setup
SHOW max_identifier_length
-- expect: replica  Rails table_exists?
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relname = 'users' AND c.relkind IN ('r','p')
-- expect: replica  Rails type map
SELECT t.oid, t.typname, t.typelem, t.typdelim, t.typinput, r.rngsubtype, t.typtype, t.typbasetype
FROM pg_type as t
LEFT JOIN pg_range as r ON oid = rngtypid
WHERE
  t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'numeric', 'bool')
-- expect: replica  Hibernate paging
select p1_0.id,p1_0.name from products p1_0 order by p1_0.name offset $1 rows fetch first $2 rows only
-- expect: replica  Hibernate exists
select c1_0.id from customer c1_0 where exists(select 1 from orders o1_0 where o1_0.customer_id=c1_0.id)
-- expect: replica  pgjdbc type info cache
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = $1  ORDER BY sp.r, pg_type.oid DESC
-- expect: replica  JDBC DatabaseMetaData.getTables (simplified)
SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS TABLE_NAME, d.description AS REMARKS
FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c
LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass)
WHERE c.relnamespace = n.oid AND c.relkind = 'r'
ORDER BY TABLE_SCHEM, TABLE_NAME
-- expect: replica  SQLAlchemy psycopg2 connect; SHOW of transaction_isolation
show transaction isolation level
-- expect: replica  SQLAlchemy 1.3 connect check
SELECT CAST('test plain returns' AS VARCHAR(60)) AS anon_1
-- expect: replica  asyncpg-style type introspection
SELECT t.oid, t.typelem AS elemtype, t.typtype AS kind FROM pg_catalog.pg_type AS t WHERE t.oid = ANY($1::oid[])
-- expect: replica  Prisma count
SELECT COUNT(*) FROM (SELECT "public"."Post"."id" FROM "public"."Post" WHERE "public"."Post"."published" = $1 OFFSET $2) AS "sub"
-- expect: replica  Prisma migrate
SELECT EXISTS(SELECT 1 FROM pg_namespace WHERE nspname = $1)
-- expect: replica  Sequelize findOne
SELECT "id", "email", "createdAt", "updatedAt" FROM "Users" AS "User" WHERE "User"."email" = 'a@example.com' LIMIT 1;
-- expect: replica  TypeORM
SELECT "User"."id" AS "User_id", "User"."firstName" AS "User_firstName" FROM "user" "User" WHERE "User"."id" IN ($1)
-- expect: replica  GORM First
SELECT * FROM "users" WHERE "users"."deleted_at" IS NULL AND "users"."id" = $1 ORDER BY "users"."id" LIMIT 1
-- expect: replica  Ecto
SELECT u0."id", u0."name", u0."inserted_at" FROM "users" AS u0 WHERE (u0."id" = $1)
-- expect: replica  Diesel
SELECT "posts"."id", "posts"."title" FROM "posts" WHERE "posts"."published" = $1 LIMIT $2
-- expect: replica  Metabase question
SELECT "source"."category" AS "category", count(*) AS "count" FROM (SELECT "public"."products"."category" AS "category" FROM "public"."products") AS "source" GROUP BY "source"."category" ORDER BY "source"."category" ASC
-- expect: replica  Grafana time series
SELECT date_bin('5 minutes', ts, TIMESTAMPTZ '2000-01-01') AS time, avg(cpu) AS cpu
FROM host_metrics
WHERE ts BETWEEN '2024-05-01T00:00:00Z' AND '2024-05-01T06:00:00Z'
GROUP BY 1 ORDER BY 1
-- expect: replica  pgAdmin dashboard
SELECT (SELECT sum(xact_commit) + sum(xact_rollback) FROM pg_stat_database WHERE datname = (SELECT datname FROM pg_database WHERE oid = 16384)) AS "Transactions"
-- expect: replica  postgres_exporter
SELECT pg_database.datname, pg_database_size(pg_database.datname) as size_bytes FROM pg_database
-- expect: replica  unused indexes
SELECT s.schemaname, s.relname, s.indexrelname, pg_relation_size(s.indexrelid) AS bytes
FROM pg_catalog.pg_stat_user_indexes s
JOIN pg_catalog.pg_index i ON s.indexrelid = i.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique
ORDER BY bytes DESC
-- expect: replica  long-running queries
SELECT pid, age(clock_timestamp(), query_start), usename, query
FROM pg_stat_activity
WHERE query != '<IDLE>' AND query NOT ILIKE '%pg_stat_activity%'
ORDER BY query_start desc;
-- expect: replica  cache hit ratio
SELECT sum(heap_blks_read) as heap_read, sum(heap_blks_hit) as heap_hit, sum(heap_blks_hit) / (sum(heap_blks_hit) + sum(heap_blks_read)) as ratio
FROM pg_statio_user_tables;
-- expect: replica  standby WAL receiver
SELECT status, flushed_lsn, latest_end_lsn, sender_host FROM pg_stat_wal_receiver
-- expect: replica
SELECT pg_last_xact_replay_timestamp()
-- expect: replica
SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS replay_lag_bytes
-- expect: replica
SHOW lc_collate
-- expect: replica
SHOW statement_timeout
-- expect: replica  not in_hot_standby
SHOW hot_standby
-- expect: replica  regression-test style
SELECT f1, f1 * 2 AS doubled FROM INT4_TBL WHERE f1 <> 0 ORDER BY f1
-- expect: replica
SELECT 'infinity'::timestamp, '-infinity'::date, 'NaN'::float8
-- expect: replica  row-value IN list
SELECT * FROM users WHERE (first_name, last_name) IN (('Ada', 'Lovelace'), ('Alan', 'Turing'))
-- expect: replica
SELECT * FROM products WHERE price > ALL (SELECT price FROM products WHERE category = 'books')
-- expect: replica
SELECT * FROM events WHERE ts >= $1::timestamptz AND ts < $2::timestamptz AND kind = ANY($3::text[]) ORDER BY ts LIMIT 500
-- expect: replica
SELECT jsonb_array_elements_text(tags) AS tag, count(*) FROM articles GROUP BY tag ORDER BY count(*) DESC
-- expect: replica
SELECT * FROM jsonb_to_recordset('[{"a":1,"b":"x"}]') AS x(a int, b text)
-- expect: replica
SELECT id, data -> 'address' ->> 'city' AS city FROM customers WHERE data ->> 'country' = $1
-- expect: replica
SELECT u.id, s.key, s.value FROM users u, LATERAL jsonb_each_text(u.settings) s
-- expect: replica
SELECT ts_headline('english', body, plainto_tsquery('english', $1)) FROM articles WHERE tsv @@ plainto_tsquery('english', $1) LIMIT 10
-- expect: replica  nearest neighbours
SELECT name FROM places ORDER BY location <-> point '(13.4, 52.5)' LIMIT 5
-- expect: replica  range overlap
SELECT id FROM bookings WHERE room_id = $3 AND tstzrange(start_at, end_at) && tstzrange($1, $2)
-- expect: replica
SELECT width_bucket(amount, 0, 1000, 10) AS bucket, count(*) FROM payments GROUP BY bucket ORDER BY bucket
-- expect: replica
SELECT id FROM a EXCEPT ALL SELECT id FROM b
-- expect: replica  correlated subquery
SELECT * FROM orders o WHERE o.total > (SELECT avg(total) FROM orders WHERE customer_id = o.customer_id)
-- expect: replica
SELECT DISTINCT category FROM products ORDER BY category
-- expect: replica
SELECT * FROM orders WHERE created_at > now() - '30 days'::interval ORDER BY created_at DESC NULLS LAST LIMIT $1
-- expect: replica
SELECT string_to_array('a,b,c', ','), regexp_split_to_table('a b c', '\s+')
-- expect: replica  primary key columns
SELECT a.attname
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = 'public.users'::regclass AND i.indisprimary
-- expect: replica
select exists(select 1 from information_schema.tables where table_schema = 'public' and table_name = 'users')
-- expect: replica  several CTEs
WITH monthly AS (
  SELECT date_trunc('month', created_at) AS m, sum(total) AS revenue FROM orders GROUP BY 1
), growth AS (
  SELECT m, revenue, revenue / nullif(lag(revenue) OVER (ORDER BY m), 0) - 1 AS mom FROM monthly
)
SELECT * FROM growth ORDER BY m
-- expect: primary  read, but sqlparser cannot parse TABLE
EXPLAIN (FORMAT YAML) TABLE users
-- expect: replica
EXPLAIN (ANALYZE, TIMING OFF, SUMMARY ON) SELECT * FROM t1 JOIN t2 USING (id)
-- expect: replica
COPY (VALUES (1), (2)) TO STDOUT
-- expect: replica
COPY (WITH x AS (SELECT 1 AS a) SELECT * FROM x) TO STDOUT WITH (FORMAT text, DELIMITER '|')
-- expect: primary  reads, but sqlparser cannot parse the TABLE in it
SELECT 1 AS a; SHOW work_mem; VALUES (2); TABLE users
-- expect: replica  columns named into and from, table named select
SELECT "into", "from" FROM "select"
-- expect: replica  column name starts with into
SELECT id, into_account FROM transfers WHERE id = $1
-- expect: replica  lo_get reads; not in the write list
SELECT lo_get(16403, 0, 100)
-- expect: replica  not pg_current_wal_lsn
SELECT pg_current_logfile()
-- expect: replica  not pg_notify
SELECT pg_notification_queue_usage()
-- expect: replica
SELECT pg_backend_pid()
-- expect: primary  locking clause inside a subquery
SELECT * FROM (SELECT id, balance FROM accounts WHERE id = 1 FOR UPDATE) AS a
-- expect: primary  locking clause in an IN subquery
SELECT * FROM orders WHERE id IN (SELECT order_id FROM payments WHERE status = 'pending' FOR SHARE)
-- expect: primary  locking clause in an EXISTS subquery
SELECT 1 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 FOR KEY SHARE)
-- expect: primary  locking clause inside a CTE
WITH locked AS (SELECT id, balance FROM accounts WHERE id = $1 FOR UPDATE) SELECT * FROM locked
-- expect: primary
SELECT * FROM accounts a JOIN users u ON u.id = a.user_id WHERE a.id = $1 FOR UPDATE OF a NOWAIT
-- expect: primary
SELECT * FROM inventory WHERE sku = 'X-100' FOR KEY SHARE
-- expect: primary
SELECT id FROM tasks WHERE state = 'ready' ORDER BY id LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED
-- expect: primary  two locking clauses
SELECT * FROM a, b WHERE a.id = b.a_id FOR SHARE OF a FOR UPDATE OF b
-- expect: primary  parenthesized locking select
(SELECT id FROM t WHERE id = 1 FOR UPDATE)
-- expect: primary
select * from accounts where id = 1 for update
-- expect: primary  locking clause split over lines
SELECT id
FROM accounts
WHERE id = 7
FOR
  UPDATE
-- expect: primary  comment inside the locking clause
SELECT id FROM accounts WHERE id = 7 FOR /* row lock */ UPDATE
-- expect: primary  locking clause before LIMIT
SELECT * FROM queue ORDER BY id FOR UPDATE LIMIT 5
-- expect: primary  job queue claim
WITH next_job AS (
  SELECT id FROM jobs
  WHERE run_at <= now() AND locked_at IS NULL
  ORDER BY priority, run_at
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET locked_at = now(), locked_by = $1
FROM next_job
WHERE jobs.id = next_job.id
RETURNING jobs.*
-- expect: primary  SELECT INTO creates a table
SELECT * INTO archived_orders FROM orders WHERE created_at < '2020-01-01'
-- expect: primary  SELECT INTO TEMP
SELECT id, name INTO TEMP TABLE tmp_users FROM users WHERE active
-- expect: primary  regression-test style SELECT INTO TABLE
SELECT two, stringu1, ten, string4 INTO TABLE tmp FROM onek
-- expect: primary
SELECT * INTO UNLOGGED scratch FROM generate_series(1, 1000) g
-- expect: primary  data-modifying CTE
WITH moved AS (
  DELETE FROM outbox WHERE sent_at IS NOT NULL RETURNING *
)
INSERT INTO outbox_archive SELECT * FROM moved
-- expect: primary  data-modifying CTE, outer SELECT
WITH ins AS (INSERT INTO audit (action) VALUES ('login') RETURNING id) SELECT id FROM ins
-- expect: primary  data-modifying CTE, outer SELECT
WITH upd AS (UPDATE counters SET value = value + 1 WHERE name = 'hits' RETURNING value) SELECT value FROM upd
-- expect: primary  second CTE is a write
WITH r AS (SELECT 1 AS x), d AS (DELETE FROM tmp WHERE id = 1 RETURNING id) SELECT * FROM r, d
-- expect: primary  MERGE
MERGE INTO inventory AS i
USING incoming AS s ON i.sku = s.sku
WHEN MATCHED THEN UPDATE SET qty = i.qty + s.qty
WHEN NOT MATCHED THEN INSERT (sku, qty) VALUES (s.sku, s.qty)
-- expect: primary  MERGE with DELETE
MERGE INTO customer_account ca
USING (SELECT customer_id, transaction_value FROM recent_transactions) AS t
ON t.customer_id = ca.customer_id
WHEN MATCHED AND ca.balance + t.transaction_value = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET balance = balance + t.transaction_value
WHEN NOT MATCHED THEN DO NOTHING
-- expect: primary
INSERT INTO daily_stats (day, signups) SELECT date_trunc('day', created_at), count(*) FROM users GROUP BY 1
-- expect: primary
INSERT INTO user_tags (user_id, tag) VALUES (1, 'vip') ON CONFLICT DO NOTHING
-- expect: primary
INSERT INTO events DEFAULT VALUES RETURNING id
-- expect: primary
UPDATE orders o SET status = 'shipped' FROM shipments s WHERE s.order_id = o.id AND s.shipped_at IS NOT NULL RETURNING o.id
-- expect: primary
DELETE FROM order_items oi USING orders o WHERE oi.order_id = o.id AND o.status = 'cancelled'
-- expect: primary  batched delete
DELETE FROM events WHERE ctid IN (SELECT ctid FROM events WHERE ts < now() - interval '90 days' LIMIT 1000)
-- expect: primary
UPDATE big_table SET processed = true WHERE CURRENT OF batch_cursor
-- expect: primary
TRUNCATE TABLE staging_orders, staging_items RESTART IDENTITY CASCADE
-- expect: primary
COPY users (id, email) FROM STDIN WITH (FORMAT csv)
-- expect: primary  server-side file
COPY users TO '/var/lib/postgresql/users.csv' WITH CSV HEADER
-- expect: primary  server-side program
COPY (SELECT * FROM events) TO PROGRAM 'gzip > /tmp/events.csv.gz' WITH (FORMAT csv)
-- expect: primary
COPY measurements FROM '/data/measurements.csv' DELIMITER ',' CSV HEADER
-- expect: primary  COPY of a DELETE ... RETURNING
COPY (DELETE FROM outbox WHERE sent RETURNING *) TO STDOUT
-- expect: primary  COPY of a query calling nextval
COPY (SELECT nextval('export_batch_seq')) TO STDOUT
-- expect: primary
SELECT nextval('orders_id_seq')
-- expect: primary  upper case
SELECT NEXTVAL('orders_id_seq')
-- expect: primary  schema-qualified
SELECT pg_catalog.nextval('public.orders_id_seq'::regclass)
-- expect: primary  quoted function name
select "nextval"('orders_id_seq')
-- expect: primary
SELECT setval('users_id_seq', (SELECT max(id) FROM users))
-- expect: primary
SELECT pg_catalog.setval('public.users_id_seq', 1000, true)
-- expect: primary
SELECT currval('orders_id_seq')
-- expect: primary
SELECT lastval()
-- expect: primary  nextval inside CASE
SELECT CASE WHEN $1::bigint IS NULL THEN nextval('ids') ELSE $1::bigint END AS id
-- expect: primary  nextval in a LATERAL join
SELECT o.id, n.v FROM orders o CROSS JOIN LATERAL (SELECT nextval('invoice_no') AS v) n WHERE o.status = 'paid'
-- expect: primary  nextval inside an otherwise read-only CTE
WITH ids AS (SELECT nextval('batch_seq') AS id FROM generate_series(1, 10)) SELECT * FROM ids
-- expect: primary  currval in WHERE
SELECT * FROM orders WHERE id = currval('orders_id_seq')
-- expect: primary  nextval in a scalar subquery
SELECT o.id, (SELECT nextval('invoice_no')) AS invoice FROM orders o WHERE o.id = 1
-- expect: primary  nextval in FROM
SELECT * FROM nextval('order_seq') AS n
-- expect: primary  VALUES with nextval
VALUES (nextval('s'), 'x')
-- expect: primary
SELECT pg_advisory_lock(42)
-- expect: primary
SELECT pg_advisory_lock_shared(42)
-- expect: primary
SELECT pg_advisory_unlock(42)
-- expect: primary
SELECT pg_advisory_unlock_shared(42)
-- expect: primary
SELECT pg_advisory_unlock_all()
-- expect: primary
SELECT pg_advisory_xact_lock(1)
-- expect: primary
SELECT pg_advisory_xact_lock_shared(1, 2)
-- expect: primary
SELECT pg_try_advisory_lock(hashtext('daily-report'))
-- expect: primary
SELECT pg_try_advisory_xact_lock($1)
-- expect: primary
SELECT pg_try_advisory_lock_shared(7)
-- expect: primary
SELECT pg_try_advisory_xact_lock_shared(7)
-- expect: primary  mixed case
Select Pg_Advisory_Xact_Lock(99)
-- expect: primary  schema-qualified
SELECT pg_catalog.pg_advisory_lock(1)
-- expect: primary  advisory lock in WHERE
SELECT id FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1
-- expect: primary  Que lock_job: advisory lock in a recursive CTE
WITH RECURSIVE jobs AS (
  SELECT (j).*, pg_try_advisory_lock((j).job_id) AS locked
  FROM (
    SELECT j
    FROM que_jobs AS j
    WHERE queue = $1::text
    AND run_at <= now()
    ORDER BY priority, run_at, job_id
    LIMIT 1
  ) AS t1
  UNION ALL (
    SELECT (j).*, pg_try_advisory_lock((j).job_id) AS locked
    FROM (
      SELECT (
        SELECT j
        FROM que_jobs AS j
        WHERE queue = $1::text
        AND run_at <= now()
        AND (priority, run_at, job_id) > (jobs.priority, jobs.run_at, jobs.job_id)
        ORDER BY priority, run_at, job_id
        LIMIT 1
      ) AS j
      FROM jobs
      WHERE jobs.job_id IS NOT NULL
      LIMIT 1
    ) AS t1
  )
)
SELECT queue, priority, run_at, job_id, job_class, args, error_count
FROM jobs
WHERE locked
LIMIT 1
-- expect: primary
SELECT txid_current()
-- expect: primary
SELECT pg_current_xact_id()
-- expect: primary
SELECT pg_current_wal_lsn()
-- expect: primary
SELECT pg_current_wal_insert_lsn()
-- expect: primary  lag seen from the primary
SELECT client_addr, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes FROM pg_stat_replication
-- expect: primary
SELECT pg_switch_wal()
-- expect: primary
SELECT pg_create_restore_point('before_migration_42')
-- expect: primary
SELECT pg_notify('jobs', json_build_object('id', 42)::text)
-- expect: primary  RLS tenant setting
SELECT set_config('app.current_tenant', $1, false)
-- expect: primary  PostGraphile style
select set_config('role', 'app_user', true), set_config('jwt.claims.user_id', '42', true)
-- expect: primary
SELECT lo_create(0)
-- expect: primary
SELECT lo_import('/tmp/photo.jpg')
-- expect: primary
SELECT lo_export(16403, '/tmp/photo_out.jpg')
-- expect: primary
SELECT lo_unlink(16403)
-- expect: primary
SELECT lo_open(16403, 131072)
-- expect: primary
SELECT lowrite(0, '\x48656c6c6f'::bytea)
-- expect: primary
SELECT lo_put(16403, 0, '\xdeadbeef')
-- expect: primary
SELECT lo_from_bytea(0, 'hello'::bytea)
-- expect: primary
SELECT lo_truncate(0, 100)
-- expect: primary
SELECT pg_cancel_backend(12345)
-- expect: primary  kill idle-in-transaction sessions
SELECT pg_terminate_backend(pid)
FROM pg_stat_activity
WHERE datname = 'app' AND pid <> pg_backend_pid() AND state = 'idle in transaction'
-- expect: primary
SELECT pg_reload_conf()
-- expect: primary
SELECT pg_stat_reset()
-- expect: primary
SELECT * FROM pg_create_physical_replication_slot('replica_1')
-- expect: primary
SELECT pg_drop_replication_slot('replica_1')
-- expect: primary
SELECT pg_promote()
-- expect: primary  write function beside a user function
SELECT my_schema.compute_score(42), nextval('score_runs_seq')
-- expect: primary
BEGIN ISOLATION LEVEL REPEATABLE READ
-- expect: replica  a read-only transaction may run on a replica
START TRANSACTION READ ONLY
-- expect: primary
COMMIT
-- expect: primary
ROLLBACK
-- expect: primary
ABORT
-- expect: primary
COMMIT AND CHAIN
-- expect: primary
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE
-- expect: primary
PREPARE TRANSACTION 'tx-42'
-- expect: primary
COMMIT PREPARED 'tx-42'
-- expect: primary
SET search_path TO app, public
-- expect: primary
SET LOCAL statement_timeout = '5s'
-- expect: primary
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY
-- expect: primary
SET TIME ZONE 'UTC'
-- expect: primary
SET ROLE app_admin
-- expect: primary
RESET ALL
-- expect: primary
reset statement_timeout
-- expect: primary
DISCARD ALL
-- expect: primary
LISTEN order_events
-- expect: primary
UNLISTEN *
-- expect: primary
NOTIFY order_events, 'order 42 paid'
-- expect: primary  SQL-level PREPARE of a read
PREPARE get_user (int) AS SELECT * FROM users WHERE id = $1
-- expect: primary
EXECUTE get_user(42)
-- expect: primary
DEALLOCATE ALL
-- expect: primary
LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE
-- expect: primary  cursor over a read
DECLARE big_cursor CURSOR WITH HOLD FOR SELECT * FROM big_table ORDER BY id
-- expect: primary  FETCH statement, not FETCH FIRST
FETCH FORWARD 100 FROM big_cursor
-- expect: primary
MOVE LAST IN big_cursor
-- expect: primary
CLOSE big_cursor
-- expect: primary
VACUUM (VERBOSE, ANALYZE) orders
-- expect: primary
ANALYZE orders
-- expect: primary  British spelling
ANALYSE users
-- expect: primary
CLUSTER orders USING orders_pkey
-- expect: primary
REINDEX INDEX CONCURRENTLY orders_pkey
-- expect: primary
CHECKPOINT
-- expect: primary
LOAD 'auto_explain'
-- expect: primary
ALTER SYSTEM SET work_mem = '64MB'
-- expect: primary
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS index_users_on_lower_email ON users (lower(email))
-- expect: primary
CREATE INDEX idx_events_payload ON events USING gin (payload jsonb_path_ops)
-- expect: primary  partial index
CREATE INDEX CONCURRENTLY idx_users_active ON users (created_at) WHERE deleted_at IS NULL
-- expect: primary
DROP INDEX CONCURRENTLY IF EXISTS index_users_on_email
-- expect: primary
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_seen_at timestamptz
-- expect: primary
ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2) USING total::numeric(12,2)
-- expect: primary
ALTER TABLE orders RENAME COLUMN total TO amount
-- expect: primary
DROP TABLE IF EXISTS tmp_import CASCADE
-- expect: primary
CREATE UNLOGGED TABLE cache_entries (key text PRIMARY KEY, value jsonb, expires_at timestamptz)
-- expect: primary  partition DDL contains FOR VALUES
CREATE TABLE measurements_2024_05 PARTITION OF measurements FOR VALUES FROM ('2024-05-01') TO ('2024-06-01')
-- expect: primary
ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY
-- expect: primary
CREATE TABLE orders_2023 AS SELECT * FROM orders WHERE created_at < '2024-01-01'
-- expect: primary
CREATE TEMP TABLE tmp_ids (id bigint PRIMARY KEY) ON COMMIT DROP
-- expect: primary
CREATE TEMPORARY TABLE t_scratch AS SELECT 1 AS x
-- expect: primary
CREATE VIEW active_users AS SELECT * FROM users WHERE active
-- expect: primary
CREATE OR REPLACE VIEW order_totals AS
SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id
-- expect: primary
CREATE MATERIALIZED VIEW sales_summary AS
SELECT date_trunc('day', created_at) AS day, sum(total) AS revenue FROM orders GROUP BY 1
WITH NO DATA
-- expect: primary
REFRESH MATERIALIZED VIEW CONCURRENTLY sales_summary
-- expect: primary
DROP MATERIALIZED VIEW IF EXISTS sales_summary
-- expect: primary  plpgsql function body
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END;
$$;
-- expect: primary  trigger DDL contains FOR EACH ROW
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at()
-- expect: primary
CREATE FUNCTION add(integer, integer) RETURNS integer
    AS 'select $1 + $2;'
    LANGUAGE SQL
    IMMUTABLE
    RETURNS NULL ON NULL INPUT;
-- expect: primary  SQL-standard body with inner semicolon
CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END
-- expect: primary
CREATE PROCEDURE transfer(from_id int, to_id int, amount numeric)
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE accounts SET balance = balance - amount WHERE id = from_id;
  UPDATE accounts SET balance = balance + amount WHERE id = to_id;
  COMMIT;
END
$$
-- expect: primary
CALL transfer(1, 2, 100.00)
-- expect: primary
call refresh_reports()
-- expect: primary
DROP FUNCTION IF EXISTS set_updated_at() CASCADE
-- expect: primary
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_ro') THEN
    CREATE ROLE app_ro LOGIN;
  END IF;
END
$$;
-- expect: primary  DO is primary even if it only reads
DO $$ BEGIN PERFORM pg_sleep(0); END $$
-- expect: primary
DO LANGUAGE plpgsql $body$ BEGIN RAISE NOTICE 'hello'; END $body$
-- expect: primary
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped')
-- expect: primary
ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'refunded' AFTER 'paid'
-- expect: primary
CREATE DOMAIN email_address AS text CHECK (VALUE ~ '^[^@]+@[^@]+$')
-- expect: primary
CREATE SCHEMA IF NOT EXISTS reporting AUTHORIZATION reporter
-- expect: primary
DROP SCHEMA legacy CASCADE
-- expect: primary
CREATE EXTENSION IF NOT EXISTS pgcrypto
-- expect: primary
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public
-- expect: primary
CREATE SEQUENCE invoice_number_seq START WITH 1000 INCREMENT BY 1 CACHE 20
-- expect: primary
ALTER SEQUENCE users_id_seq RESTART WITH 1
-- expect: primary
CREATE ROLE reporting_ro WITH LOGIN PASSWORD 'secret' CONNECTION LIMIT 10
-- expect: primary
ALTER ROLE app SET statement_timeout = '30s'
-- expect: primary
DROP ROLE IF EXISTS old_user
-- expect: primary
REASSIGN OWNED BY old_user TO app
-- expect: primary
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY
-- expect: primary
CREATE POLICY tenant_isolation ON accounts USING (tenant_id = current_setting('app.tenant_id')::uuid)
-- expect: primary
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reporting_ro
-- expect: primary
REVOKE ALL ON DATABASE app FROM PUBLIC
-- expect: primary
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO reporting_ro
-- expect: primary
COMMENT ON TABLE orders IS 'Customer orders; one row per checkout'
-- expect: primary
COMMENT ON COLUMN users.email IS 'lower-cased, unique'
-- expect: primary
CREATE STATISTICS s_city_zip (dependencies) ON city, zip FROM addresses
-- expect: primary  publication DDL contains FOR TABLE
CREATE PUBLICATION app_pub FOR TABLE users, orders
-- expect: primary
CREATE DATABASE analytics TEMPLATE template0 ENCODING 'UTF8'
-- expect: primary  EXPLAIN ANALYZE of a write
EXPLAIN ANALYZE DELETE FROM sessions WHERE expires_at < now()
-- expect: primary  EXPLAIN of a write
EXPLAIN UPDATE accounts SET balance = 0 WHERE id = 1
-- expect: primary
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO t SELECT generate_series(1, 1000)
-- expect: primary  EXPLAIN of a data-modifying CTE
EXPLAIN (COSTS OFF) WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d
-- expect: primary  EXPLAIN ANALYZE of a locking read
EXPLAIN ANALYZE SELECT * FROM accounts WHERE id = 1 FOR UPDATE
-- expect: primary
EXPLAIN ANALYZE SELECT nextval('s')
-- expect: primary
EXPLAIN CREATE TABLE x AS SELECT 1
-- expect: primary
EXPLAIN MERGE INTO inventory i USING incoming s ON i.sku = s.sku WHEN MATCHED THEN DELETE
-- expect: primary  multi-statement with a write
SELECT 1; INSERT INTO t VALUES (1)
-- expect: primary  multi-statement transaction
BEGIN; SELECT 1; COMMIT
-- expect: primary
SELECT * FROM users WHERE id = 1; UPDATE users SET last_seen_at = now() WHERE id = 1;
-- expect: primary
SET statement_timeout = 0; SELECT count(*) FROM big_table
-- expect: primary
SHOW search_path; SHOW transaction_read_only
-- expect: primary
INSERT INTO t (x) VALUES (1); SELECT currval(pg_get_serial_sequence('t', 'id'))
-- expect: primary  comment then a write on the next line
SELECT 1; -- read first
DELETE FROM t WHERE id = 2
-- expect: primary  string containing -- hides nothing
SELECT '--'; DELETE FROM t
-- expect: primary  string containing /* hides nothing
SELECT '/*' AS a; DELETE FROM t WHERE id = 1; SELECT '*/' AS b
-- expect: primary  standard string: backslash does not escape the quote
SELECT '\'; DELETE FROM t WHERE id = 1; -- '
-- expect: primary  invalid
SELEC * FROM users
-- expect: primary  invalid
SELECT * FROM
-- expect: primary  invalid
SELECT * FROM users WHERE
-- expect: primary  invalid
SELECT 'unterminated
-- expect: primary  invalid
SELECT (1 + 2
-- expect: primary  invalid
FROM users SELECT *
-- expect: primary  invalid
SELECT 1; SELEC 2
-- expect: primary  invalid (CockroachDB UPSERT)
UPSERT INTO t VALUES (1)
-- expect: primary  invalid (MySQL LIMIT offset, count)
SELECT * FROM t LIMIT 10, 20
-- expect: primary  invalid (MySQL backticks)
SELECT `name` FROM users
-- expect: primary  invalid (unterminated comment)
/* unterminated comment SELECT 1
-- expect: primary  invalid (unterminated dollar quote)
SELECT $$unterminated
-- expect: primary  hint: read-your-writes
/* pgroute: route=primary */ SELECT balance FROM accounts WHERE id = $1
-- expect: primary  hint
/* pgroute: route=primary */ SELECT 1
-- expect: primary  hint
/* pgroute: route=primary */ WITH x AS (SELECT 1) SELECT * FROM x
-- expect: primary  hint
/* pgroute: route=primary */ SHOW search_path
-- expect: primary  hint
/* pgroute: route=primary */ EXPLAIN ANALYZE SELECT count(*) FROM orders
-- expect: primary  hint on a write
/* pgroute: route=primary */ INSERT INTO t VALUES (1)
-- expect: replica  hint on a read
/* pgroute: route=replica */ SELECT * FROM orders WHERE id = 1
-- expect: replica  hint on a construct a classifier may not know
/* pgroute: route=replica */ SELECT xt.* FROM docs, XMLTABLE('/rows/row' PASSING docs.body COLUMNS id int PATH '@id', name text PATH 'name') AS xt
-- expect: replica  hint, newline after it
/* pgroute: route=replica */
SELECT my_schema.compute_score(42)
-- expect: replica  hint
/* pgroute: route=replica */ WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10) SELECT * FROM t
-- expect: replica  invalid; the hint wins
/* pgroute: route=replica */ SELEC * FROM users
-- expect: replica  the hint wins even over a write function
/* pgroute: route=replica */ SELECT nextval('orders_id_seq')
