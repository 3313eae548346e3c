//! Turns why a call ended into a title and what to do next, in words a person understands.

use vcall_engine::EndReason;

/// A user-facing explanation of a failed or ended call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub title: String,
    /// What happened (the engine's sentence).
    pub detail: String,
    /// What to do next.
    pub next_step: String,
}

/// Explains an ended call from the engine's typed reason and its sentence.
pub fn explain_end(kind: EndReason, reason: &str) -> Explanation {
    let (title, next_step) = match kind {
        EndReason::CertificateMismatch => (
            "The relay isn't the one in the link",
            "Its certificate doesn't match the invite link, so vcall refused to connect. Ask the host for a fresh link; if the relay was restarted with a new certificate, its old links stop working.",
        ),
        EndReason::RoomFull => (
            "The call is full",
            "This room already has as many participants as the relay allows. Ask the host to start a bigger room or try again when someone leaves.",
        ),
        EndReason::RelayShutDown => (
            "The relay shut down",
            "The relay hosting this call stopped. Start a new call, or ask the host for a new link.",
        ),
        EndReason::ConnectionLost => (
            "The connection to the call was lost",
            "Check your network, then rejoin with the same link (it is under “Recent calls”).",
        ),
        EndReason::Unreachable => (
            "Couldn't reach the relay",
            "Check that the link is complete and that the host's app or relay is still running and reachable from this network. You can also start a call yourself with “Start a call”.",
        ),
        EndReason::InvalidLink => (
            "That invite link doesn't work",
            "Copy the whole link again (it starts with vcall:// and usually ends with #k=…) and paste it.",
        ),
        EndReason::RelayRefused => (
            "The relay refused the call",
            "The relay is busy or runs another version. Try again later, or start a call on another relay.",
        ),
        EndReason::Internal => (
            "The call ended unexpectedly",
            "Try joining again. If it keeps happening, ask the host for a new link.",
        ),
        EndReason::Left => (
            "You left the call",
            "Start a new call or join one with a link.",
        ),
    };
    Explanation {
        title: title.to_owned(),
        detail: reason.to_owned(),
        next_step: next_step.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_reason_gets_its_own_advice_and_keeps_the_detail() {
        let kinds = [
            EndReason::Left,
            EndReason::InvalidLink,
            EndReason::Unreachable,
            EndReason::CertificateMismatch,
            EndReason::RoomFull,
            EndReason::RelayRefused,
            EndReason::RelayShutDown,
            EndReason::ConnectionLost,
            EndReason::Internal,
        ];
        let titles: std::collections::HashSet<String> = kinds
            .iter()
            .map(|k| explain_end(*k, "detail 10.0.0.9:4433").title)
            .collect();
        assert_eq!(titles.len(), kinds.len(), "titles must differ: {titles:?}");
        let cert = explain_end(EndReason::CertificateMismatch, "fingerprint mismatch");
        assert_eq!(cert.title, "The relay isn't the one in the link");
        assert!(cert.next_step.contains("fresh link"));
        assert_eq!(cert.detail, "fingerprint mismatch");
        let unreachable = explain_end(EndReason::Unreachable, "10.0.0.9:4433 did not answer");
        assert_eq!(unreachable.title, "Couldn't reach the relay");
        assert!(unreachable.detail.contains("10.0.0.9"));
    }
}
