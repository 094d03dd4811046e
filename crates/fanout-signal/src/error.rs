//! Signalling errors and the protocol's numeric error codes (TRTC numbering where one exists).

use thiserror::Error;

/// Every way a signalling request can fail. `code()` is the number sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignalError {
    #[error("missing or empty parameter `{0}`")]
    MissingParam(&'static str),
    #[error("unknown sdk_app_id {0}")]
    UnknownApp(String),
    #[error("bad room id: {0}")]
    BadRoomId(String),
    #[error("bad user id: {0}")]
    BadUserId(String),
    #[error("malformed user_sig: {0}")]
    MalformedUserSig(String),
    #[error("user_sig verification failed: {0}")]
    UserSigRejected(String),
    #[error("PrivateMapKey check failed: {0}")]
    PrivateMapKey(String),
    #[error("role `{0}` not found")]
    RoleNotFound(String),
    #[error("not in a room")]
    NotInRoom,
    #[error("already in a room: exit_room first")]
    AlreadyInRoom,
    #[error("privilege denied: {0}")]
    PrivilegeDenied(String),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
}

impl SignalError {
    /// The numeric code of the signalling protocol (see docs/protocol.md).
    pub fn code(&self) -> i32 {
        match self {
            SignalError::MissingParam(_) => -3316,
            SignalError::UnknownApp(_) => -3317,
            SignalError::BadRoomId(_) => -3318,
            SignalError::BadUserId(_) => -3319,
            SignalError::MalformedUserSig(_) => -3320,
            SignalError::UserSigRejected(_) => -100018,
            SignalError::PrivateMapKey(_) => -100006,
            SignalError::RoleNotFound(_) => -3340,
            SignalError::NotInRoom => -3341,
            SignalError::AlreadyInRoom => -3342,
            SignalError::PrivilegeDenied(_) => -3343,
            SignalError::Malformed(_) => -3344,
            SignalError::QuotaExceeded(_) => -3345,
        }
    }
}
