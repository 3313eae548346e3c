//! A malicious relay.
