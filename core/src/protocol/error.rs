#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("invalid message length {0}")]
    BadLength(i32),
    #[error("malformed {what} message: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("unexpected message '{}' ({context})", char::from(*tag))]
    Unexpected { tag: u8, context: &'static str },
    #[error("connection closed")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    pub fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        ProtocolError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}
