use super::*;
use Class::*;

/// Each statement has the class given.
fn check(cases: &[(&str, Class)]) {
    for (sql, class) in cases {
        assert_eq!(classify(sql.as_bytes()), *class, "{sql}");
    }
}

#[test]
fn queries_read_unless_a_word_shows_a_write() {
    check(&[
        ("SELECT * FROM t WHERE id = 1", Read),
        ("  /* app */ select 1;", Read),
        ("(SELECT 1) UNION ALL (SELECT 2)", Read),
        ("((select a from t))", Read),
        (
            "select a from t union select b from u except select c from v",
            Read,
        ),
        ("WITH x AS (SELECT 1) SELECT * FROM x", Read),
        (
            "with recursive r(n) as (values (1) union all select n + 1 from r) select * from r",
            Read,
        ),
        ("VALUES (1, 'a'), (2, 'b')", Read),
        ("TABLE accounts", Read),
        (
            "select 'insert into t', \"update\" from t -- delete\n",
            Read,
        ),
        ("select currval('s'), lastval(), nextval_total from t", Read),
        ("select * from t for read only", Read),
        // Data-modifying WITH, whichever part modifies.
        (
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x",
            Write,
        ),
        (
            "with d as (delete from t returning *) select count(*) from d",
            Write,
        ),
        ("with u as (update t set a = 1 returning a) table u", Write),
        (
            "with m as (merge into t using s on t.id = s.id when matched then delete) select 1",
            Write,
        ),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", Write),
        ("with x as (select 1) delete from t using x", Write),
        // Row locks, at any depth.
        ("SELECT * FROM t FOR UPDATE", Write),
        ("select * from t for no key update of t nowait", Write),
        ("select * from t for share", Write),
        ("select * from t FOR KEY SHARE skip locked", Write),
        ("select * from (select * from t for update) s", Write),
        // SELECT INTO creates a table.
        ("SELECT * INTO archive FROM t", Write),
        ("select a into temp t2 from t", Write),
        // Functions known to write.
        ("select nextval('s')", Write),
        ("select pg_catalog.setval('s', 1)", Write),
        (
            "SELECT set_config('default_transaction_read_only', 'off', false)",
            Write,
        ),
        ("select pg_notify('c', 'x')", Write),
        ("values (nextval('s'))", Write),
    ]);
}

#[test]
fn other_reads() {
    check(&[
        ("SHOW search_path", Read),
        ("show all", Read),
        ("FETCH 10 FROM c", Read),
        ("move forward all in c", Read),
        ("CLOSE c", Read),
        ("close all", Read),
        ("DECLARE c CURSOR FOR SELECT * FROM t", Read),
        (
            "declare c binary no scroll cursor with hold for select * from t",
            Read,
        ),
        ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", Write),
        ("declare c cursor", Unknown),
        ("COPY t TO STDOUT", Read),
        ("copy t (a, b) to stdout with (format csv)", Read),
        ("COPY (SELECT * FROM t) TO STDOUT", Read),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", Write),
        ("COPY t TO '/tmp/t.csv'", Write),
        ("copy t to program 'gzip > /tmp/t.gz'", Write),
        ("COPY t FROM STDIN", Write),
        ("copy t from '/data/stdin.csv'", Write),
        ("copy (select 1) from stdin", Write),
        ("copy t", Unknown),
    ]);
}

#[test]
fn explain_reads_unless_it_analyzes() {
    check(&[
        ("EXPLAIN SELECT 1", Read),
        ("EXPLAIN DELETE FROM t", Read),
        ("explain verbose insert into t values (1)", Read),
        ("EXPLAIN (COSTS OFF, FORMAT JSON) UPDATE t SET a = 1", Read),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", Read),
        ("explain (analyze off, buffers) delete from t", Read),
        ("explain (analyze 0) delete from t", Read),
        ("EXPLAIN ANALYZE SELECT 1", Read),
        ("EXPLAIN ANALYZE DELETE FROM t", Write),
        ("explain analyse verbose update t set a = 1", Write),
        ("EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)", Write),
        (
            "EXPLAIN (FORMAT TEXT, ANALYZE TRUE, BUFFERS) DELETE FROM t",
            Write,
        ),
        ("explain (analyze on) select * from t for update", Write),
        ("explain (analyze) select 1", Read),
        ("explain analyze create table t2 as select 1", Write),
        ("explain analyze execute p(1)", Unknown),
        ("EXPLAIN", Read),
    ]);
}

