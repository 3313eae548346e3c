//! The one error type every vcall decoder returns.

/// Why a byte sequence is not a valid vcall message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes")]
    Truncated { needed: usize },
    #[error("too large: {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unsupported protocol version {0}")]
    UnknownVersion(u8),
    #[error("unknown {what} {value}")]
    UnknownKind { what: &'static str, value: u8 },
    #[error("invalid {what}: {why}")]
    Invalid {
        what: &'static str,
        why: &'static str,
    },
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}
