// The everyday steps of a JDBC application, through pgdog with a mirror (issue 25).
//
// Run by integration/tests/jdbc.rs: java -cp <dir>:postgresql.jar JdbcSteps HOST PORT USER PASSWORD DB
// After each step it prints "STEP <name>" and waits for "ok" on stdin (the test checks the
// mirror in between); anything else, or end of input, stops it with an error. One JVM runs
// every step: the JVM's start is the slow part.

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.Properties;

public class JdbcSteps {
    static String url;
    static Properties base = new Properties();
    static BufferedReader in = new BufferedReader(new InputStreamReader(System.in));

    static void step(String name) throws IOException {
        System.out.println("STEP " + name);
        System.out.flush();
        String reply = in.readLine();
        if (!"ok".equals(reply)) {
            throw new IOException("checks failed after step " + name + ": " + reply);
        }
    }

    static Connection connect(String... props) throws SQLException {
        Properties p = new Properties();
        p.putAll(base);
        for (int i = 0; i < props.length; i += 2) {
            p.setProperty(props[i], props[i + 1]);
        }
        return DriverManager.getConnection(url, p);
    }

    static int drain(ResultSet rs) throws SQLException {
        int n = 0;
        try (rs) {
            int columns = rs.getMetaData().getColumnCount();
            while (rs.next()) {
                for (int i = 1; i <= columns; i++) {
                    rs.getObject(i);
                }
                n++;
            }
        }
        return n;
    }

    /// Runs `sql` and expects it to end with SQLSTATE 57014 (cancelled).
    static void expectCancelled(Statement s, String sql) throws SQLException {
        try {
            s.executeUpdate(sql);
        } catch (SQLException e) {
            if ("57014".equals(e.getSQLState())) {
                return;
            }
            throw e;
        }
        throw new SQLException("not cancelled: " + sql);
    }

    static void batch(Connection c, int from, boolean commit) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("insert into jb(id, k) values (?, ?)")) {
            for (int i = from; i < from + 500; i++) {
                ps.setInt(1, i);
                ps.setString(2, "k" + i);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            if (counts.length != 500) {
                throw new SQLException("batch of 500 gave " + counts.length + " counts");
            }
        }
        if (commit) {
            c.commit();
        }
    }

    public static void main(String[] a) throws Exception {
        url = "jdbc:postgresql://" + a[0] + ":" + a[1] + "/" + a[4];
        base.setProperty("user", a[2]);
        base.setProperty("password", a[3]);
        base.setProperty("sslmode", "disable");

        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("create table j(id int primary key, v text, n numeric, ts timestamptz, b bytea)");
            s.execute("create table jb(id int primary key, k text)");
            s.executeUpdate("insert into j values (1, 'one', 1.5, '2024-01-01 00:00:00+00', '\\x0102')");
            drain(s.executeQuery("select * from j order by id"));
            step("plain statements");

            // Past prepareThreshold (5): named server-side statements from the fifth on.
            try (PreparedStatement ins = c.prepareStatement("insert into j(id, v, n) values (?, ?, ?)");
                    PreparedStatement sel = c.prepareStatement("select v, n from j where id = ?")) {
                for (int i = 0; i < 20; i++) {
                    ins.setInt(1, 100 + i);
                    ins.setString(2, "p" + i);
                    ins.setBigDecimal(3, new BigDecimal(i + ".25"));
                    ins.executeUpdate();
                    sel.setInt(1, 100 + i);
                    drain(sel.executeQuery());
                }
            }
            step("prepared statement x20");

            c.setAutoCommit(false);
            s.executeUpdate("insert into j(id, v) values (200, 'rolled back')");
            c.rollback();
            s.executeUpdate("insert into j(id, v) values (201, 'committed')");
            drain(s.executeQuery("select clock_timestamp()"));
            c.commit();
            c.setAutoCommit(true);
            step("autocommit off: rollback and commit");
        }

        try (Connection c = connect("reWriteBatchedInserts", "true")) {
            batch(c, 0, false);
        }
        try (Connection c = connect()) {
            batch(c, 1000, false);
        }
        try (Connection c = connect("preferQueryMode", "simple")) {
            batch(c, 2000, false);
            c.setAutoCommit(false);
            batch(c, 3000, true);
        }
        step("executeBatch of 500");

        try (Connection c = connect()) {
            DatabaseMetaData md = c.getMetaData();
            drain(md.getTables(null, "public", "%", new String[] {"TABLE"}));
            drain(md.getColumns(null, "public", "j", null));
            drain(md.getPrimaryKeys(null, "public", "j"));
            drain(md.getIndexInfo(null, "public", "j", false, false));
            md.getDatabaseProductVersion();
            step("DatabaseMetaData");

            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(7);
                int n = drain(s.executeQuery("select id, v from j order by id"));
                if (n < 20) {
                    throw new SQLException("fetched " + n + " rows");
                }
            }
            c.commit();
            c.setAutoCommit(true);
            step("setFetchSize in a transaction");

            try (Statement s = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        Thread.sleep(500);
                        s.cancel();
                    } catch (Exception e) {
                        e.printStackTrace();
                    }
                });
                canceller.start();
                expectCancelled(s, "with z as (select pg_sleep(3)) update j set v = 'CANCELLED' from z where id = 1");
                canceller.join();
            }
            step("Statement.cancel()");

            try (Statement s = c.createStatement()) {
                s.setQueryTimeout(1);
                expectCancelled(s, "with z as (select pg_sleep(2)) update j set v = 'TIMED OUT' from z where id = 1");
            }
            step("setQueryTimeout");
        }

        try (Connection c = connect("prepareThreshold", "-1");
                PreparedStatement ins = c.prepareStatement("insert into j(id, v, n, ts, b) values (?, ?, ?, ?, ?)");
                PreparedStatement sel = c.prepareStatement("select id, v, n, ts, b from j where id >= ? order by id")) {
            for (int i = 0; i < 5; i++) {
                ins.setInt(1, 300 + i);
                ins.setString(2, "binary " + i);
                ins.setBigDecimal(3, new BigDecimal("12345.678"));
                ins.setTimestamp(4, Timestamp.valueOf("2024-02-0" + (i + 1) + " 10:11:12"));
                ins.setBytes(5, new byte[] {1, 2, (byte) i});
                ins.executeUpdate();
                sel.setInt(1, 290);
                drain(sel.executeQuery());
            }
            step("binary transfer");
        }

        try (Connection c = connect("autosave", "always"); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            s.executeUpdate("insert into j(id, v) values (400, 'autosave')");
            try {
                s.executeUpdate("insert into j(id, v) values (400, 'duplicate')");
                throw new SQLException("duplicate key accepted");
            } catch (SQLException e) {
                if (!"23505".equals(e.getSQLState())) {
                    throw e;
                }
            }
            s.executeUpdate("insert into j(id, v) values (401, 'after the error')");
            drain(s.executeQuery("select count(*) from j"));
            c.commit();
            step("autosave=always");
        }
        System.out.println("DONE");
    }
}
