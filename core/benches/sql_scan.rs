//! Micro-benchmark of what reads query text on the mirror path, in nanoseconds per
//! statement for a few typical statements: the tokens alone, the statement fingerprint
//! (once per mirrored statement) and the statement class.
//!
//! ```sh
//! cargo bench -p pgdog --bench sql_scan            # full run
//! cargo bench -p pgdog --bench sql_scan -- --smoke # quick check for CI
//! # (`cargo test --benches` runs the smoke mode too)
//! ```

use std::hint::black_box;
use std::time::Instant;

use pgdog::compare::fingerprint;
use pgdog::sql::{classify, tokens};

/// Statements as applications send them: an ORM's point lookup, a pgbench update, an insert
/// of several rows, a join with a comment and quoted identifiers.
const STATEMENTS: &[(&str, &str)] = &[
    (
        "point select",
        "SELECT id, name, email FROM users WHERE id = $1",
    ),
    (
        "pgbench update",
        "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 98765;",
    ),
    (
        "insert rows",
        "INSERT INTO events (kind, payload, at) VALUES ('click', '{\"x\": 1}', now()), \
         ('view', '{\"x\": 2}', now()), ('click', '{\"x\": 3}', now())",
    ),
    (
        "join",
        "/* app: orders */ SELECT o.\"Id\", c.name, sum(l.qty * l.price) AS total \
         FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN lines l ON l.order_id = o.\"Id\" \
         WHERE o.created_at >= '2024-01-01'::date AND c.country IN ('FR', 'DE', 'IT') \
         GROUP BY 1, 2 ORDER BY total DESC LIMIT 50",
    ),
];

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) run small.
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke") || !args.iter().any(|a| a == "--bench");
    let calls: u32 = if smoke { 2_000 } else { 500_000 };
    let rounds = if smoke { 1 } else { 5 };

    println!("{calls} calls per round, {rounds} rounds (best shown), ns/statement");
    println!(
        "  {:<16} {:>6} {:>8} {:>12} {:>9}",
        "", "bytes", "tokens", "fingerprint", "classify"
    );
    for (name, sql) in STATEMENTS {
        let per_call = |f: &dyn Fn()| {
            let mut best = f64::MAX;
            for _ in 0..rounds {
                let start = Instant::now();
                for _ in 0..calls {
                    f();
                }
                best = best.min(start.elapsed().as_nanos() as f64 / f64::from(calls));
            }
            best
        };
        let lexed = per_call(&|| {
            black_box(tokens(black_box(sql.as_bytes())).count());
        });
        let fingerprinted = per_call(&|| {
            black_box(fingerprint(black_box(sql)));
        });
        let classified = per_call(&|| {
            black_box(classify(black_box(sql.as_bytes())));
        });
        println!(
            "  {name:<16} {:>6} {lexed:>8.0} {fingerprinted:>12.0} {classified:>9.0}",
            sql.len()
        );
    }
}
