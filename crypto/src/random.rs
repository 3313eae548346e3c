//! Injectable randomness: the OS generator in production, a seeded generator in tests.

use std::convert::Infallible;

/// A source of cryptographically secure random bytes. The session draws every secret, nonce and
/// RSA padding from one, so tests can make runs reproducible.
pub trait RandomSource: Send {
    /// Fills `dest` entirely with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// The operating system's generator (ring's `SystemRandom`).
pub struct OsRandom(ring::rand::SystemRandom);

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl OsRandom {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        use ring::rand::SecureRandom;
        // An OS generator that fails is not recoverable and never caused by peer input.
        self.0
            .fill(dest)
            .expect("the operating system's random generator failed");
    }
}

/// A deterministic generator (HMAC-SHA256 in counter mode over a seed). For tests and
/// reproducible simulations only: never use a guessable seed in production.
pub struct SeededRandom {
    key: ring::hmac::Key,
    counter: u64,
}

impl SeededRandom {
    pub fn new(seed: &[u8]) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, seed),
            counter: 0,
        }
    }
}

impl RandomSource for SeededRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let block = ring::hmac::sign(&self.key, &self.counter.to_be_bytes());
            self.counter += 1;
            chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        }
    }
}

/// Adapts a [`RandomSource`] to the `rand_core` traits the `rsa` crate wants.
pub(crate) struct RngAdapter<'a>(pub &'a mut dyn RandomSource);

impl rsa::rand_core::TryRng for RngAdapter<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for RngAdapter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_reproducible_and_seed_dependent() {
        let (mut a, mut b, mut c) = (
            SeededRandom::new(b"x"),
            SeededRandom::new(b"x"),
            SeededRandom::new(b"y"),
        );
        let (mut x, mut y, mut z) = ([0u8; 70], [0u8; 70], [0u8; 70]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
        let mut o = [0u8; 32];
        OsRandom::new().fill(&mut o);
        assert_ne!(o, [0u8; 32]);
    }
}
