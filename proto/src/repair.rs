//! Forward error correction for video frames: Reed–Solomon repair fragments (the fragment
//! indices `count..count + repair_count`), built by the sender and used by the reassembler to
//! rebuild up to `repair_count` lost data fragments without a round trip.
//!
//! A repair fragment's chunk (after the 8-byte fragment header):
//! ```text
//! offset size field
//! 0      2    repair_count  u16 BE, 1..=MAX_REPAIR repair fragments sent for this frame
//! 2      2    chunk_len     u16 BE, length of every data chunk but the last
//! 4      2    last_len      u16 BE, length of the last data chunk, 1..=chunk_len
//! 6      ..   shard         shard_len(chunk_len) bytes of Reed–Solomon recovery data
//! ```
//! Data chunks are zero-padded at the end to `shard_len = chunk_len rounded up to even` and
//! encoded as `count` original shards with `reed-solomon-simd` (GF(2^16), Leopard-style
//! codes); repair fragment `count + r` carries recovery shard `r`.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::DecodeError;
use crate::wire::Reader;

/// Repair header length (in front of the recovery shard).
pub const REPAIR_HEADER_LEN: usize = 6;
/// Most repair fragments one frame may carry.
pub const MAX_REPAIR: usize = 128;

/// What every repair fragment of a frame says about the frame's data fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairHeader {
    pub repair_count: u16,
    pub chunk_len: u16,
    pub last_len: u16,
}

impl RepairHeader {
    /// Length of one Reed–Solomon shard: the chunk length rounded up to even.
    pub fn shard_len(&self) -> usize {
        let c = usize::from(self.chunk_len);
        c + (c & 1)
    }

    /// Length of data chunk `index` of a frame of `count` data fragments.
    pub fn data_len(&self, index: u16, count: u16) -> usize {
        if index + 1 == count {
            usize::from(self.last_len)
        } else {
            usize::from(self.chunk_len)
        }
    }

    pub fn write(&self, out: &mut [u8; REPAIR_HEADER_LEN]) {
        out[0..2].copy_from_slice(&self.repair_count.to_be_bytes());
        out[2..4].copy_from_slice(&self.chunk_len.to_be_bytes());
        out[4..6].copy_from_slice(&self.last_len.to_be_bytes());
    }

    /// Parses a repair chunk into its header and shard.
    pub fn decode(chunk: &[u8]) -> Result<(Self, &[u8]), DecodeError> {
        let mut r = Reader::new(chunk);
        let h = Self {
            repair_count: r.u16()?,
            chunk_len: r.u16()?,
            last_len: r.u16()?,
        };
        if h.repair_count == 0 || usize::from(h.repair_count) > MAX_REPAIR {
            return Err(DecodeError::Invalid {
                what: "repair count",
                why: "must be 1..=128",
            });
        }
        if h.chunk_len == 0 || h.last_len == 0 || h.last_len > h.chunk_len {
            return Err(DecodeError::Invalid {
                what: "repair chunk lengths",
                why: "need 1 <= last_len <= chunk_len",
            });
        }
        let shard = r.rest();
        if shard.len() != h.shard_len() {
            return Err(DecodeError::Invalid {
                what: "repair shard",
                why: "length must be chunk_len rounded up to even",
            });
        }
        Ok((h, shard))
    }
}

/// Computes the recovery shards of `chunks` (the frame's data chunks in index order, all
/// `header.chunk_len` long but the last) and hands each to `out` in order.
pub(crate) fn encode_repair<'a>(
    header: RepairHeader,
    chunks: impl ExactSizeIterator<Item = &'a [u8]>,
    mut out: impl FnMut(&[u8]),
) -> Result<(), reed_solomon_simd::Error> {
    let shard_len = header.shard_len();
    let mut encoder =
        ReedSolomonEncoder::new(chunks.len(), usize::from(header.repair_count), shard_len)?;
    let mut padded = vec![0u8; shard_len];
    for chunk in chunks {
        padded[..chunk.len()].copy_from_slice(chunk);
        padded[chunk.len()..].fill(0);
        encoder.add_original_shard(&padded)?;
    }
    let result = encoder.encode()?;
    for shard in result.recovery_iter() {
        out(shard);
    }
    Ok(())
}

