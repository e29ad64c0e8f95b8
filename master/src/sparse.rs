//! Reading a worker's histogram as the list of its non-zero buckets.
//!
//! Workers send HDR histograms in the V2 format (DEFLATE-compressed or not). Decoding one into a
//! `Histogram` allocates and zeroes its whole counts array (23.5k counters for the 1 µs..1 h,
//! 3-digit histograms Stampede records), and adding it to another walks that array again. A
//! one-second report of a name holds a few hundred non-zero buckets at most, so the master reads
//! only those: the V2 payload is already a run-length list of counts, where a negative number
//! means "skip this many empty buckets".
//!
//! Adding a [`Sparse`] into a histogram of the same bounds and precision is exact: each bucket's
//! lowest value is recorded with the bucket's count, which lands in the same bucket. Into a
//! histogram of other bounds, values are clamped to its range, so no count is lost.

use hdrhistogram::Histogram;

const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;
/// The V2 header after the cookie: payload length, normalizing offset, digits, low, high, ratio.
const HEADER_LEN: usize = 4 + 4 + 4 + 8 + 8 + 8;
/// The largest payload accepted (a frame is at most 16 MiB anyway).
const MAX_PAYLOAD: usize = 16 << 20;

/// A histogram as its non-zero buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse {
    /// The lowest discernible value of the encoding histogram.
    pub low: u64,
    /// The highest trackable value of the encoding histogram.
    pub high: u64,
    /// Its significant digits.
    pub sigfig: u8,
    /// (counter index, count), in increasing index (and value) order.
    pub buckets: Vec<(u32, u64)>,
    layout: Layout,
}

/// Why bytes are not a V2 histogram.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SparseError {
    /// The first four bytes are not a V2 cookie.
    #[error("not a V2 histogram (cookie {0:#010x})")]
    Cookie(u32),
    /// The bytes end early.
    #[error("truncated")]
    Truncated,
    /// The compressed payload does not inflate.
    #[error("compressed payload does not inflate: {0}")]
    Inflate(String),
    /// Bounds or precision no histogram can have.
    #[error("invalid parameters (low {low}, high {high}, digits {sigfig})")]
    Parameters {
        /// Lowest discernible value.
        low: u64,
        /// Highest trackable value.
        high: u64,
        /// Significant digits.
        sigfig: u32,
    },
    /// A feature Stampede never encodes (normalizing offset, double ratio).
    #[error("unsupported V2 feature")]
    Unsupported,
    /// A count or a run of zeros that goes past the histogram's range.
    #[error("counts go past the histogram's range")]
    OutOfRange,
}

/// Index arithmetic of one histogram configuration (as in HdrHistogram).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    unit_magnitude: u32,
    half_magnitude: u32,
    half_count: u64,
    /// The number of counters of the configuration.
    len: u64,
}

impl Layout {
    fn new(low: u64, high: u64, sigfig: u32) -> Result<Layout, SparseError> {
        let bad = || SparseError::Parameters { low, high, sigfig };
        if !(1..=u64::MAX / 2).contains(&low) || high < low.saturating_mul(2) || sigfig > 5 {
            return Err(bad());
        }
        let largest = 2 * 10u64.pow(sigfig);
        let count_magnitude = 64 - (largest - 1).leading_zeros(); // ceil(log2(largest))
        let unit_magnitude = 63 - low.leading_zeros(); // floor(log2(low))
        if unit_magnitude + count_magnitude > 63 {
            return Err(bad());
        }
        let half_magnitude = count_magnitude - 1;
        let sub_count = 1u64 << count_magnitude;
        // Buckets needed to reach `high` (as HdrHistogram's buckets_needed_to_cover_value).
        let mut smallest_untrackable = sub_count << unit_magnitude;
        let mut buckets = 1u64;
        while smallest_untrackable <= high {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        Ok(Layout {
            unit_magnitude,
            half_magnitude,
            half_count: sub_count / 2,
            len: (buckets + 1) * (sub_count / 2),
        })
    }

    /// The width of the bucket of `index`: its values run from `value_at(index)` on.
    fn width_at(&self, index: u64) -> u64 {
        let bucket = ((index >> self.half_magnitude) as i64 - 1).max(0) as u32;
        1u64.checked_shl(bucket + self.unit_magnitude)
            .unwrap_or(u64::MAX)
    }

    /// The lowest value counted at `index` (`index < len`).
    fn value_at(&self, index: u64) -> u64 {
        let bucket = (index >> self.half_magnitude) as i64 - 1;
        let mut sub = (index & (self.half_count - 1)) + self.half_count;
        let bucket = if bucket < 0 {
            sub -= self.half_count;
            0
        } else {
            bucket as u32
        };
        // Only a configuration reaching u64::MAX could shift past it; saturate there.
        sub.checked_shl(bucket + self.unit_magnitude)
            .unwrap_or(u64::MAX)
    }
}

/// Reads histograms one after another, keeping the inflate state and buffer between them
/// (setting up an inflater costs more than inflating a one-second histogram).
pub struct Decoder {
    inflate: flate2::Decompress,
    plain: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            inflate: flate2::Decompress::new(true),
            plain: Vec::with_capacity(8 * 1024),
        }
    }
}