#[test]
fn transaction_control() {
    check(&[
        ("BEGIN", Transaction),
        (
            "begin isolation level repeatable read, read only",
            Transaction,
        ),
        (
            "begin transaction isolation level read committed",
            Transaction,
        ),
        ("START TRANSACTION", Transaction),
        ("start transaction read only, deferrable", Transaction),
        ("COMMIT", Transaction),
        ("commit and chain", Transaction),
        ("END", Transaction),
        ("ROLLBACK", Transaction),
        ("rollback and chain", Transaction),
        ("ROLLBACK TO SAVEPOINT a", Transaction),
        ("rollback to a", Transaction),
        ("ABORT", Transaction),
        ("SAVEPOINT a", Transaction),
        ("RELEASE SAVEPOINT a", Transaction),
        ("release a", Transaction),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", Transaction),
        ("set transaction read only", Transaction),
        ("SET CONSTRAINTS ALL DEFERRED", Transaction),
        // Two-phase commit writes its state on the server.
        ("PREPARE TRANSACTION 'tx1'", Write),
        ("COMMIT PREPARED 'tx1'", Write),
        ("rollback prepared 'tx1'", Write),
    ]);
}

#[test]
fn session_state() {
    check(&[
        ("SET search_path TO app, public", Session),
        ("set local statement_timeout = '5s'", Session),
        ("SET SESSION application_name = 'x'", Session),
        ("SET TIME ZONE 'UTC'", Session),
        ("set role reporting", Session),
        ("SET SESSION AUTHORIZATION DEFAULT", Session),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            Session,
        ),
        ("RESET search_path", Session),
        ("RESET ALL", Session),
        ("DISCARD ALL", Session),
        ("discard plans", Session),
        ("DEALLOCATE s1", Session),
        ("deallocate all", Session),
        ("LISTEN channel", Session),
        ("UNLISTEN *", Session),
        ("PREPARE p (int) AS SELECT * FROM t WHERE id = $1", Read),
        ("prepare p as insert into t values ($1)", Write),
        ("prepare p", Unknown),
        ("SET", Unknown),
        ("RESET", Unknown),
    ]);
}

#[test]
fn lifting_the_read_only_guard_is_a_write() {
    check(&[
        ("BEGIN READ WRITE", Write),
        (
            "begin transaction isolation level serializable, read write",
            Write,
        ),
        ("START TRANSACTION READ WRITE", Write),
        ("SET TRANSACTION READ WRITE", Write),
        (
            "set session characteristics as transaction read write",
            Write,
        ),
        ("SET default_transaction_read_only = off", Write),
        (
            "set session \"default_transaction_read_only\" to false",
            Write,
        ),
        ("SET LOCAL transaction_read_only TO off", Write),
        ("RESET default_transaction_read_only", Write),
        ("reset transaction_read_only", Write),
    ]);
}

#[test]
fn writes_and_the_unknown() {
    check(&[
        ("INSERT INTO t VALUES (1)", Write),
        ("update t set a = 1", Write),
        ("DELETE FROM t", Write),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            Write,
        ),
        ("CREATE TABLE t (a int)", Write),
        ("create table t2 as select * from t", Write),
        ("ALTER TABLE t ADD b int", Write),
        ("DROP TABLE t", Write),
        ("TRUNCATE t", Write),
        ("GRANT SELECT ON t TO r", Write),
        ("revoke all on t from r", Write),
        ("VACUUM ANALYZE t", Write),
        ("ANALYZE t", Write),
        ("CLUSTER t", Write),
        ("REINDEX TABLE t", Write),
        ("LOCK TABLE t IN ACCESS SHARE MODE", Write),
        ("CALL p(1)", Write),
        ("DO $$ BEGIN PERFORM 1; END $$", Write),
        ("NOTIFY c, 'x'", Write),
        ("REFRESH MATERIALIZED VIEW v", Write),
        ("SECURITY LABEL ON TABLE t IS 'x'", Write),
        ("COMMENT ON TABLE t IS 'x'", Write),
        ("CHECKPOINT", Write),
        ("LOAD 'auto_explain'", Write),
        ("IMPORT FOREIGN SCHEMA s FROM SERVER f INTO l", Write),
        ("REASSIGN OWNED BY a TO b", Write),
        // The statement EXECUTE runs was prepared elsewhere.
        ("EXECUTE p(1)", Unknown),
        ("VACCUM t", Unknown),
        ("\"select\" 1", Unknown),
        ("'select'", Unknown),
        ("$1", Unknown),
    ]);
    assert!(Write.may_write() && Unknown.may_write());
    assert!(!Read.may_write() && !Transaction.may_write() && !Session.may_write());
}

#[test]
fn a_text_has_the_greatest_class_of_its_statements() {
    check(&[
        ("", Read),
        (" -- nothing\n ; ", Read),
        ("BEGIN; SELECT 1; COMMIT", Transaction),
        ("set a = 1; select 1", Session),
        ("begin; select 1; execute p; commit", Unknown),
        ("begin; execute p; insert into t values (1); commit", Write),
        ("select 1; delete from t", Write),
        ("select 'a;b'; select 2", Read),
        (
            "create function f() returns int language sql begin atomic select 1; end; select 1",
            Write,
        ),
        // The text ends at the Query message's NUL.
        ("select 1\0delete from t", Read),
    ]);
    assert!(Read < Transaction && Transaction < Session && Session < Unknown && Unknown < Write);
}
