//! Why a mirror connection's replay ended before the session did.

use crate::backend::PoolError;
use crate::protocol::ProtocolError;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Io(std::io::Error),
    #[error("mirror server closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(ProtocolError),
    #[error("no answer after cancelling a timed-out request")]
    NoAnswerAfterCancel,
    /// The mirror started a COPY FROM STDIN the request has no data for (the client's
    /// data went another way): the connection is given up rather than left hanging.
    #[error("COPY without data on the mirror")]
    CopyWithoutData,
    #[error("unexpected COPY BOTH from the mirror")]
    CopyBoth,
    #[error("ReadyForQuery with no request in flight")]
    UnexpectedReady,
    #[error("mirror pool is disabled")]
    Disabled,
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl MirrorError {
    /// The mirror server broke the protocol (a malformed frame, a message that has no
    /// place where it came): the request being answered counts as `protocol`, not as a
    /// lost connection, and the requests are not tried again on a fresh connection (a
    /// server that sent a bad frame is not a connection the pool kept too long).
    pub fn is_protocol_fault(&self) -> bool {
        matches!(
            self,
            MirrorError::Protocol(_) | MirrorError::UnexpectedReady | MirrorError::CopyBoth
        )
    }
}

impl From<std::io::Error> for MirrorError {
    fn from(e: std::io::Error) -> Self {
        MirrorError::Io(e)
    }
}

impl From<ProtocolError> for MirrorError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(e) => MirrorError::Io(e),
            ProtocolError::Eof => MirrorError::Closed,
            e => MirrorError::Protocol(e),
        }
    }
}
