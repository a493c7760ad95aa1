//! Splitting encounters into a training pool, validation and test sets: `original` reproduces the
//! Python system's split row for row, `grouped` keeps each patient in one split.
//!
//! Works on row positions only, so it needs no DataFrame: the data module applies the indices.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The share of all rows that goes to test.
pub const TEST_FRACTION: f64 = 0.2;
/// The share of the remaining rows that goes to validation.
pub const VALIDATION_FRACTION: f64 = 0.25;
/// The seed the original system passed to both `train_test_split` calls.
pub const ORIGINAL_SEED: u32 = 42;
/// How many pool rows each `append_batch` moves into the training table.
pub const BATCH_ROWS: usize = 15_000;

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum SplitMethod {
    /// scikit-learn's `train_test_split(test_size=0.2, random_state=42)` and then
    /// `(test_size=0.25, random_state=42)` on the rest, row for row. It puts 36% of test rows'
    /// patients in training too, so its test scores flatter the model.
    Original,
    /// The same proportions, with every patient's encounters in one split only.
    #[default]
    Grouped,
}

/// Row positions of each split, in split order (the order the original system stored them in,
/// which is also the order training batches are taken from the pool).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitIndices {
    pub train_pool: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
}

impl SplitIndices {
    /// The pool rows of batch `k` (0-based): the next [`BATCH_ROWS`] rows in pool order, fewer
    /// for the last one, empty past the end.
    pub fn batch(&self, k: usize) -> &[usize] {
        let start = (k * BATCH_ROWS).min(self.train_pool.len());
        let end = (start + BATCH_ROWS).min(self.train_pool.len());
        &self.train_pool[start..end]
    }
}

/// Splits `n` rows whose patients are `patients[i]` (used by `grouped` only; the same length as
/// the data) by `method`, with [`ORIGINAL_SEED`] for `original` and `seed` for `grouped`.
pub fn split(method: SplitMethod, patients: &[i64], seed: u32) -> SplitIndices {
    match method {
        SplitMethod::Original => split_original(patients.len()),
        SplitMethod::Grouped => split_grouped(patients, seed),
    }
}

/// The original split of `n` rows.
pub fn split_original(n: usize) -> SplitIndices {
    let (test, rest) = shuffle_split(n, TEST_FRACTION, ORIGINAL_SEED);
    // The second call splits the rest as a new array in its own order, so its permutation
    // indexes into `rest`, and validation is the second call's "test" part.
    let (validation, train_pool) = shuffle_split(rest.len(), VALIDATION_FRACTION, ORIGINAL_SEED);
    SplitIndices {
        train_pool: train_pool.into_iter().map(|i| rest[i]).collect(),
        validation: validation.into_iter().map(|i| rest[i]).collect(),
        test,
    }
}

/// scikit-learn's `ShuffleSplit` with one split: the test part is the first `ceil(fraction * n)`
/// positions of the seeded permutation, the train part the rest, both in permutation order.
fn shuffle_split(n: usize, fraction: f64, seed: u32) -> (Vec<usize>, Vec<usize>) {
    let n_test = test_size(n, fraction);
    let mut permutation = legacy_permutation(n, seed);
    let train = permutation.split_off(n_test);
    (permutation, train)
}

/// `ceil(fraction * n)` computed in f64 as scikit-learn does.
fn test_size(n: usize, fraction: f64) -> usize {
    // Row counts are far below 2^52, so the conversions are exact.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let size = (fraction * n as f64).ceil() as usize;
    size.min(n)
}

/// The grouped split: a seeded permutation of the distinct patients (each patient equally
/// likely to come early, however many encounters they have) orders them; whole patients fill
/// test up to `ceil(0.2 n)` rows, then validation up to 25% of the rest, and the remainder is
/// the pool. Rows in each split keep the order of a seeded permutation of rows, so pool batches
/// are random samples rather than runs of one patient.
///
/// Ordering patients by their first row in a permutation of rows instead would favour patients
/// with many encounters, who are also readmitted more often, and pile them into test.
pub fn split_grouped(patients: &[i64], seed: u32) -> SplitIndices {
    let n = patients.len();
    let permutation = legacy_permutation(n, seed);
    let test_target = test_size(n, TEST_FRACTION);

    // Distinct patients in order of first appearance in the data, with their row counts.
    let mut rows_of: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut distinct: Vec<i64> = Vec::new();
    for &p in patients {
        let count = rows_of.entry(p).or_default();
        if *count == 0 {
            distinct.push(p);
        }
        *count += 1;
    }
    // 0 = test, 1 = validation, 2 = pool.
    let mut assigned: std::collections::HashMap<i64, u8> =
        std::collections::HashMap::with_capacity(rows_of.len());
    let (mut test_rows, mut validation_rows) = (0usize, 0usize);
    let mut validation_target = None;
    for i in legacy_permutation(distinct.len(), seed) {
        let patient = distinct[i];
        let rows = rows_of[&patient];
        let part = if test_rows < test_target {
            test_rows += rows;
            0
        } else {
            let target = *validation_target
                .get_or_insert_with(|| test_size(n - test_rows, VALIDATION_FRACTION));
            if validation_rows < target {
                validation_rows += rows;
                1
            } else {
                2
            }
        };
        assigned.insert(patient, part);
    }
    let mut out = SplitIndices {
        train_pool: Vec::with_capacity(n - test_rows - validation_rows),
        validation: Vec::with_capacity(validation_rows),
        test: Vec::with_capacity(test_rows),
    };
    for row in permutation {
        match assigned[&patients[row]] {
            0 => out.test.push(row),
            1 => out.validation.push(row),
            _ => out.train_pool.push(row),
        }
    }
    out
}