/// Rebuilds the missing data chunks of a frame of `count` data fragments from the `data`
/// chunks present (index, bytes) and the `repair` shards present (repair index, bytes).
/// Calls `restored(index, bytes)` for each rebuilt data chunk (trimmed to its length).
pub(crate) fn recover<'a>(
    header: RepairHeader,
    count: u16,
    data: impl Iterator<Item = (u16, &'a [u8])>,
    repair: impl Iterator<Item = (u16, &'a [u8])>,
    mut restored: impl FnMut(u16, &[u8]),
) -> Result<(), reed_solomon_simd::Error> {
    let shard_len = header.shard_len();
    let mut decoder = ReedSolomonDecoder::new(
        usize::from(count),
        usize::from(header.repair_count),
        shard_len,
    )?;
    let mut padded = vec![0u8; shard_len];
    for (index, chunk) in data {
        padded[..chunk.len()].copy_from_slice(chunk);
        padded[chunk.len()..].fill(0);
        decoder.add_original_shard(usize::from(index), &padded)?;
    }
    for (index, shard) in repair {
        decoder.add_recovery_shard(usize::from(index), shard)?;
    }
    let result = decoder.decode()?;
    for (index, shard) in result.restored_original_iter() {
        let index = index as u16;
        restored(index, &shard[..header.data_len(index, count)]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_headers_round_trip_and_reject_nonsense() {
        let h = RepairHeader {
            repair_count: 3,
            chunk_len: 5,
            last_len: 2,
        };
        let mut b = [0u8; REPAIR_HEADER_LEN];
        h.write(&mut b);
        let mut chunk = b.to_vec();
        chunk.extend_from_slice(&[9; 6]); // shard_len(5) = 6
        assert_eq!(RepairHeader::decode(&chunk).unwrap(), (h, &[9u8; 6][..]));
        assert!(RepairHeader::decode(&chunk[..chunk.len() - 1]).is_err());
        for bad in [
            [0, 0, 0, 5, 0, 2],   // no repair
            [0, 129, 0, 5, 0, 2], // too many
            [0, 3, 0, 5, 0, 6],   // last longer than the others
            [0, 3, 0, 0, 0, 0],   // empty chunks
        ] {
            let mut c = bad.to_vec();
            c.extend_from_slice(&[0; 6]);
            assert!(RepairHeader::decode(&c).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_lost_chunks_up_to_the_repair_count_are_rebuilt() {
        let chunks: Vec<Vec<u8>> = (0..6u8)
            .map(|i| {
                (0..if i == 5 { 3 } else { 7 })
                    .map(|j| i * 31 + j)
                    .collect()
            })
            .collect();
        let h = RepairHeader {
            repair_count: 2,
            chunk_len: 7,
            last_len: 3,
        };
        let mut shards = Vec::new();
        encode_repair(h, chunks.iter().map(Vec::as_slice), |s| {
            shards.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(shards.len(), 2);
        for lost in [[0usize, 5], [1, 2], [4, 5]] {
            let mut got = Vec::new();
            recover(
                h,
                6,
                (0..6u16)
                    .filter(|i| !lost.contains(&usize::from(*i)))
                    .map(|i| (i, chunks[usize::from(i)].as_slice())),
                (0..2u16).map(|r| (r, shards[usize::from(r)].as_slice())),
                |i, b| got.push((i, b.to_vec())),
            )
            .unwrap();
            got.sort();
            let want: Vec<_> = lost
                .iter()
                .map(|&i| (i as u16, chunks[i].clone()))
                .collect();
            assert_eq!(got, want);
        }
    }
}
