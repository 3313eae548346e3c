//! Turns why a call ended into a title and what to do next, in words a person understands: the
//! only place where user-facing advice about an ended call is written.

use vcall_engine::{ConnectFailure, EndReason};
use vcall_proto::DenyReason;
use vcall_proto::control::ErrorCode;

/// A user-facing explanation of a failed or ended call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub title: String,
    /// What happened (the engine's sentence).
    pub detail: String,
    /// What to do next.
    pub next_step: String,
}

/// Explains an ended call from the engine's typed reason.
pub fn explain_end(reason: &EndReason) -> Explanation {
    if let Some(denied) = reason.access_denied() {
        return Explanation {
            title: access_denied_title(denied).to_owned(),
            detail: reason.to_string(),
            next_step: sentence(denied.advice()),
        };
    }
    let (title, next_step) = match reason {
        EndReason::Left => (
            "You left the call",
            "Start a new call or join one with a link.",
        ),
        EndReason::InvalidLink(_) => (
            "That invite link doesn't work",
            "Copy the whole link again (it starts with vcall:// and usually ends with #k=…) and paste it.",
        ),
        EndReason::Connect(failure) => explain_connect(failure),
        EndReason::AdmitTimeout { .. } => (
            "The relay didn't let you in",
            "The relay answered but did not admit you in time; it may be overloaded. Try joining again in a moment.",
        ),
        EndReason::RelayRefused { code, .. } => explain_refusal(*code),
        EndReason::RelayShutDown { .. } => (
            "The relay shut down",
            "The relay hosting this call stopped. Start a new call, or ask the host for a new link.",
        ),
        EndReason::ConnectionLost(_) => (
            "The connection to the call was lost",
            "Check your network, then rejoin with the same invite link (“Copy” beside “Last invite link” below has it).",
        ),
        EndReason::Protocol(_) => (
            "The relay sent something vcall doesn't understand",
            "The relay may run another version of vcall. Ask the host to update it, or start a call on another relay.",
        ),
        EndReason::EncryptionEnded(_) => (
            "The call's encryption had to stop",
            "vcall ended the call rather than send anything without safe keys. Join again to start with fresh keys.",
        ),
        EndReason::Internal(_) => (
            "The call ended unexpectedly",
            "Try joining again. If it keeps happening, ask the host for a new link.",
        ),
    };
    Explanation {
        title: title.to_owned(),
        detail: reason.to_string(),
        next_step: next_step.to_owned(),
    }
}

/// Title and advice when the relay could not be reached.
fn explain_connect(failure: &ConnectFailure) -> (&'static str, &'static str) {
    match failure {
        ConnectFailure::CertificateMismatch => (
            "The relay isn't the one in the link",
            "Its certificate doesn't match the invite link, so vcall refused to connect. Ask the host for a fresh link; if the relay was restarted with a new certificate, its old links stop working.",
        ),
        ConnectFailure::Resolve { .. } => (
            "Couldn't find the relay",
            "The relay's name in the link could not be looked up. Check that the link is complete and that this computer is online.",
        ),
        ConnectFailure::Unreachable { .. } => (
            "Couldn't reach the relay",
            "Check that the link is complete and that the host's app or relay is still running and reachable from this network. You can also start a call yourself with “Start a call”.",
        ),
        ConnectFailure::Tls(_) => (
            "Couldn't set up a secure connection to the relay",
            "The relay's secure connection could not be set up. Ask the host for a fresh link, or check that the relay runs a current version.",
        ),
        ConnectFailure::Socket(_) => (
            "This computer couldn't open a network connection",
            "Another program or a firewall may be blocking network access. Check your network settings and try again.",
        ),
    }
}

/// The title when a relay in token mode refused us or cut us off (the advice is the protocol's,
/// [`DenyReason::advice`]).
fn access_denied_title(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::TokenRequired => "This relay needs an access token",
        DenyReason::TokenMalformed => "The link's access token is damaged",
        DenyReason::TokenBadSignature => "This relay doesn't accept the link's access token",
        DenyReason::TokenExpired => "Your access to this relay has expired",
        DenyReason::TokenRevoked => "Your access to this relay was revoked",
        DenyReason::QuotaRooms => "Your access allows no more calls at once",
        DenyReason::QuotaMembers => "This call is full for your access",
    }
}

/// `advice` as a sentence: capital first letter, final full stop.
fn sentence(advice: &str) -> String {
    let mut chars = advice.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}.", first.unwrap_or_default(), chars.as_str())
}