impl Decoder {
    /// Read a V2 histogram, compressed or not.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Sparse, SparseError> {
        match be_u32(bytes, 0)? {
            V2_COOKIE => Sparse::decode_v2(&bytes[4..]),
            V2_COMPRESSED_COOKIE => {
                let len = be_u32(bytes, 4)? as usize;
                let compressed = bytes.get(8..8 + len).ok_or(SparseError::Truncated)?;
                self.inflate(compressed)?;
                match be_u32(&self.plain, 0)? {
                    V2_COOKIE => Sparse::decode_v2(&self.plain[4..]),
                    other => Err(SparseError::Cookie(other)),
                }
            }
            other => Err(SparseError::Cookie(other)),
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<(), SparseError> {
        use flate2::{FlushDecompress, Status};
        self.inflate.reset(true);
        self.plain.clear();
        loop {
            if self.plain.len() == self.plain.capacity() {
                if self.plain.len() > MAX_PAYLOAD + HEADER_LEN + 4 {
                    return Err(SparseError::Inflate("inflates past the size limit".into()));
                }
                self.plain.reserve(self.plain.len().max(4096));
            }
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(input, &mut self.plain, FlushDecompress::Finish)
                .map_err(|e| SparseError::Inflate(e.to_string()))?;
            input = &input[(self.inflate.total_in() - before) as usize..];
            match status {
                Status::StreamEnd => return Ok(()),
                // No progress with input left and room to write: the stream is cut short.
                _ if input.is_empty() && self.plain.len() < self.plain.capacity() => {
                    return Err(SparseError::Inflate("compressed stream ends early".into()));
                }
                _ => {}
            }
        }
    }
}

impl Sparse {
    /// Read a V2 histogram, compressed or not (see [`Decoder`] to read many).
    pub fn decode(bytes: &[u8]) -> Result<Sparse, SparseError> {
        Decoder::default().decode(bytes)
    }

    /// The V2 body after its cookie.
    fn decode_v2(b: &[u8]) -> Result<Sparse, SparseError> {
        let payload_len = be_u32(b, 0)? as usize;
        if be_u32(b, 4)? != 0 {
            return Err(SparseError::Unsupported);
        }
        let sigfig = be_u32(b, 8)?;
        let low = be_u64(b, 12)?;
        let high = be_u64(b, 20)?;
        if f64::from_bits(be_u64(b, 28)?) != 1.0 {
            return Err(SparseError::Unsupported);
        }
        let layout = Layout::new(low, high, sigfig)?;
        if payload_len > MAX_PAYLOAD {
            return Err(SparseError::Truncated);
        }
        let payload = b
            .get(HEADER_LEN..HEADER_LEN + payload_len)
            .ok_or(SparseError::Truncated)?;
        // Most numbers are one byte (small counts, short runs of empty buckets): that case is
        // the loop's fast path.
        let mut buckets = Vec::with_capacity(payload_len / 2 + 1);
        let mut index = 0u64;
        let mut at = 0;
        while at < payload.len() {
            let byte = payload[at];
            let raw = if byte < 0x80 {
                at += 1;
                u64::from(byte)
            } else {
                let mut rest = &payload[at..];
                let v = read_varint(&mut rest)?;
                at = payload.len() - rest.len();
                v
            };
            let n = zig_zag(raw);
            if n < 0 {
                index = index
                    .checked_add(n.unsigned_abs())
                    .ok_or(SparseError::OutOfRange)?;
            } else {
                if n > 0 {
                    if index >= layout.len {
                        return Err(SparseError::OutOfRange);
                    }
                    buckets.push((index as u32, n as u64));
                }
                index += 1;
            }
        }
        Ok(Sparse {
            low,
            high,
            sigfig: sigfig as u8,
            buckets,
            layout,
        })
    }

    /// The number of values counted.
    pub fn len(&self) -> u64 {
        self.buckets.iter().map(|b| b.1).sum()
    }

