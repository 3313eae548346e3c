//! Why a relay refuses access (docs/PROTOCOL.md §8.1): the reasons an `Error{AccessDenied}`
//! carries, their wire names, and the advice a client shows for each.
//!
//! The relay sends `Error{code: AccessDenied, message: "<reason>: <detail>"}`, where `<reason>`
//! is one of the wire names below; [`DenyReason::from_message`] reads it back.

use std::fmt;

/// Why a relay in token mode refused (or ended) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The `Hello` carried no access token.
    TokenRequired,
    /// The token is not a well-formed token of this relay's format.
    TokenMalformed,
    /// The token was not signed by this relay's operator key.
    TokenBadSignature,
    /// The token's expiry has passed.
    TokenExpired,
    /// The operator revoked the token.
    TokenRevoked,
    /// The token's tenant already has as many rooms as it may.
    QuotaRooms,
    /// The token's tenant already has as many members in this room as it may.
    QuotaMembers,
}

impl DenyReason {
    /// Every reason, in wire order (for metrics and tests).
    pub const ALL: [Self; 7] = [
        Self::TokenRequired,
        Self::TokenMalformed,
        Self::TokenBadSignature,
        Self::TokenExpired,
        Self::TokenRevoked,
        Self::QuotaRooms,
        Self::QuotaMembers,
    ];

    /// The name that starts the `Error` message and labels the relay's metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenRequired => "token-required",
            Self::TokenMalformed => "token-malformed",
            Self::TokenBadSignature => "token-bad-signature",
            Self::TokenExpired => "token-expired",
            Self::TokenRevoked => "token-revoked",
            Self::QuotaRooms => "quota-rooms",
            Self::QuotaMembers => "quota-members",
        }
    }

    /// The reason an `AccessDenied` message names, if it names a known one.
    pub fn from_message(message: &str) -> Option<Self> {
        let name = message.split(':').next().unwrap_or_default().trim();
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }

    /// The `Error` message for this reason with a human detail.
    pub fn message(self, detail: &str) -> String {
        format!("{}: {detail}", self.as_str())
    }

    /// What a user should do about it, in plain words.
    pub fn advice(self) -> &'static str {
        match self {
            Self::TokenRequired => {
                "this relay needs an access token: ask its operator for an invite link"
            }
            Self::TokenMalformed => {
                "the access token in this invite link is damaged: ask for the link again"
            }
            Self::TokenBadSignature => {
                "this relay does not accept the access token in this invite link: ask its operator for a new one"
            }
            Self::TokenExpired => {
                "your access to this relay has expired: ask its operator for a new invite link"
            }
            Self::TokenRevoked => "your access to this relay was revoked by its operator",
            Self::QuotaRooms => {
                "your access to this relay allows no more rooms at once: end another call first"
            }
            Self::QuotaMembers => "this call is full for your access to this relay",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_message() {
        for reason in DenyReason::ALL {
            let message = reason.message("some detail: with a colon");
            assert!(message.starts_with(reason.as_str()));
            assert_eq!(DenyReason::from_message(&message), Some(reason));
        }
    }

    #[test]
    fn unknown_or_missing_reasons_are_none() {
        assert_eq!(DenyReason::from_message(""), None);
        assert_eq!(DenyReason::from_message("access denied"), None);
        assert_eq!(DenyReason::from_message("token-required-ish: x"), None);
    }

    #[test]
    fn names_and_advice_are_distinct() {
        let names: std::collections::HashSet<_> =
            DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        let advice: std::collections::HashSet<_> =
            DenyReason::ALL.iter().map(|r| r.advice()).collect();
        assert_eq!(names.len(), DenyReason::ALL.len());
        assert_eq!(advice.len(), DenyReason::ALL.len());
    }
}
