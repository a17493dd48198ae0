//! Micro-benchmark of what reads query text on the mirror path: the statement fingerprint
//! (once per mirrored statement), reported in nanoseconds per statement for a few typical
//! statements.
//!
//! ```sh
//! cargo bench -p pgdog --bench sql_scan            # full run
//! cargo bench -p pgdog --bench sql_scan -- --smoke # quick check for CI
//! # (`cargo test --benches` runs the smoke mode too)
//! ```

use std::hint::black_box;
use std::time::Instant;

use pgdog::compare::fingerprint;

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
    let iterations: u32 = if smoke { 2_000 } else { 500_000 };
    let rounds = if smoke { 1 } else { 5 };

    println!("fingerprint, {iterations} calls per round, {rounds} rounds (best shown)");
    for (name, sql) in STATEMENTS {
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..iterations {
                black_box(fingerprint(black_box(sql)));
            }
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iterations));
        }
        println!(
            "  {name:<16} {best:>8.0} ns/statement ({} bytes)",
            sql.len()
        );
    }
}
