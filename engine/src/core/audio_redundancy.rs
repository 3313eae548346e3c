//! Audio redundancy: while receivers report loss, every sealed audio datagram is sent a second
//! time beside the next one (20 ms later), the same bytes, and at heavy loss a third time
//! beside the one after. A receiver keeps whichever copy
//! arrives first (the second fails its replay check and is dropped), so a frame is lost only
//! when both copies are, and a batch signature lost once no longer holds its packets back
//! (docs/PROTOCOL.md §5, "Audio redundancy"). Audio is a small share of a call (about 40 kbit/s
//! with its overhead), so the copy is cheap beside what it saves: Opus in-band FEC repairs a
//! single lost frame, not two in a row, and not a lost batch signature.

use bytes::Bytes;

/// Copies in all (the original included) by reported loss (a fraction): from the first
/// threshold up, and back down only below the second (hysteresis).
const STEPS: [(u8, f64, f64); 2] = [(2, 0.02, 0.01), (3, 0.10, 0.07)];
/// The most copies of one datagram.
const MAX_COPIES: usize = 3;

/// How many times audio datagrams go out, and the last ones sent (to repeat with the next).
#[derive(Debug)]
pub struct AudioRedundancy {
    copies: u8,
    /// The previous datagrams, newest first, with the copies each still owes.
    previous: [Option<(Bytes, u8)>; MAX_COPIES - 1],
}

impl Default for AudioRedundancy {
    fn default() -> Self {
        Self {
            copies: 1,
            previous: [None, None],
        }
    }
}

impl AudioRedundancy {
    /// Datagrams sent per audio frame now.
    pub fn copies(&self) -> u8 {
        self.copies
    }

    /// Follows the loss receivers report (the median receiver's fraction of our fragments).
    pub fn on_reported_loss(&mut self, loss: f64) {
        let mut copies = 1;
        for (n, on_at, off_below) in STEPS {
            let threshold = if self.copies >= n { off_below } else { on_at };
            if loss >= threshold {
                copies = n;
            }
        }
        self.copies = copies;
    }

    /// An audio datagram was just sent: hands the earlier ones that owe a copy now to `send`
    /// (cheap clones: the bytes are shared, not copied). Returns how many it handed.
    pub fn on_sent(&mut self, datagram: &Bytes, mut send: impl FnMut(Bytes)) -> u64 {
        let mut sent = 0;
        if self.copies > 1 {
            for (bytes, owed) in self.previous.iter_mut().flatten() {
                if *owed > 0 {
                    send(bytes.clone());
                    sent += 1;
                    *owed -= 1;
                }
            }
        }
        self.previous.rotate_right(1);
        self.previous[0] = (self.copies > 1).then(|| (datagram.clone(), self.copies - 1));
        sent
    }

    /// The stream broke (mute, a new connection): the next datagram has nothing to repeat.
    pub fn forget(&mut self) {
        self.previous = [None, None];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(r: &mut AudioRedundancy, d: &'static [u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let n = r.on_sent(&Bytes::from_static(d), |b| out.push(b));
        assert_eq!(n as usize, out.len());
        out
    }

    #[test]
    fn each_datagram_is_repeated_beside_the_next_ones_while_loss_is_reported() {
        let mut r = AudioRedundancy::default();
        assert!(sent(&mut r, b"a").is_empty(), "off until loss is reported");
        assert!(sent(&mut r, b"b").is_empty());
        r.on_reported_loss(0.05);
        assert!(sent(&mut r, b"a").is_empty());
        assert_eq!(sent(&mut r, b"b"), vec![Bytes::from_static(b"a")]);
        assert_eq!(sent(&mut r, b"c"), vec![Bytes::from_static(b"b")]);
        r.forget();
        assert!(sent(&mut r, b"a").is_empty());
        // Heavy loss: each datagram goes out three times, beside the next two.
        r.on_reported_loss(0.2);
        assert_eq!(sent(&mut r, b"b"), vec![Bytes::from_static(b"a")]);
        assert_eq!(sent(&mut r, b"c"), vec![Bytes::from_static(b"b")]);
        assert_eq!(
            sent(&mut r, b"d"),
            vec![Bytes::from_static(b"c"), Bytes::from_static(b"b")]
        );
        assert_eq!(
            sent(&mut r, b"e"),
            vec![Bytes::from_static(b"d"), Bytes::from_static(b"c")]
        );
    }

    /// How many copies a datagram sent now gets in all.
    fn copies(r: &mut AudioRedundancy) -> usize {
        r.forget();
        sent(r, b"x");
        1 + sent(r, b"y").len() + sent(r, b"z").len().saturating_sub(1)
    }

    #[test]
    fn copies_follow_the_loss_with_hysteresis() {
        let mut r = AudioRedundancy::default();
        r.on_reported_loss(0.015);
        assert_eq!(copies(&mut r), 1);
        r.on_reported_loss(0.02);
        assert_eq!(copies(&mut r), 2);
        r.on_reported_loss(0.012);
        assert_eq!(
            copies(&mut r),
            2,
            "hysteresis: still on between the thresholds"
        );
        r.on_reported_loss(0.12);
        assert_eq!(copies(&mut r), 3);
        r.on_reported_loss(0.08);
        assert_eq!(copies(&mut r), 3);
        r.on_reported_loss(0.05);
        assert_eq!(copies(&mut r), 2);
        r.on_reported_loss(0.005);
        assert_eq!(copies(&mut r), 1);
    }
}
