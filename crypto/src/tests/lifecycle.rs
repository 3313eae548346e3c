//! Leave/join rekeying, spies, epochs and property tests.