    /// The sum of the values counted, each taken at the middle of its bucket (as
    /// `Histogram::mean` does), so `sum() / len()` is the histogram's mean.
    pub fn sum(&self) -> f64 {
        self.buckets
            .iter()
            .map(|&(index, count)| {
                let i = u64::from(index);
                let middle = self
                    .layout
                    .value_at(i)
                    .saturating_add(self.layout.width_at(i) >> 1);
                middle as f64 * count as f64
            })
            .sum()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Add the counts into `acc`; values outside its range are clamped into it.
    pub fn add_to(&self, acc: &mut Histogram<u64>) {
        let (lo, hi) = (acc.low(), acc.high());
        for &(index, count) in &self.buckets {
            let value = self.layout.value_at(u64::from(index));
            let _ = acc.record_n(value.clamp(lo, hi), count);
        }
    }
}

/// An accumulator of [`Sparse`] histograms that adds by counter index: the master's interval
/// histograms, which take every report. Histograms of its own configuration add in one memory
/// access per bucket; others (a foreign build's) go through value arithmetic, clamped.
pub struct Dense {
    low: u64,
    high: u64,
    sigfig: u8,
    layout: Layout,
    counts: Vec<u64>,
    /// The touched index range, `lo..hi`.
    lo: usize,
    hi: usize,
    foreign: Option<Histogram<u64>>,
}

impl Dense {
    /// An empty accumulator with the configuration of `like`.
    pub fn like(like: &Histogram<u64>) -> Dense {
        let layout = Layout::new(like.low(), like.high(), u32::from(like.sigfig()))
            .expect("an existing histogram's configuration is valid");
        Dense {
            low: like.low(),
            high: like.high(),
            sigfig: like.sigfig(),
            layout,
            counts: vec![0; layout.len as usize],
            lo: usize::MAX,
            hi: 0,
            foreign: None,
        }
    }

    /// Add a histogram.
    pub fn add(&mut self, s: &Sparse) {
        if s.low == self.low && s.sigfig == self.sigfig {
            if let (Some(first), Some(last)) = (s.buckets.first(), s.buckets.last())
                && (last.0 as usize) < self.counts.len()
            {
                for &(index, count) in &s.buckets {
                    let c = &mut self.counts[index as usize];
                    *c = c.saturating_add(count);
                }
                self.lo = self.lo.min(first.0 as usize);
                self.hi = self.hi.max(last.0 as usize + 1);
                return;
            }
            if s.buckets.is_empty() {
                return;
            }
        }
        let (low, high, sigfig) = (self.low, self.high, self.sigfig);
        let foreign = self.foreign.get_or_insert_with(|| {
            Histogram::new_with_bounds(low, high, sigfig)
                .expect("an existing histogram's configuration is valid")
        });
        s.add_to(foreign);
    }

    /// Whether nothing was added since the last drain.
    pub fn is_empty(&self) -> bool {
        self.lo >= self.hi && self.foreign.as_ref().is_none_or(|f| f.is_empty())
    }