/// The fingerprints of a split: what the bench prints and the digests check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    pub train_pool: String,
    pub validation: String,
    pub test: String,
    /// The first [`BATCH_ROWS`] rows of the pool, in pool order.
    pub first_batch: String,
}

impl SplitIndices {
    /// Fingerprints of each split, given the `encounter_id` of every row.
    ///
    /// # Panics
    /// If an index is out of range of `encounter_ids` (the split was made for other data).
    pub fn fingerprints(&self, encounter_ids: &[i64]) -> Fingerprints {
        let of = |rows: &[usize]| fingerprint(rows.iter().map(|&r| encounter_ids[r]));
        Fingerprints {
            train_pool: of(&self.train_pool),
            validation: of(&self.validation),
            test: of(&self.test),
            first_batch: of(self.batch(0)),
        }
    }
}

/// The SHA-256 (lower-case hex) of the ids joined by commas: a split's fingerprint.
pub fn fingerprint(ids: impl IntoIterator<Item = i64>) -> String {
    let mut hasher = Sha256::new();
    for (k, id) in ids.into_iter().enumerate() {
        if k > 0 {
            hasher.update(b",");
        }
        hasher.update(id.to_string().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// numpy's legacy `RandomState(seed).permutation(n)`: an identity array shuffled by
/// Fisher–Yates from the end, each swap partner drawn by masked rejection sampling.
pub fn legacy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    let mut out: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.interval(i as u64);
        // `j <= i < n`, so it fits a usize.
        #[allow(clippy::cast_possible_truncation)]
        out.swap(i, j as usize);
    }
    out
}

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The Mersenne Twister MT19937 as numpy's legacy `RandomState` seeds it from an integer
/// (`init_genrand`).
#[derive(Debug, Clone)]
pub struct Mt19937 {
    state: [u32; MT_N],
    index: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; MT_N];
        state[0] = seed;
        for i in 1..MT_N {
            let prev = state[i - 1];
            // `i < 624` always fits a u32.
            #[allow(clippy::cast_possible_truncation)]
            let add = i as u32;
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(add);
        }
        Self { state, index: MT_N }
    }

    fn regenerate(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..MT_N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % MT_N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + MT_M) % MT_N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next 32-bit output (`genrand_int32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= MT_N {
            self.regenerate();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: uniform in `0..=max` by drawing under the smallest
    /// all-ones mask covering `max` and rejecting draws above it.
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        mask |= mask >> 32;
        if max <= u64::from(u32::MAX) {
            loop {
                let value = u64::from(self.next_u32()) & mask;
                if value <= max {
                    return value;
                }
            }
        }
        // numpy draws 64 bits as two 32-bit outputs, high word first.
        loop {
            let value = ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask;
            if value <= max {
                return value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_reference_outputs() {
        // The reference implementation's first outputs for init_genrand(5489), its default seed.
        let mut rng = Mt19937::new(5489);
        assert_eq!(rng.next_u32(), 3_499_211_612);
        assert_eq!(rng.next_u32(), 581_869_302);
        assert_eq!(rng.next_u32(), 3_890_346_734);
        // C++ `std::mt19937(42)()`, the same generator seeded as numpy seeds RandomState(42).
        assert_eq!(Mt19937::new(42).next_u32(), 1_608_637_542);
    }

    #[test]
    fn permutation_matches_numpy() {
        // np.random.RandomState(42).permutation(10)
        assert_eq!(
            legacy_permutation(10, 42),
            vec![8, 1, 5, 0, 7, 2, 9, 4, 3, 6]
        );
        assert_eq!(legacy_permutation(1, 42), vec![0]);
        assert!(legacy_permutation(0, 42).is_empty());
    }

    #[test]
    fn original_split_sizes_follow_scikit_learn() {
        let s = split_original(101_766);
        assert_eq!(s.test.len(), 20_354);
        assert_eq!(s.validation.len(), 20_353);
        assert_eq!(s.train_pool.len(), 61_059);
        let mut all: Vec<usize> = [&s.test[..], &s.validation[..], &s.train_pool[..]].concat();
        all.sort_unstable();
        assert!(all.iter().enumerate().all(|(i, &r)| i == r));
        assert_eq!(s.batch(0).len(), BATCH_ROWS);
        assert_eq!(s.batch(4).len(), 61_059 - 4 * BATCH_ROWS);
        assert!(s.batch(5).is_empty());
    }

    #[test]
    fn grouped_split_keeps_patients_together_and_is_seeded() {
        // 1,000 rows over 300 patients with uneven encounter counts.
        let patients: Vec<i64> = (0..1000).map(|i| (i * i % 7919) % 300).collect();
        let s = split_grouped(&patients, 7);
        let part_of = |rows: &[usize]| -> std::collections::HashSet<i64> {
            rows.iter().map(|&r| patients[r]).collect()
        };
        let (tr, va, te) = (
            part_of(&s.train_pool),
            part_of(&s.validation),
            part_of(&s.test),
        );
        assert!(tr.is_disjoint(&va) && tr.is_disjoint(&te) && va.is_disjoint(&te));
        assert_eq!(s.train_pool.len() + s.validation.len() + s.test.len(), 1000);
        // Whole patients overshoot the targets by less than one patient's rows.
        assert!((200..215).contains(&s.test.len()), "{}", s.test.len());
        assert!(
            (198..215).contains(&s.validation.len()),
            "{}",
            s.validation.len()
        );
        assert_eq!(split_grouped(&patients, 7), s);
        assert_ne!(split_grouped(&patients, 8), s);
    }

    #[test]
    fn fingerprint_is_sha256_of_comma_joined_ids() {
        // printf '1,22,333' | sha256sum
        assert_eq!(
            fingerprint([1, 22, 333]),
            "8915516745284e69425d3f566025a855f5a5718d6d44f09451fb19d0f61fc185"
        );
    }
}
