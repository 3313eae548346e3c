//! Audio redundancy: while receivers report loss, every sealed audio datagram is sent a second
//! time beside the next one (20 ms later), the same bytes. A receiver keeps whichever copy
//! arrives first (the second fails its replay check and is dropped), so a frame is lost only
//! when both copies are, and a batch signature lost once no longer holds its packets back
//! (docs/PROTOCOL.md §5, "Audio redundancy"). Audio is a small share of a call (about 40 kbit/s
//! with its overhead), so the copy is cheap beside what it saves: Opus in-band FEC repairs a
//! single lost frame, not two in a row, and not a lost batch signature.

use bytes::Bytes;

/// Reported loss (a fraction) at which the copies start...
const ON_AT_LOSS: f64 = 0.02;
/// ...and below which they stop again (hysteresis).
const OFF_BELOW_LOSS: f64 = 0.01;

/// Whether audio datagrams go out twice, and the last one sent (to repeat with the next).
#[derive(Debug, Default)]
pub struct AudioRedundancy {
    on: bool,
    previous: Option<Bytes>,
}

impl AudioRedundancy {
    /// Follows the loss receivers report (the worst receiver's fraction of our fragments).
    pub fn on_reported_loss(&mut self, loss: f64) {
        self.on = if self.on {
            loss >= OFF_BELOW_LOSS
        } else {
            loss >= ON_AT_LOSS
        };
        if !self.on {
            self.previous = None;
        }
    }

    /// An audio datagram was just sent: the previous one to send again now, if copies are on.
    /// (A cheap clone: the bytes are shared, not copied.)
    pub fn on_sent(&mut self, datagram: &Bytes) -> Option<Bytes> {
        if !self.on {
            return None;
        }
        self.previous.replace(datagram.clone())
    }

    /// The stream broke (mute, a new connection): the next datagram has nothing to repeat.
    pub fn forget(&mut self) {
        self.previous = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_datagram_is_repeated_once_beside_the_next_while_loss_is_reported() {
        let mut r = AudioRedundancy::default();
        let (a, b, c) = (
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        );
        assert_eq!(r.on_sent(&a), None, "off until loss is reported");
        r.on_reported_loss(0.05);
        assert_eq!(r.on_sent(&a), None);
        assert_eq!(r.on_sent(&b), Some(a.clone()));
        assert_eq!(r.on_sent(&c), Some(b.clone()));
        r.forget();
        assert_eq!(r.on_sent(&a), None);
    }

    /// Whether a datagram sent now would be repeated with the next one.
    fn repeats(r: &mut AudioRedundancy) -> bool {
        let a = Bytes::from_static(b"a");
        r.on_sent(&a);
        r.on_sent(&a).is_some()
    }

    #[test]
    fn copies_start_at_two_percent_and_stop_below_one() {
        let mut r = AudioRedundancy::default();
        r.on_reported_loss(0.015);
        assert!(!repeats(&mut r));
        r.on_reported_loss(0.02);
        assert!(repeats(&mut r));
        r.on_reported_loss(0.012);
        assert!(repeats(&mut r), "hysteresis: still on between the thresholds");
        r.on_reported_loss(0.005);
        assert!(!repeats(&mut r));
    }
}