/// Title and advice when the relay refused the call (or ended it with an error).
fn explain_refusal(code: ErrorCode) -> (&'static str, &'static str) {
    match code {
        ErrorCode::RoomFull => (
            "The call is full",
            "This room already has as many participants as the relay allows. Ask the host to start a bigger room or try again when someone leaves.",
        ),
        ErrorCode::UnsupportedVersion => (
            "This app and the relay don't match",
            "The relay runs a version of vcall this app cannot talk to. Update vcall, or ask the host to update the relay.",
        ),
        ErrorCode::TooManyRooms | ErrorCode::RateLimited => (
            "The relay is busy",
            "The relay is handling too many calls or requests right now. Wait a minute and try again, or start a call on another relay.",
        ),
        ErrorCode::ShuttingDown => (
            "The relay is shutting down",
            "The relay is stopping and accepts no calls. Try again once it is back, or start a call on another relay.",
        ),
        ErrorCode::AccessDenied => (
            "The relay denied access",
            "Ask the relay's operator for a new invite link.",
        ),
        _ => (
            "The relay refused the call",
            "Try joining again. If it keeps happening, ask the host for a new link or start a call on another relay.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> EndReason {
        EndReason::RelayRefused {
            code,
            message: "detail".into(),
        }
    }

    #[test]
    fn every_end_reason_gets_its_own_advice_and_keeps_the_detail() {
        let reasons = [
            EndReason::Left,
            EndReason::InvalidLink("bad scheme".into()),
            EndReason::Connect(ConnectFailure::Resolve {
                address: "relay.invalid".into(),
            }),
            EndReason::Connect(ConnectFailure::CertificateMismatch),
            EndReason::Connect(ConnectFailure::Unreachable {
                address: "10.0.0.9".into(),
                port: 4433,
                detail: "timed out".into(),
            }),
            EndReason::Connect(ConnectFailure::Tls("no cipher".into())),
            EndReason::Connect(ConnectFailure::Socket("denied".into())),
            EndReason::AdmitTimeout { seconds: 10 },
            refused(ErrorCode::RoomFull),
            refused(ErrorCode::UnsupportedVersion),
            refused(ErrorCode::TooManyRooms),
            refused(ErrorCode::ShuttingDown),
            refused(ErrorCode::Malformed),
            EndReason::RelayShutDown {
                code: ErrorCode::ShuttingDown,
                message: "bye".into(),
            },
            EndReason::ConnectionLost("reset".into()),
            EndReason::Protocol("odd frame".into()),
            EndReason::EncryptionEnded("epochs exhausted".into()),
            EndReason::Internal("no threads".into()),
        ];
        let titles: std::collections::HashSet<String> =
            reasons.iter().map(|r| explain_end(r).title).collect();
        assert_eq!(
            titles.len(),
            reasons.len(),
            "titles must differ: {titles:?}"
        );
        for reason in &reasons {
            assert_eq!(explain_end(reason).detail, reason.to_string());
        }

        let cert = explain_end(&EndReason::Connect(ConnectFailure::CertificateMismatch));
        assert_eq!(cert.title, "The relay isn't the one in the link");
        assert!(cert.next_step.contains("fresh link"));
        let unreachable = explain_end(&reasons[4]);
        assert_eq!(unreachable.title, "Couldn't reach the relay");
        assert!(unreachable.detail.contains("10.0.0.9"));
        assert_eq!(
            explain_end(&refused(ErrorCode::RoomFull)).title,
            "The call is full"
        );
        assert_eq!(
            explain_end(&refused(ErrorCode::RateLimited)).title,
            explain_end(&refused(ErrorCode::TooManyRooms)).title
        );
    }

    #[test]
    fn each_access_denial_says_what_to_do() {
        let mut titles = std::collections::HashSet::new();
        for reason in DenyReason::ALL {
            let end = EndReason::RelayRefused {
                code: ErrorCode::AccessDenied,
                message: reason.message("token of team-a"),
            };
            let e = explain_end(&end);
            assert!(titles.insert(e.title.clone()), "{}", e.title);
            assert!(e.next_step.ends_with('.'));
            assert!(
                e.next_step[..1].chars().all(char::is_uppercase),
                "{}",
                e.next_step
            );
            assert!(e.detail.contains("team-a"));
        }
        let required = explain_end(&EndReason::RelayRefused {
            code: ErrorCode::AccessDenied,
            message: DenyReason::TokenRequired.message("no token"),
        });
        assert_eq!(
            required.next_step,
            "This relay needs an access token: ask its operator for an invite link."
        );
        let expired = explain_end(&EndReason::RelayRefused {
            code: ErrorCode::AccessDenied,
            message: DenyReason::TokenExpired.message("x"),
        });
        assert_eq!(expired.title, "Your access to this relay has expired");
        // An unknown reason still gets access advice, not the generic refusal.
        let unknown = explain_end(&refused(ErrorCode::AccessDenied));
        assert_eq!(unknown.title, "The relay denied access");
    }
}
