//! Turns why a call ended into a title and what to do next, in words a person understands.

/// A user-facing explanation of a failed or ended call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub title: String,
    /// What happened (the engine's sentence).
    pub detail: String,
    /// What to do next.
    pub next_step: String,
}

/// Explains an ended call from the engine's reason sentence.
pub fn explain_end(reason: &str, error: bool) -> Explanation {
    let lower = reason.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    let (title, next_step) = if has(&["certificate", "fingerprint", "pinned", "tls"]) {
        (
            "The relay isn't the one in the link",
            "Its certificate doesn't match the invite link, so vcall refused to connect. Ask the host for a fresh link; if the relay was restarted with a new certificate, its old links stop working.",
        )
    } else if has(&["full", "capacity", "too many"]) {
        (
            "The call is full",
            "This room already has as many participants as the relay allows. Ask the host to start a bigger room or try again when someone leaves.",
        )
    } else if has(&[
        "shut down",
        "shutting down",
        "go away",
        "goaway",
        "going away",
    ]) {
        (
            "The relay shut down",
            "The relay hosting this call stopped. Start a new call, or ask the host for a new link.",
        )
    } else if has(&["lost the connection", "connection lost"]) {
        (
            "The connection to the call was lost",
            "Check your network, then rejoin with the same link (it is under “Recent calls”).",
        )
    } else if has(&[
        "did not answer",
        "unreachable",
        "timed out",
        "timeout",
        "refused",
        "resolve",
        "no route",
        "connect",
    ]) {
        (
            "Couldn't reach the relay",
            "Check that the link is complete and that the host's app or relay is still running and reachable from this network. You can also start a call yourself with “Start a call”.",
        )
    } else if has(&["link", "invalid"]) {
        (
            "That invite link doesn't work",
            "Copy the whole link again (it starts with vcall:// and usually ends with #k=…) and paste it.",
        )
    } else if error {
        (
            "The call ended unexpectedly",
            "Try joining again. If it keeps happening, ask the host for a new link.",
        )
    } else {
        (
            "You left the call",
            "Start a new call or join one with a link.",
        )
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
    fn common_failures_get_specific_advice() {
        let cert = explain_end(
            "the relay's certificate does not match the link's fingerprint",
            true,
        );
        assert_eq!(cert.title, "The relay isn't the one in the link");
        assert!(cert.next_step.contains("fresh link"));
        assert_eq!(
            explain_end("room full (16 members)", true).title,
            "The call is full"
        );
        assert_eq!(
            explain_end("the relay is shutting down", true).title,
            "The relay shut down"
        );
        let unreachable = explain_end("could not connect to 10.0.0.9:4433: timed out", true);
        assert_eq!(unreachable.title, "Couldn't reach the relay");
        assert!(unreachable.detail.contains("10.0.0.9"));
        assert_eq!(
            explain_end(
                "the relay at 10.0.0.9:4433 did not answer: is it running?",
                true
            )
            .title,
            "Couldn't reach the relay"
        );
        assert_eq!(
            explain_end(
                "Lost the connection to the relay (idle). Check your network.",
                true
            )
            .title,
            "The connection to the call was lost"
        );
        assert_eq!(
            explain_end("This call is full. Try again later.", true).title,
            "The call is full"
        );
        assert_eq!(explain_end("", false).title, "You left the call");
        assert_eq!(
            explain_end("something odd", true).title,
            "The call ended unexpectedly"
        );
    }
}
