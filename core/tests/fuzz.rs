//! Fuzzing that runs on stable, in CI: a seeded mutation loop over the parsers of
//! untrusted bytes, checking [`pgdog::invariants`] (the same checks as the nightly
//! `cargo fuzz` targets in `core/fuzz`).
//!
//! For each target: first every file of `core/tests/corpus/<target>/` (inputs that once
//! broke a promise, kept as regression tests, and a few well-formed seeds), then
//! `PGDOG_FUZZ_CASES` inputs (default 100,000) made by mutating the seeds: bytes flipped,
//! set to values parsers trip on, inserted, deleted, duplicated, spliced from another
//! seed, or replaced by tokens the parser gives meaning to. The loop is deterministic for
//! a given `PGDOG_FUZZ_SEED`; a failure prints the seed, the case and the input (hex), to
//! be saved in the corpus once fixed.
//!
//! `PGDOG_FUZZ_CASES=10000000 cargo test --release -p pgdog --test fuzz` runs a long
//! session.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per target unless `PGDOG_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u64 = 100_000;
/// Seed unless `PGDOG_FUZZ_SEED` says otherwise (fixed: CI runs are reproducible).
const DEFAULT_SEED: u64 = 20_261_207;
/// Longest input made.
const MAX_LEN: usize = 512;

fn cases() -> u64 {
    std::env::var("PGDOG_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn seed() -> u64 {
    std::env::var("PGDOG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
        .join(target)
}

/// The corpus files of `target`, in name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(dir) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = dir
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).expect("corpus file"))
        })
        .collect();
    files.sort();
    files
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// One parser under test: its check, its seeds, and the tokens it gives meaning to.
struct Target {
    name: &'static str,
    check: fn(&[u8]),
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
}

impl Target {
    /// The corpus, then the mutation loop. Returns the number of inputs checked.
    fn run(mut self) -> u64 {
        let mut checked = 0;
        for (file, data) in corpus(self.name) {
            run_one(self.name, self.check, &data, &format!("corpus file {file}"));
            self.seeds.push(data);
            checked += 1;
        }
        assert!(!self.seeds.is_empty(), "{}: no seeds", self.name);
        let seed = seed();
        let mut rng = StdRng::seed_from_u64(seed ^ fxhash(self.name));
        for case in 0..cases() {
            let data = mutate(&mut rng, &self.seeds, self.tokens);
            run_one(
                self.name,
                self.check,
                &data,
                &format!("PGDOG_FUZZ_SEED={seed}, case {case}"),
            );
            checked += 1;
        }
        checked
    }
}

fn run_one(target: &str, check: fn(&[u8]), data: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| check(data))).is_err() {
        panic!(
            "{target}: a promise was broken ({what}); input ({} bytes, hex): {}\n\
             save it as core/tests/corpus/{target}/<name> once fixed",
            data.len(),
            hex(data)
        );
    }
}

/// A stable hash of a name (the per-target stream of the seed).
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Values length fields and parsers trip on.
const INTERESTING_32: &[i32] = &[
    0,
    1,
    3,
    4,
    5,
    8,
    16,
    -1,
    -4,
    i32::MAX,
    i32::MIN,
    0x7fff,
    0x8000,
    0xffff,
    196_608,
    80_877_102,
    80_877_103,
    80_877_104,
    10_000,
    10_001,
];

/// A mutation of one or two seeds, 1 to 4 edits deep.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
    let mut data = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        edit(rng, &mut data, seeds, tokens);
    }
    data.truncate(MAX_LEN);
    data
}