    /// Move everything added into `acc` (of the same configuration) and start empty again.
    pub fn drain_into(&mut self, acc: &mut Histogram<u64>) {
        let (lo, hi) = (acc.low(), acc.high());
        for index in self.lo..self.hi.min(self.counts.len()) {
            let count = std::mem::take(&mut self.counts[index]);
            if count > 0 {
                let value = self.layout.value_at(index as u64);
                let _ = acc.record_n(value.clamp(lo, hi), count);
            }
        }
        self.lo = usize::MAX;
        self.hi = 0;
        if let Some(f) = self.foreign.take() {
            let _ = acc.add(&f);
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> Result<u32, SparseError> {
    let s = b.get(at..at + 4).ok_or(SparseError::Truncated)?;
    Ok(u32::from_be_bytes(s.try_into().expect("4 bytes")))
}

fn be_u64(b: &[u8], at: usize) -> Result<u64, SparseError> {
    let s = b.get(at..at + 8).ok_or(SparseError::Truncated)?;
    Ok(u64::from_be_bytes(s.try_into().expect("8 bytes")))
}

/// LEB128 of at most 9 bytes, the 9th taken whole (HdrHistogram's variant).
fn read_varint(b: &mut &[u8]) -> Result<u64, SparseError> {
    let mut value = 0u64;
    for i in 0..9 {
        let (&byte, rest) = b.split_first().ok_or(SparseError::Truncated)?;
        *b = rest;
        if i == 8 {
            return Ok(value | u64::from(byte) << 56);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    unreachable!("the loop returns by its ninth byte")
}

fn zig_zag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer, V2Serializer};
    use proptest::prelude::*;

    fn encode(h: &Histogram<u64>, deflate: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        if deflate {
            V2DeflateSerializer::new().serialize(h, &mut buf).unwrap();
        } else {
            V2Serializer::new().serialize(h, &mut buf).unwrap();
        }
        buf
    }

    fn histogram(values: &[(u64, u64)], low: u64, high: u64, sigfig: u8) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(low, high, sigfig).unwrap();
        for &(v, n) in values {
            h.record_n(v.clamp(low, high), n).unwrap();
        }
        h
    }

    proptest! {
        /// Sparse-adding the wire bytes gives the very histogram that direct addition gives,
        /// for any values and the configurations Stampede and foreign encoders use.
        #[test]
        fn sparse_add_equals_full_add(
            values in proptest::collection::vec((1u64..4_000_000_000, 1u64..1000), 0..300),
            config in prop_oneof![
                Just((1u64, 3_600_000_000u64, 3u8)),
                Just((1, 60_000_000, 2)),
                Just((1000, 10_000_000_000, 4)),
                Just((1, 2, 0)),
            ],
            deflate in any::<bool>(),
        ) {
            let (low, high, sigfig) = config;
            let h = histogram(&values, low, high, sigfig);
            let sparse = Sparse::decode(&encode(&h, deflate)).unwrap();
            prop_assert_eq!(sparse.len(), h.len());
            let mut via_sparse = Histogram::<u64>::new_with_bounds(low, high, sigfig).unwrap();
            sparse.add_to(&mut via_sparse);
            prop_assert_eq!(&via_sparse, &h);
            prop_assert_eq!(via_sparse.max(), h.max());
            prop_assert_eq!(via_sparse.min(), h.min());
            // The sum is the histogram's: its mean is HDR's mean.
            if !h.is_empty() {
                let mean = sparse.sum() / sparse.len() as f64;
                prop_assert!((mean - h.mean()).abs() <= 1e-9 * h.mean().max(1.0), "{} vs {}", mean, h.mean());
            }
        }

        /// Garbage never panics: it is an error or some histogram.
        #[test]
        fn garbage_is_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Sparse::decode(&bytes);
        }

        /// A valid encoding with bytes flipped never panics.
        #[test]
        fn mutated_encoding_never_panics(at in 0usize..400, byte in any::<u8>(), deflate in any::<bool>()) {
            let h = histogram(&[(5, 3), (1234, 7), (99_999, 1)], 1, 3_600_000_000, 3);
            let mut b = encode(&h, deflate);
            let at = at % b.len();
            b[at] = byte;
            let _ = Sparse::decode(&b);
        }
    }

    proptest! {
        /// Adding through the index accumulator is exact, for own and foreign configurations.
        #[test]
        fn dense_accumulates_exactly(
            parts in proptest::collection::vec(
                (proptest::collection::vec((1u64..4_000_000_000, 1u64..50), 0..100), any::<bool>()),
                1..6,
            ),
        ) {
            let own = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            let mut expected = own();
            let mut dense = Dense::like(&own());
            let mut decoder = Decoder::default();
            for (values, foreign) in &parts {
                let h = if *foreign {
                    histogram(values, 1, 60_000_000, 2)
                } else {
                    histogram(values, 1, 3_600_000_000, 3)
                };
                Sparse::decode(&encode(&h, true)).unwrap().add_to(&mut expected);
                dense.add(&decoder.decode(&encode(&h, true)).unwrap());
            }
            let mut got = own();
            dense.drain_into(&mut got);
            prop_assert_eq!(&got, &expected);
            prop_assert!(dense.is_empty());
            let mut again = own();
            dense.drain_into(&mut again);
            prop_assert!(again.is_empty(), "a drain leaves nothing behind");
        }
    }

    #[test]
    fn empty_histogram_has_no_buckets() {
        let h = histogram(&[], 1, 3_600_000_000, 3);
        let s = Sparse::decode(&encode(&h, true)).unwrap();
        assert!(s.is_empty());
        assert_eq!((s.low, s.high, s.sigfig), (1, 3_600_000_000, 3));
    }

    #[test]
    fn foreign_range_is_clamped_not_lost() {
        let h = histogram(&[(10, 2), (5_000_000_000, 3)], 1, 10_000_000_000, 3);
        let s = Sparse::decode(&encode(&h, true)).unwrap();
        let mut acc = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        s.add_to(&mut acc);
        assert_eq!(acc.len(), 5);
        assert_eq!(acc.count_at(1_000_000), 3);
    }

    #[test]
    fn errors_name_the_cause() {
        assert_eq!(Sparse::decode(b"abc"), Err(SparseError::Truncated));
        assert_eq!(
            Sparse::decode(&[0, 0, 0, 1, 0]),
            Err(SparseError::Cookie(1))
        );
        let h = histogram(&[(5, 3)], 1, 3_600_000_000, 3);
        let b = encode(&h, false);
        assert_eq!(
            Sparse::decode(&b[..b.len() - 1]),
            Err(SparseError::Truncated)
        );
    }
}
