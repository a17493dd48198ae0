//! What an idle client costs the proxy: the task that serves it.
//!
//! A client connection is one task whose future holds, at its largest, whatever any of its
//! awaits needs. The runtime allocates that size for every client, idle or not, for as
//! long as it stays connected. So the rarely taken awaits are boxed (the handshake and
//! the password exchange, the goodbye, opening a server connection, a reset or a close),
//! and the session itself lives on the heap (an async fn keeps an argument taken by value
//! twice). The read buffers are taken only once a direction has bytes to read
//! (`session::io`). `docs/benchmarks.md` has the resident memory with 2,000 idle clients.

#[cfg(test)]
mod tests {
    #![allow(unreachable_code, unused_variables, clippy::diverging_sub_expression)]
    use crate::backend::{Pool, PooledServer};
    use crate::frontend::login;
    use crate::frontend::session::Session;
    use std::future::Future;

    /// The size of the future `make` would return (never called).
    fn size_of_output<F: Future>(_make: impl FnOnce() -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Measured sizes (2026-12-07, rustc 1.95) with room for small changes or another rustc;
    /// they were 7,512, 6,040, 2,416 and 1,624 bytes before the boxing. A failure here means
    /// an await added to the session's path carries a large state: box it, or raise the
    /// bound knowingly.
    #[test]
    fn an_idle_clients_task_stays_small() {
        let client_task =
            size_of_output(|| login::run(unreachable!(), unreachable!(), unreachable!()));
        let session = size_of_output(|| {
            let s: Box<Session> = unreachable!();
            s.run(unreachable!(), unreachable!())
        });
        let checkout = size_of_output(|| {
            let p: &Pool = unreachable!();
            p.get()
        });
        let release = size_of_output(|| {
            let p: PooledServer = unreachable!();
            p.release(None)
        });
        eprintln!("client task {client_task} B, Session::run {session} B, Pool::get {checkout} B, PooledServer::release {release} B");
        assert!(client_task <= 2_560, "client task: {client_task} bytes");
        assert!(session <= 2_048, "Session::run: {session} bytes");
        assert!(checkout <= 640, "Pool::get: {checkout} bytes");
        assert!(release <= 1_280, "PooledServer::release: {release} bytes");
        // The session on the heap: what its box holds.
        assert!(std::mem::size_of::<Session>() <= 1_280);
    }
}