fn edit(rng: &mut StdRng, data: &mut Vec<u8>, seeds: &[Vec<u8>], tokens: &[&[u8]]) {
    let len = data.len();
    let at = |rng: &mut StdRng| rng.gen_range(0..=len);
    match rng.gen_range(0..10) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] ^= 1 << rng.gen_range(0..8);
        }
        // A byte parsers care about.
        1 if len > 0 => {
            let i = rng.gen_range(0..len);
            data[i] = *[
                0u8, 0xff, 0x7f, 0x80, b'\'', b'"', b'$', b';', b'\\', b'\n', b'*', b'/', b'-',
            ]
            .get(rng.gen_range(0..13))
            .unwrap();
        }
        // A 32-bit big-endian value (lengths, protocol codes).
        2 if len >= 4 => {
            let i = rng.gen_range(0..=len - 4);
            let v = INTERESTING_32[rng.gen_range(0..INTERESTING_32.len())];
            data[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        // Random bytes inserted.
        3 => {
            let i = at(rng);
            let n = rng.gen_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            data.splice(i..i, bytes);
        }
        // A range deleted.
        4 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(16));
            data.drain(i..i + n);
        }
        // A range duplicated.
        5 if len > 0 => {
            let i = rng.gen_range(0..len);
            let n = rng.gen_range(1..=(len - i).min(32));
            let copy = data[i..i + n].to_vec();
            let to = at(rng);
            data.splice(to..to, copy);
        }
        // Spliced with another seed.
        6 => {
            let other = &seeds[rng.gen_range(0..seeds.len())];
            let from = rng.gen_range(0..=other.len());
            let to = at(rng);
            data.truncate(to);
            data.extend_from_slice(&other[from..]);
        }
        // Cut short.
        7 if len > 0 => {
            let n = rng.gen_range(0..len);
            data.truncate(n);
        }
        // A token the parser gives meaning to.
        _ if !tokens.is_empty() => {
            let token = tokens[rng.gen_range(0..tokens.len())];
            let i = at(rng);
            if rng.gen_bool(0.5) || len == 0 {
                data.splice(i..i, token.iter().copied());
            } else {
                let end = (i + token.len()).min(len);
                data.splice(i..end, token.iter().copied());
            }
        }
        _ => data.push(rng.gen()),
    }
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup_target() -> Target {
    use pgdog::protocol::startup::{encode, encode_cancel, encode_ssl_request};
    use pgdog::protocol::BackendKey;
    let mut gss = encode_ssl_request().to_vec();
    gss[7] = 0x30; // 80877104
    Target {
        name: "startup",
        check: pgdog::invariants::startup,
        seeds: vec![
            encode(&[("user", "pgdog"), ("database", "app")]),
            encode(&[
                ("user", "u"),
                ("options", "-c search_path=a"),
                ("application_name", "é"),
            ]),
            encode(&[]),
            encode_cancel(BackendKey { pid: 7, secret: -9 }).to_vec(),
            encode_ssl_request().to_vec(),
            gss,
        ],
        tokens: &[
            b"\0",
            b"user\0",
            b"database\0",
            b"replication\0true\0",
            b"\0\0",
        ],
    }
}

fn frames_target() -> Target {
    let mut pipeline = Vec::new();
    for m in [
        message(
            b'T',
            &[
                0, 1, b'a', 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0x17, 0, 4, 0xff, 0xff, 0xff, 0xff, 0,
                0,
            ],
        ),
        message(b'D', &[0, 1, 0, 0, 0, 1, b'1']),
        message(b'C', b"SELECT 1\0"),
        message(b'Z', b"I"),
    ] {
        pipeline.extend(m);
    }
    Target {
        name: "frames",
        check: pgdog::invariants::frames,
        seeds: vec![
            pipeline,
            message(b'E', b"SERROR\0C42P01\0Mrelation does not exist\0\0"),
            message(b'N', b"SNOTICE\0C00000\0Mhello\0\0"),
            message(b'S', b"client_encoding\0UTF8\0"),
            message(b'Q', b"select 1\0"),
            [
                message(b'P', b"s1\0select $1\0\0\0"),
                message(b'B', b"\0s1\0\0\0\0\0\0\0"),
                message(b'E', b"\0\0\0\0\0"),
                message(b'S', b""),
            ]
            .concat(),
            message(b'd', b"1\tone\n"),
        ],
        tokens: &[
            b"Z\0\0\0\x05I",
            b"E\0\0\0\x04",
            b"\0\0\0\0",
            b"C42P01\0",
            b"\0",
        ],
    }
}

fn admin_target() -> Target {
    let seeds = [
        "SHOW MIRROR READINESS",
        "show mirror readiness \"app\";",
        "SHOW MIRROR STATS; SHOW POOLS",
        "SHOW MIRROR QUERIES app",
        "DISABLE \"my;pool\"",
        "ENABLE app",
        "KILL app",
        "PAUSE; RESUME app;",
        "RESET MIRROR STATS",
        "RELOAD",
        "SHUTDOWN",
        "SHOW CONFIG; SHOW PLUGINS; SHOW VERSION; SHOW HELP; SHOW CLIENTS; SHOW SERVERS",
    ];
    Target {
        name: "admin",
        check: pgdog::invariants::admin,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        tokens: &[
            b";",
            b"\"",
            b"\"\"",
            b" ",
            b"SHOW",
            b"MIRROR",
            b"\xc3\xa9",
            b"\t",
            b"--",
        ],
    }
}

const SQL_SEEDS: &[&str] = &[
    "SELECT a, b FROM t WHERE id IN (1, 2, 3) ORDER BY a LIMIT 10",
    "insert into t values (1, 'x'), (2, E'y\\'s'), (3, $$z$$)",
    "/* c /* nested */ */ COPY t FROM STDIN WITH (FORMAT csv); SELECT 1",
    "COPY t FROM '/data/stdin.csv'",
    "DEALLOCATE ALL; deallocate prepare \"S 1\"; DEALLOCATE s2",
    "PREPARE p(int) AS SELECT $1::int; EXECUTE p(1)",
    "BEGIN; UPDATE t SET v = now() WHERE ctid = '(0,1)'; COMMIT",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x FOR UPDATE",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    "select U&'\\0041' uescape '!', B'101', X'ff', 1.5e-3, .5, 0x1F, $1 -- tail",
    "SELECT \"quoted \"\"id\"\"\" FROM \"T\"; ; ;",
    "select nextval('s'), random(), gen_random_uuid() from t tablesample system (1)",
];

const SQL_TOKENS: &[&[u8]] = &[
    b"'",
    b"''",
    b"\"",
    b"$$",
    b"$a$",
    b"/*",
    b"*/",
    b"--",
    b"\n",
    b";",
    b"E'",
    b"U&'",
    b"e'\\'",
    b"(",
    b")",
    b"COPY ",
    b" FROM ",
    b"STDIN",
    b"DEALLOCATE ",
    b"PREPARE ",
    b"BEGIN",
    b" ATOMIC ",
    b"END",
    b"CASE",
    b"ORDER BY",
    b"LIMIT",
    b"IN (",
    b"VALUES",
    b"::",
    b"\0",
    b"\xc3\xa9",
    b"\xff",
    b"$1",
    b"1e",
];

fn sql_target() -> Target {
    Target {
        name: "sql",
        check: pgdog::invariants::sql,
        seeds: SQL_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect(),
        tokens: SQL_TOKENS,
    }
}

fn fingerprint_target() -> Target {
    Target {
        name: "fingerprint",
        check: pgdog::invariants::fingerprint_text,
        seeds: SQL_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect(),
        tokens: SQL_TOKENS,
    }
}

// One test per target: nextest runs them side by side.

#[test]
fn startup_decoder() {
    assert!(startup_target().run() >= cases());
}

#[test]
fn frame_walker_and_server_message_readers() {
    assert!(frames_target().run() >= cases());
}

#[test]
fn admin_parser() {
    assert!(admin_target().run() >= cases());
}

#[test]
fn fingerprinter() {
    assert!(fingerprint_target().run() >= cases());
}

#[test]
fn sql_lexer() {
    assert!(sql_target().run() >= cases());
}

#[test]
fn a_broken_promise_names_the_input() {
    fn always_breaks(_: &[u8]) {
        panic!("broken");
    }
    let message = catch_unwind(|| run_one("demo", always_breaks, b"\x01ab", "case 0"))
        .unwrap_err()
        .downcast::<String>()
        .unwrap();
    assert!(
        message.contains("016162") && message.contains("case 0"),
        "{message}"
    );
}
